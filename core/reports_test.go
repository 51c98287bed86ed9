package core_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

type reportsEnv struct {
	t   *testing.T
	s   *core.MemoryStore
	r   *core.Reports
	now time.Time
}

func newReports(t *testing.T) *reportsEnv {
	e := &reportsEnv{t: t, s: newStore(t), now: t0}
	e.r = &core.Reports{Store: e.s, Now: func() time.Time { return e.now }}
	return e
}

func (e *reportsEnv) report(rep *core.NodeReport) {
	e.t.Helper()
	if err := e.r.NodeReport(ctx, rep); err != nil {
		e.t.Fatal(err)
	}
}

func (e *reportsEnv) online(node string, on bool) {
	e.t.Helper()
	if err := e.r.NodeOnline(ctx, node, on); err != nil {
		e.t.Fatal(err)
	}
}

func (e *reportsEnv) node(name string) *core.Node {
	e.t.Helper()
	return mustGet(e.t, e.s, core.KindNode, "", name).(*core.Node)
}

func (e *reportsEnv) pod(name string) *core.Pod {
	e.t.Helper()
	return mustGet(e.t, e.s, core.KindPod, "default", name).(*core.Pod)
}

func readyCond(n *core.Node) core.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			return c
		}
	}
	return core.NodeCondition{}
}

func TestReports_NodeReportRegisters(t *testing.T) {
	e := newReports(t)
	status := core.NodeStatus{NodeInfo: core.NodeSystemInfo{Architecture: "arm64", KernelVersion: "6.1"},
		Conditions: []core.NodeCondition{{Type: "Ready", Status: core.ConditionTrue}}} // not the agent's to say
	e.report(&core.NodeReport{Node: "n1", Labels: map[string]string{"zone": "a"}, Status: status})
	n := e.node("n1")
	c := readyCond(n)
	if n.Metadata.Labels["zone"] != "a" || n.Status.NodeInfo.Architecture != "arm64" || c.Status != core.ConditionUnknown ||
		c.Reason != "Registered" || !c.LastTransitionTime.Equal(t0) {
		t.Fatalf("registered node %+v, Ready %+v", n.Metadata, c)
	}
	// Unchanged: no write.
	w := e.s.Writes()
	e.now = e.now.Add(time.Minute)
	e.report(&core.NodeReport{Node: "n1", Labels: map[string]string{"zone": "a"}, Status: status})
	if e.s.Writes() != w {
		t.Fatal("an unchanged report wrote")
	}
	// Labels are added and changed, never removed; the status follows.
	status.NodeInfo.KernelVersion = "6.6"
	e.report(&core.NodeReport{Node: "n1", Labels: map[string]string{"zone": "b", "disk": "ssd"}, Status: status})
	n = e.node("n1")
	if n.Metadata.Labels["zone"] != "b" || n.Metadata.Labels["disk"] != "ssd" || n.Status.NodeInfo.KernelVersion != "6.6" || readyCond(n).Status != core.ConditionUnknown {
		t.Fatalf("updated node %+v %+v", n.Metadata.Labels, n.Status)
	}
	e.report(&core.NodeReport{Node: "n1", Status: status})
	if n = e.node("n1"); n.Metadata.Labels["zone"] != "b" {
		t.Fatalf("labels %v after a report without labels", n.Metadata.Labels)
	}
}

// Ready follows the agent's connection.
func TestReports_NodeOnline(t *testing.T) {
	e := newReports(t)
	if on, known := e.r.Online("n1"); on || known {
		t.Fatalf("Online before anything was heard: %v %v", on, known)
	}
	// An agent that connects before it registers is Ready from its first report.
	e.online("n1", true)
	if objs, _ := e.s.List(ctx, core.KindNode, ""); len(objs) != 0 {
		t.Fatal("NodeOnline registered a node")
	}
	e.report(&core.NodeReport{Node: "n1"})
	if c := readyCond(e.node("n1")); c.Status != core.ConditionTrue || c.Reason != "AgentReady" {
		t.Fatalf("Ready %+v", c)
	}
	e.now = e.now.Add(time.Minute)
	e.online("n1", false)
	c := readyCond(e.node("n1"))
	if c.Status != core.ConditionUnknown || c.Reason != "NodeStatusUnknown" || !c.LastTransitionTime.Equal(e.now) {
		t.Fatalf("Ready after the connection was lost %+v", c)
	}
	if on, known := e.r.Online("n1"); on || !known {
		t.Fatalf("Online = %v %v, want false true", on, known)
	}
	w := e.s.Writes()
	e.online("n1", false)
	e.report(&core.NodeReport{Node: "n1"}) // a report does not make it Ready while offline
	if e.s.Writes() != w || readyCond(e.node("n1")).Status != core.ConditionUnknown {
		t.Fatal("repeating the offline state wrote or changed Ready")
	}
	e.now = e.now.Add(time.Minute)
	e.online("n1", true)
	if c := readyCond(e.node("n1")); c.Status != core.ConditionTrue || !c.LastTransitionTime.Equal(e.now) {
		t.Fatalf("Ready after reconnecting %+v", c)
	}
}

