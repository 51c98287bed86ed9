package core_test

// Regressions a review found: each test sets up the scenario that used to
// go wrong (its comment says how) and checks it no longer does.

import (
	"testing"

	"github.com/edgeorch/edge/core"
)

// A failed StatefulSet pod is never replaced: the plan creates its
// namesake before deleting it, and the create step bails out first.
func TestRegress_StatefulSetFailedPodReplaced(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	c.Apply(statefulSetYAML(1, ""))
	c.Sync()
	p0 := stsPods(c)["db-0"]
	if p0 == nil {
		t.Fatal("no db-0")
	}
	uid := p0.Metadata.UID
	c.AgentWith("n1", func(*core.Pod) *core.PodStatus {
		return &core.PodStatus{Phase: core.PodFailed, Reason: "Evicted"}
	})
	for i := 0; i < 5; i++ {
		c.Sync()
	}
	for _, p := range c.Pods() {
		t.Logf("pod %s uid=%s phase=%s term=%v", p.Metadata.Name, p.Metadata.UID, p.Status.Phase, p.Terminating())
		if p.Metadata.Name == "db-0" && p.Metadata.UID == uid {
			t.Errorf("failed db-0 still there after 5 syncs (phase %s)", p.Status.Phase)
		}
	}
}
