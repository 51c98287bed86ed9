package core_test

import (
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/coretest"
)

type clusterT = coretest.Cluster

func taint(t *testing.T, cl *clusterT, node, spec string) {
	t.Helper()
	tt, err := core.ParseTaint(spec)
	if err != nil {
		cl.T.Fatal(err)
	}
	if _, err := core.TaintNode(ctx, cl.Store, node, tt, false, cl.Now()); err != nil {
		cl.T.Fatal(err)
	}
}

// A NoExecute taint evicts the pods that do not tolerate it at once, those
// that tolerate it for tolerationSeconds after that, and leaves those that
// tolerate it for ever; the Deployment's replacements go elsewhere.
func TestTaints_NoExecuteEvicts(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(deployment("plain", 1, ""))
	c.Apply(deployment("patient", 1, "      tolerations: [{key: maint, operator: Exists, effect: NoExecute, tolerationSeconds: 60}]\n"))
	c.Apply(deployment("stubborn", 1, "      tolerations: [{key: maint, operator: Exists}]\n"))
	c.Sync()
	c.Agent("n1")
	c.AddNode("n2", nil, "4", "4Gi")
	taint(t, c, "n1", "maint=now:NoExecute")
	if n := c.Node("n1"); n.Spec.Taints[0].TimeAdded == nil || !n.Spec.Taints[0].TimeAdded.Equal(c.Now()) {
		t.Fatalf("taint %+v has no time", n.Spec.Taints)
	}
	c.Sync()
	where := func() map[string]string {
		out := map[string]string{}
		for _, p := range c.Active() {
			out[p.Metadata.Labels["app"]] += p.Spec.NodeName
		}
		return out
	}
	if got := where(); got["plain"] != "n2" || got["patient"] != "n1" || got["stubborn"] != "n1" {
		t.Fatalf("right after the taint: %v", got)
	}
	var evicted bool
	for _, e := range eventsOf(c) {
		evicted = evicted || (e.Reason == "TaintManagerEviction" && strings.Contains(e.Message, "maint=now:NoExecute"))
	}
	if !evicted {
		t.Fatal("no eviction event")
	}
	c.Advance(59 * time.Second)
	c.Sync()
	if got := where(); got["patient"] != "n1" {
		t.Fatalf("evicted before its tolerationSeconds: %v", got)
	}
	c.Advance(2 * time.Second)
	c.Sync()
	c.Sync() // the eviction, then its replacement
	if got := where(); got["patient"] != "n2" || got["stubborn"] != "n1" {
		t.Fatalf("after tolerationSeconds: %v", got)
	}
}

// A NoExecute toleration of an unreachable node is the pod's node-lost
// grace, Kubernetes' spelling of edge.io/node-lost-grace-seconds.
func TestTaints_UnreachableTolerationIsNodeLostGrace(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Apply(deployment("web", 2, "      tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 40}]\n"))
	c.Sync()
	c.Agent("n1")
	c.Agent("n2")
	c.Online("n2", false)
	c.Advance(30 * time.Second)
	c.Sync()
	if got := c.Placement(); got["n2"] != 1 {
		t.Fatalf("replaced before the toleration's 40 s: %v", got)
	}
	c.Advance(11 * time.Second)
	c.Sync()
	if got := c.Placement(); got["n1"] != 2 || got["n2"] != 0 {
		t.Fatalf("placement %v after the toleration's 40 s", got)
	}
}

func eventsOf(c *clusterT) []*core.EventObj {
	evs, err := core.ListAs[*core.EventObj](ctx, c.Store, core.KindEvent, "")
	if err != nil {
		c.T.Fatal(err)
	}
	return evs
}
