package sqlite_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/coretest"
)

// BenchmarkUpdate20Pods is one controller write: 20 new pods in one
// transaction on a real database file.
func BenchmarkUpdate20Pods(b *testing.B) {
	db := MustOpenDB(b)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		err := db.Update(ctx, func(tx core.Tx) error {
			for j := 0; j < 20; j++ {
				if err := tx.Create(pod(fmt.Sprintf("p%d-%d", i, j))); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListPods10k is what the API does for `get pods` at fleet scale.
func BenchmarkListPods10k(b *testing.B) {
	db := MustOpenDB(b)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		db.Update(ctx, func(tx core.Tx) error {
			for j := 0; j < 1000; j++ {
				if err := tx.Create(pod(fmt.Sprintf("p%d-%d", i, j))); err != nil {
					return err
				}
			}
			return nil
		})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		objs, err := db.List(ctx, core.KindPod, "")
		if err != nil || len(objs) != 10000 {
			b.Fatal(len(objs), err)
		}
	}
}

// BenchmarkControllersSync1000Pods is one idle control-loop pass over a
// cluster of 50 nodes and 1,000 running pods: it must cost little and write
// nothing.
func BenchmarkControllersSync1000Pods(b *testing.B) {
	c := newCluster(b)
	var nodes []string
	for i := 0; i < 50; i++ {
		nodes = append(nodes, fmt.Sprintf("n%02d", i))
		c.AddNode(nodes[i], nil, "64", "64Gi")
	}
	c.Apply(coretest.DeploymentYAML("web", 1000, ""))
	c.Settle(nodes...)
	if n := len(c.Active()); n != 1000 {
		b.Fatalf("%d pods, want 1000", n)
	}
	writes := c.Writes()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Ctl.Sync(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if w := c.Writes() - writes; w != 0 {
		b.Fatalf("%d writes in idle passes", w)
	}
}