// A deleted node whose agent keeps running registers again.
func TestReports_DeletedNodeRegistersAgain(t *testing.T) {
	e := newReports(t)
	e.online("n1", true)
	e.report(&core.NodeReport{Node: "n1"})
	uid := e.node("n1").Metadata.UID
	if err := e.s.Update(ctx, func(tx core.Tx) error { return tx.Delete(core.Key{Kind: core.KindNode, Name: "n1"}) }); err != nil {
		t.Fatal(err)
	}
	e.report(&core.NodeReport{Node: "n1"})
	if n := e.node("n1"); n.Metadata.UID == uid || readyCond(n).Status != core.ConditionTrue {
		t.Fatalf("re-registered node %+v", n)
	}
}

func TestReports_Pods(t *testing.T) {
	running := core.PodStatus{Phase: core.PodRunning, PodIP: "10.42.0.5",
		Conditions:        []core.PodCondition{{Type: "PodScheduled", Status: core.ConditionFalse}, {Type: "Ready", Status: core.ConditionTrue}},
		ContainerStatuses: []core.ContainerStatus{{Name: "c", Ready: true}}}
	for _, tt := range []struct {
		name     string
		node     string // the pod's node
		deleting bool
		report   func(p *core.Pod) []core.PodReport // what n1 reports
		gone     bool
		phase    core.PodPhase
		written  bool
	}{
		{name: "status stored", node: "n1", phase: core.PodRunning, written: true,
			report: func(p *core.Pod) []core.PodReport {
				return []core.PodReport{{Namespace: "default", Name: "p", UID: p.Metadata.UID, Status: running}}
			}},
		{name: "pod of another node", node: "n2", phase: core.PodPending,
			report: func(p *core.Pod) []core.PodReport {
				return []core.PodReport{{Namespace: "default", Name: "p", UID: p.Metadata.UID, Status: running}}
			}},
		{name: "older pod of the same name", node: "n1", phase: core.PodPending,
			report: func(p *core.Pod) []core.PodReport {
				return []core.PodReport{{Namespace: "default", Name: "p", UID: "older", Status: running}}
			}},
		{name: "not reported yet", node: "n1", phase: core.PodPending,
			report: func(p *core.Pod) []core.PodReport { return nil }},
		{name: "terminating and not reported: stopped", node: "n1", deleting: true, gone: true, written: true,
			report: func(p *core.Pod) []core.PodReport { return nil }},
		{name: "terminating and still reported", node: "n1", deleting: true, phase: core.PodRunning, written: true,
			report: func(p *core.Pod) []core.PodReport {
				return []core.PodReport{{Namespace: "default", Name: "p", UID: p.Metadata.UID, Status: running}}
			}},
		{name: "terminating on another node", node: "n2", deleting: true, phase: core.PodPending,
			report: func(p *core.Pod) []core.PodReport { return nil }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newReports(t)
			e.online("n1", true)
			e.report(&core.NodeReport{Node: "n1"})
			e.report(&core.NodeReport{Node: "n2"})
			p := &core.Pod{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindPod}, Metadata: core.ObjectMeta{Name: "p", Namespace: "default"},
				Spec:   core.PodSpec{NodeName: tt.node, Containers: []core.Container{{Name: "c", Image: "demo:1"}}},
				Status: core.PodStatus{Phase: core.PodPending, Conditions: []core.PodCondition{{Type: "PodScheduled", Status: core.ConditionTrue}}}}
			if tt.deleting {
				p.Metadata.DeletionTimestamp = core.NewTime(t0)
			}
			if err := e.s.Update(ctx, func(tx core.Tx) error { return tx.Create(p) }); err != nil {
				t.Fatal(err)
			}
			w := e.s.Writes()
			rep := tt.report(p)
			e.report(&core.NodeReport{Node: "n1", Pods: rep})
			if (e.s.Writes() != w) != tt.written {
				t.Fatalf("wrote %d times, want a write: %v", e.s.Writes()-w, tt.written)
			}
			if _, err := e.s.Get(ctx, core.KeyOf(p)); tt.gone != (core.ErrorCode(err) == core.ENOTFOUND) {
				t.Fatalf("pod gone: %v, want %v", err, tt.gone)
			}
			if tt.gone {
				return
			}
			got := e.pod("p")
			if got.Status.Phase != tt.phase {
				t.Fatalf("phase %s, want %s", got.Status.Phase, tt.phase)
			}
			// The master's PodScheduled condition survives the agent's report.
			if c := got.Status.Condition("PodScheduled"); c == nil || c.Status != core.ConditionTrue {
				t.Fatalf("conditions %+v", got.Status.Conditions)
			}
			if tt.phase == core.PodRunning {
				if got.Status.PodIP != "10.42.0.5" || got.Status.Condition("Ready") == nil || len(got.Status.Conditions) != 2 {
					t.Fatalf("status %+v", got.Status)
				}
				w := e.s.Writes()
				e.report(&core.NodeReport{Node: "n1", Pods: rep})
				if e.s.Writes() != w {
					t.Fatal("the same pod status was written again")
				}
			}
		})
	}
}

