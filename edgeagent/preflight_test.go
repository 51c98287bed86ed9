package edgeagent

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/preflight"
)

func reportedCondition(rep *fakeReporter, typ string) *core.NodeCondition {
	rs := rep.sentReports()
	if len(rs) == 0 {
		return nil
	}
	for _, c := range rs[len(rs)-1].Status.Conditions {
		if c.Type == typ {
			return &c
		}
	}
	return nil
}

// The agent runs its checks in the background (Open does not wait for
// them), reports a failure as PreflightPassed False with the fix, runs
// them again after preflightRetry while one fails, and stops once all pass.
func TestAgentPreflight(t *testing.T) {
	clk := newFakeClock()
	a := newTestAgent(t, newFakeRuntime(clk.Now), clk, t.TempDir())
	rep := &fakeReporter{}
	a.Reporter = rep
	release := make(chan struct{})
	var calls atomic.Int32
	a.Preflight = func(ctx context.Context) []preflight.Result {
		if calls.Add(1) == 1 {
			<-release // a slow first run must not hold the agent up
			return []preflight.Result{{Name: "clock", Status: preflight.Pass, Detail: "2025"},
				{Name: "cgroup memory", Status: preflight.Fail, Detail: "cgroup v1: memory is disabled",
					Fix: "add \"cgroup_enable=memory cgroup_memory=1\" to /boot/firmware/cmdline.txt, then reboot"},
				{Name: "iptables", Status: preflight.Warn, Detail: "needs root"}}
		}
		return []preflight.Result{{Name: "clock", Status: preflight.Pass}, {Name: "cgroup memory", Status: preflight.Pass}}
	}
	if err := a.Open(); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.ForceReport()
	waitUntil(t, "a report before the checks finish", func() bool { return len(rep.sentReports()) > 0 })
	if c := reportedCondition(rep, ConditionPreflight); c != nil {
		t.Fatalf("condition %+v before the checks ran", c)
	}
	close(release)
	var got *core.NodeCondition
	waitUntil(t, "PreflightPassed False", func() bool {
		got = reportedCondition(rep, ConditionPreflight)
		return got != nil && got.Status == core.ConditionFalse
	})
	want := `1 of 3 checks failed: cgroup memory: cgroup v1: memory is disabled (fix: add "cgroup_enable=memory cgroup_memory=1" to /boot/firmware/cmdline.txt, then reboot); warnings: iptables: needs root`
	if got.Reason != "ChecksFailed" || got.Message != want {
		t.Fatalf("condition %+v\nwant message %s", got, want)
	}
	retry := clk.Now().Add(preflightRetry)
	waitUntil(t, "the retry's timer", func() bool { return clk.timersAt(retry) == 1 })
	clk.Advance(preflightRetry)
	waitUntil(t, "PreflightPassed True after a retry", func() bool {
		got = reportedCondition(rep, ConditionPreflight)
		return got != nil && got.Status == core.ConditionTrue
	})
	if got.Reason != "ChecksPassed" || got.Message != "2 checks passed" {
		t.Fatalf("condition %+v", got)
	}
	a.Close()
	if n := calls.Load(); n != 2 {
		t.Fatalf("checks ran %d times, want 2: once failing, once passing, then no more", n)
	}
}

func TestPreflightCondition_Bounded(t *testing.T) {
	var rs []preflight.Result
	for range 40 {
		rs = append(rs, preflight.Result{Name: "module x", Status: preflight.Fail, Detail: strings.Repeat("long\ndetail ", 20), Fix: "modprobe x"})
	}
	c := preflightCondition(rs)
	if len(c.Message) > maxConditionMessage || strings.ContainsAny(c.Message, "\n\t") || !strings.HasPrefix(c.Message, "40 of 40 checks failed: module x: long detail") {
		t.Fatalf("message of %d bytes: %.200q", len(c.Message), c.Message)
	}
	if err := (&core.NodeReport{Node: "pi", Status: core.NodeStatus{Conditions: []core.NodeCondition{c}}}).Validate("pi"); err != nil {
		t.Fatalf("the condition does not pass a report's validation: %v", err)
	}
}

// The disk check looks where the running containerd keeps its content
// (the bundled one's is not /var/lib/containerd), as containerd says.
func TestPreflightDiskLooksAtContainerdRoot(t *testing.T) {
	r := startContainerd(t)
	root, err := contentRoot(context.Background(), r.client)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(root, "edgeagent-ctrd") || !strings.HasSuffix(root, "io.containerd.content.v1.content") {
		t.Fatalf("content root %q is not the test containerd's", root)
	}
	checks := preflight.Agent(preflight.Local(), preflight.AgentConfig{DataDir: t.TempDir(),
		ContainerdRootOf: func(context.Context) (string, error) { return root, nil }})
	for _, c := range checks {
		if c.Name == "disk containerd root" {
			if res := c.Run(context.Background()); !strings.Contains(res.Detail, root) {
				t.Fatalf("disk check: %+v, want it about %s", res, root)
			}
			return
		}
	}
	t.Fatal("no disk containerd root check")
}
