package core_test

// Regressions a review found: each test sets up the scenario that used to
// go wrong (its comment says how) and checks it no longer does.

import (
	"context"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// A pod that arrives (nodeName) on a node whose NoExecute taint it
// tolerates for 10 minutes, the taint being an hour old, is evicted at
// once: the toleration is counted from the taint, not from the pod.
func TestRegress_TolerationSecondsFromTaintNotPod(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	if _, err := core.TaintNode(context.Background(), c.Store, "n1", core.Taint{Key: "maint", Value: "x", Effect: core.TaintNoExecute}, false, c.Now()); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	c.Apply(`apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  nodeName: n1
  tolerations: [{key: maint, operator: Exists, effect: NoExecute, tolerationSeconds: 600}]
  containers: [{name: c, image: demo:1}]
`)
	c.Sync()
	p := c.Get(core.Key{Kind: core.KindPod, Namespace: "default", Name: "p"}).(*core.Pod)
	if p.Terminating() {
		t.Errorf("pod tolerating the taint for 600s was evicted on arrival")
	}
}
