package sqlite_test

import (
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/coretest"
)

// The controller scenarios live in core (on core.MemoryStore, which passes
// the same conformance suite as this store). These few run the real path:
// the master's logic on SQLite.

// newCluster is coretest's harness on a real database in a temp dir.
func newCluster(t testing.TB) *coretest.Cluster {
	return coretest.NewCluster(t, func(now func() time.Time) core.Store {
		db := MustOpenDB(t)
		db.Now = now
		return db
	})
}

// End to end: apply, schedule, publish, agents report, status follows.
func TestControllers_DeploymentSpreadsAndPublishes(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "2", "1Gi")
	c.AddNode("n2", nil, "2", "1Gi")
	c.AddNode("n3", nil, "2", "1Gi")
	c.Apply(coretest.DeploymentYAML("web", 6, ""))
	c.Sync()
	if got := c.Placement(); got["n1"] != 2 || got["n2"] != 2 || got["n3"] != 2 {
		t.Fatalf("placement %v, want 2/2/2", got)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if ds := c.Bus.Desired(n); ds == nil || len(ds.Pods) != 2 {
			t.Fatalf("desired state of %s: %+v", n, ds)
		}
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		c.Agent(n)
	}
	c.Sync()
	if st := c.Deployment("web").Status; st.ReadyReplicas != 6 || st.UpdatedReplicas != 6 {
		t.Fatalf("status %+v", st)
	}
	// Scale down: the pods stop once their agent confirms.
	c.Apply(coretest.DeploymentYAML("web", 3, ""))
	c.Sync()
	for _, n := range []string{"n1", "n2", "n3"} {
		c.Agent(n)
	}
	c.Sync()
	if n := len(c.Pods()); n != 3 {
		t.Fatalf("%d pods after scaling down to 3: %v", n, coretest.Names(c.Pods()))
	}
}

// Reports that repeat what is stored and idle passes write nothing to the
// database: an idle cluster must not wear out the master's SD card.
func TestReports_UnchangedWritesNothing(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(coretest.DeploymentYAML("web", 10, ""))
	c.Apply(coretest.DaemonSetYAML)
	c.Sync()
	c.Agent("n1")
	c.Sync()
	before := c.Writes()
	for i := 0; i < 20; i++ {
		c.Agent("n1")
		c.Online("n1", true)
		c.Advance(time.Second)
		c.Sync()
	}
	if w := c.Writes() - before; w != 0 {
		t.Fatalf("%d writes while idle", w)
	}
}
