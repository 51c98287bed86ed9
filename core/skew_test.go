package core_test

import (
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
)

// A node whose agent is newer than the master is marked NotReady, saying
// to upgrade the master first, and its pod reports are not taken; an agent
// the master serves brings it back.
func TestReports_VersionSkew(t *testing.T) {
	c := newCluster(t)
	c.Reports.MasterVersion = "v1.4.0"
	c.AddNode("n1", nil, "4", "4Gi")
	rep := func(agent string) *core.NodeReport {
		n := c.Node("n1")
		st := n.Status
		st.NodeInfo.KubeletVersion = agent
		return &core.NodeReport{Node: "n1", Labels: n.Metadata.Labels, Status: st, Protocol: core.ProtocolVersion}
	}
	c.Report(rep("v1.5.0"))
	cond := c.Node("n1").Status.Conditions[0]
	if cond.Type != "Ready" || cond.Status != core.ConditionFalse || cond.Reason != core.ReasonVersionSkew || !strings.Contains(cond.Message, "upgrade the master first") {
		t.Fatalf("a newer agent's node: %+v", cond)
	}
	c.Report(rep("v1.4.0"))
	if r := c.Node("n1").Ready(); r != core.ConditionTrue {
		t.Fatalf("an agent the master serves: Ready=%s", r)
	}
}
