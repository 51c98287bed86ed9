package core_test

import (
	"context"
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
)

// edgectl image prefetch: the selected nodes are told to fetch the image
// (in their desired state's prefetch list) until they report holding it,
// when it leaves their list.
func TestPrefetch(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	c.AddNode("n1", map[string]string{"zone": "a"}, "4", "4Gi")
	c.AddNode("n2", map[string]string{"zone": "b"}, "4", "4Gi")
	c.Sync()
	names, err := core.Prefetch(ctx, c.Store, "app:2", map[string]string{"zone": "a"})
	if err != nil || strings.Join(names, ",") != "n1" {
		t.Fatalf("Prefetch: %v %v", names, err)
	}
	// Twice is once.
	if _, err := core.Prefetch(ctx, c.Store, "app:2", map[string]string{"zone": "a"}); err != nil {
		t.Fatal(err)
	}
	c.Sync()
	if ds := c.Bus.Desired("n1"); ds == nil || strings.Join(ds.Prefetch, ",") != "app:2" {
		t.Fatalf("n1's desired state: %+v", ds)
	}
	if ds := c.Bus.Desired("n2"); ds != nil && len(ds.Prefetch) != 0 {
		t.Fatalf("n2 was told to prefetch %v", ds.Prefetch)
	}
	c.Agent("n1") // pulls it and says so
	c.Sync()
	if l := c.Node("n1").PrefetchList(); len(l) != 0 {
		t.Fatalf("n1 holds app:2 and still has it to fetch: %v", l)
	}
	if ds := c.Bus.Desired("n1"); len(ds.Prefetch) != 0 {
		t.Fatalf("n1 still told to fetch %v", ds.Prefetch)
	}
	// All nodes; bad input.
	if names, err := core.Prefetch(ctx, c.Store, "app:3", nil); err != nil || strings.Join(names, ",") != "n1,n2" {
		t.Fatalf("all nodes: %v %v", names, err)
	}
	if _, err := core.Prefetch(ctx, c.Store, "a,b", nil); core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("a,b: %v", err)
	}
	if _, err := core.Prefetch(ctx, c.Store, "app:3", map[string]string{"zone": "none"}); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("no node: %v", err)
	}
}