func TestReports_NodeEvents(t *testing.T) {
	e := newReports(t)
	e.report(&core.NodeReport{Node: "n1"})
	p := &core.Pod{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindPod}, Metadata: core.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: core.PodSpec{NodeName: "n1", Containers: []core.Container{{Name: "c", Image: "demo:1"}}}}
	if err := e.s.Update(ctx, func(tx core.Tx) error { return tx.Create(p) }); err != nil {
		t.Fatal(err)
	}
	ev := core.PodEvent{ID: 26, Time: core.NewTime(t0), Namespace: "default", Pod: "p", UID: p.Metadata.UID, Container: "c",
		Type: core.EventWarning, Reason: "BackOff", Message: "restarting"}
	if err := e.r.NodeEvents(ctx, "n1", []core.PodEvent{ev}); err != nil {
		t.Fatal(err)
	}
	got := mustGet(t, e.s, core.KindEvent, "default", "p.n1.1a").(*core.EventObj)
	want := core.ObjectReference{Kind: core.KindPod, Namespace: "default", Name: "p", UID: p.Metadata.UID, FieldPath: "spec.containers{c}"}
	if got.InvolvedObject != want || got.Reason != "BackOff" || got.Type != core.EventWarning || got.Count != 1 ||
		got.Source != (core.EventSource{Component: "edgeagent", Host: "n1"}) || !got.FirstTimestamp.Equal(t0) || !got.LastTimestamp.Equal(t0) {
		t.Fatalf("event %+v", got)
	}
}

// A report of a node that has no credential any more (deleted while the
// report waited in a queue) does not register the node again.
func TestReports_UnknownNodeDropped(t *testing.T) {
	c := newCluster(t)
	c.Reports.Known = func(node string) bool { return node != "gone" }
	c.Report(&core.NodeReport{Node: "gone", Labels: map[string]string{core.LabelHostname: "gone"}})
	if err := c.Reports.NodeEvents(context.Background(), "gone", []core.PodEvent{{ID: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store.Get(context.Background(), core.Key{Kind: core.KindNode, Name: "gone"}); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("a revoked node registered again: %v", err)
	}
	c.Report(&core.NodeReport{Node: "n1", Labels: map[string]string{core.LabelHostname: "n1"}})
	if _, err := c.Store.Get(context.Background(), core.Key{Kind: core.KindNode, Name: "n1"}); err != nil {
		t.Fatalf("a known node: %v", err)
	}
}

func cond(n *core.Node, typ string) *core.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == typ {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// The agent's own conditions (its preflight checks) reach the stored node
// with their messages; Ready stays the master's, whatever the agent says;
// the master stamps transition times (a Pi's clock may say 1970).
func TestReports_AgentConditions(t *testing.T) {
	e := newReports(t)
	failing := core.NodeCondition{Type: "PreflightPassed", Status: core.ConditionFalse, Reason: "ChecksFailed",
		Message: "cgroup memory: disabled; fix: add ...", LastTransitionTime: core.NewTime(time.Unix(0, 0))}
	claimsReady := core.NodeCondition{Type: "Ready", Status: core.ConditionTrue, Reason: "Mine"}
	e.report(&core.NodeReport{Node: "n1", Status: core.NodeStatus{Conditions: []core.NodeCondition{claimsReady, failing}}})
	n := e.node("n1")
	if r := readyCond(n); r.Status != core.ConditionUnknown || r.Reason != "Registered" {
		t.Fatalf("Ready %+v: the agent's claim was taken", r)
	}
	if c := cond(n, "PreflightPassed"); c == nil || c.Status != core.ConditionFalse || c.Message != failing.Message || !c.LastTransitionTime.Equal(t0) {
		t.Fatalf("PreflightPassed %+v", c)
	}
	e.online("n1", true)
	e.now = e.now.Add(time.Minute)
	w := e.s.Writes()
	e.report(&core.NodeReport{Node: "n1", Status: core.NodeStatus{Conditions: []core.NodeCondition{failing}}})
	if e.s.Writes() != w {
		t.Fatal("an unchanged condition wrote")
	}
	// The checks pass later: the condition flips, at the master's time.
	passing := core.NodeCondition{Type: "PreflightPassed", Status: core.ConditionTrue, Reason: "ChecksPassed", Message: "17 checks passed"}
	e.now = e.now.Add(time.Minute)
	e.report(&core.NodeReport{Node: "n1", Status: core.NodeStatus{Conditions: []core.NodeCondition{
		{Type: "Ready", Status: core.ConditionFalse}, passing}}})
	n = e.node("n1")
	if r := readyCond(n); r.Status != core.ConditionTrue || r.Reason != "AgentReady" {
		t.Fatalf("Ready %+v after the agent said False", r)
	}
	if c := cond(n, "PreflightPassed"); c == nil || c.Status != core.ConditionTrue || c.Message != passing.Message || !c.LastTransitionTime.Equal(e.now) {
		t.Fatalf("PreflightPassed %+v, want True since %v", c, e.now)
	}
	if len(n.Status.Conditions) != 2 || n.Status.Conditions[0].Type != "Ready" {
		t.Fatalf("conditions %+v", n.Status.Conditions)
	}
	// The master still decides Ready when the agent goes away.
	e.online("n1", false)
	if r := readyCond(e.node("n1")); r.Status != core.ConditionUnknown {
		t.Fatalf("Ready %+v offline", r)
	}
	if c := cond(e.node("n1"), "PreflightPassed"); c == nil || c.Status != core.ConditionTrue {
		t.Fatalf("PreflightPassed %+v lost when the node went offline", c)
	}
	// An agent that stops reporting a condition (an older version) drops it.
	e.report(&core.NodeReport{Node: "n1"})
	if c := cond(e.node("n1"), "PreflightPassed"); c != nil {
		t.Fatalf("PreflightPassed %+v kept after the agent dropped it", c)
	}
}

func TestNodeReportValidateConditions(t *testing.T) {
	rep := &core.NodeReport{Node: "n1", Status: core.NodeStatus{Conditions: []core.NodeCondition{
		{Type: "PreflightPassed", Status: core.ConditionFalse, Message: "cgroup memory: disabled"}}}}
	if err := rep.Validate("n1"); err != nil {
		t.Fatal(err)
	}
	rep.Status.Conditions[0].Message = "two\nlines"
	if err := rep.Validate("n1"); core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "status.conditions[0].message") {
		t.Fatalf("a message with a newline: %v", err)
	}
	rep.Status.Conditions = make([]core.NodeCondition, 17)
	if err := rep.Validate("n1"); core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("17 conditions: %v", err)
	}
}

// A node that joined is not Ready when its agent connects, only once the
// agent has reported its labels, capacity and system info: the scheduler
// must not place pods on a node it knows nothing of.
func TestReports_JoinedNodeReadyAfterItsFirstReport(t *testing.T) {
	e := newReports(t)
	if err := core.RegisterNode(ctx, e.s, "n1", e.now); err != nil {
		t.Fatal(err)
	}
	e.online("n1", true)
	if c := readyCond(e.node("n1")); c.Status != core.ConditionUnknown || c.Reason != "Joined" {
		t.Fatalf("Ready %+v before the first report", c)
	}
	e.report(&core.NodeReport{Node: "n1", Labels: map[string]string{core.LabelArch: "arm64"},
		Status: core.NodeStatus{NodeInfo: core.NodeSystemInfo{Architecture: "arm64"}}})
	n := e.node("n1")
	if c := readyCond(n); c.Status != core.ConditionTrue || n.Metadata.Labels[core.LabelArch] != "arm64" {
		t.Fatalf("after the first report: Ready %+v, labels %v", c, n.Metadata.Labels)
	}
	// From then on Ready follows the connection again.
	e.online("n1", false)
	e.online("n1", true)
	if c := readyCond(e.node("n1")); c.Status != core.ConditionTrue {
		t.Fatalf("Ready %+v after reconnecting", c)
	}
}

// A joined node whose first report comes before the broker says it is
// connected is Registered, and the connection then makes it Ready.
func TestReports_JoinedNodeReportsBeforeConnecting(t *testing.T) {
	e := newReports(t)
	if err := core.RegisterNode(ctx, e.s, "n1", e.now); err != nil {
		t.Fatal(err)
	}
	e.report(&core.NodeReport{Node: "n1"})
	if c := readyCond(e.node("n1")); c.Status != core.ConditionUnknown || c.Reason != "Registered" {
		t.Fatalf("Ready %+v after a report while not connected", c)
	}
	e.online("n1", true)
	if c := readyCond(e.node("n1")); c.Status != core.ConditionTrue {
		t.Fatalf("Ready %+v once connected", c)
	}
}
