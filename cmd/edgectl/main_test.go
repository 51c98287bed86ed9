package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

func TestAge(t *testing.T) {
	now := time.Now()
	for d, want := range map[time.Duration]string{5 * time.Second: "5s", 90 * time.Second: "90s", 5 * time.Minute: "5m",
		5*time.Minute + 7*time.Second: "5m7s", 2 * time.Hour: "120m", 5 * time.Hour: "5h", 72 * time.Hour: "3d"} {
		if got := Age(core.NewTime(now.Add(-d)), now); got != want {
			t.Errorf("Age(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestPodStatus(t *testing.T) {
	p := &core.Pod{Spec: core.PodSpec{NodeName: "n"}, Status: core.PodStatus{Phase: core.PodPending}}
	if s := PodStatus(p); s != "ContainerCreating" {
		t.Fatal(s)
	}
	p.Status.ContainerStatuses = []core.ContainerStatus{{State: core.ContainerState{Waiting: &core.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}
	if s := PodStatus(p); s != "ImagePullBackOff" {
		t.Fatal(s)
	}
	p.Metadata.DeletionTimestamp = core.NewTime(time.Now())
	if s := PodStatus(p); s != "Terminating" {
		t.Fatal(s)
	}
}

// While init containers have not all completed, STATUS says how far they
// got, as kubectl does.
func TestPodStatusInit(t *testing.T) {
	done := core.ContainerStatus{State: core.ContainerState{Terminated: &core.ContainerStateTerminated{Reason: "Completed"}}}
	running := core.ContainerStatus{State: core.ContainerState{Running: &core.ContainerStateRunning{}}}
	waiting := func(r string) core.ContainerStatus {
		return core.ContainerStatus{State: core.ContainerState{Waiting: &core.ContainerStateWaiting{Reason: r}}}
	}
	failed := core.ContainerStatus{State: core.ContainerState{Terminated: &core.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}}
	for _, tt := range []struct {
		init []core.ContainerStatus
		want string
	}{
		{[]core.ContainerStatus{waiting("PodInitializing"), waiting("PodInitializing")}, "Init:0/2"},
		{[]core.ContainerStatus{waiting("ContainerCreating"), waiting("PodInitializing")}, "Init:0/2"},
		{[]core.ContainerStatus{done, running}, "Init:1/2"},
		{[]core.ContainerStatus{done, waiting("CrashLoopBackOff")}, "Init:CrashLoopBackOff"},
		{[]core.ContainerStatus{failed, waiting("PodInitializing")}, "Init:Error"},
		{[]core.ContainerStatus{done, done}, "Running"},
	} {
		p := &core.Pod{Spec: core.PodSpec{NodeName: "n", InitContainers: make([]core.Container, len(tt.init))},
			Status: core.PodStatus{Phase: core.PodPending, InitContainerStatuses: tt.init}}
		if tt.want == "Running" {
			p.Status.Phase = core.PodRunning
			p.Status.ContainerStatuses = []core.ContainerStatus{running}
		}
		if s := PodStatus(p); s != tt.want {
			t.Errorf("STATUS %q, want %q", s, tt.want)
		}
	}
}

// Sidecars count in READY as containers, and one that started lets the
// init sequence go on, as kubectl shows them.
func TestPodSidecar(t *testing.T) {
	started := func(b bool) *bool { return &b }
	p := &core.Pod{Spec: core.PodSpec{NodeName: "n",
		InitContainers: []core.Container{{Name: "setup"}, {Name: "proxy", RestartPolicy: "Always"}, {Name: "migrate"}},
		Containers:     []core.Container{{Name: "app"}}}}
	p.Status = core.PodStatus{Phase: core.PodPending, InitContainerStatuses: []core.ContainerStatus{
		{Name: "setup", Ready: true, State: core.ContainerState{Terminated: &core.ContainerStateTerminated{Reason: "Completed"}}},
		{Name: "proxy", Started: started(false), State: core.ContainerState{Running: &core.ContainerStateRunning{}}},
		{Name: "migrate", State: core.ContainerState{Waiting: &core.ContainerStateWaiting{Reason: "PodInitializing"}}}}}
	if s, r := PodStatus(p), podReady(p); s != "Init:1/3" || r != "0/2" {
		t.Fatalf("sidecar starting: STATUS %q READY %q, want Init:1/3 0/2", s, r)
	}
	p.Status.InitContainerStatuses[1].Started, p.Status.InitContainerStatuses[1].Ready = started(true), true
	p.Status.InitContainerStatuses[2].State = core.ContainerState{Running: &core.ContainerStateRunning{}}
	if s, r := PodStatus(p), podReady(p); s != "Init:2/3" || r != "1/2" {
		t.Fatalf("sidecar started: STATUS %q READY %q, want Init:2/3 1/2", s, r)
	}
	p.Status.InitContainerStatuses[2] = p.Status.InitContainerStatuses[0]
	p.Status.InitContainerStatuses[2].Name = "migrate"
	p.Status.Phase = core.PodRunning
	p.Status.ContainerStatuses = []core.ContainerStatus{{Name: "app", Ready: true, State: core.ContainerState{Running: &core.ContainerStateRunning{}}}}
	if s, r := PodStatus(p), podReady(p); s != "Running" || r != "2/2" {
		t.Fatalf("running: STATUS %q READY %q, want Running 2/2", s, r)
	}
}

func run(args ...string) (string, string, error) {
	var o, e bytes.Buffer
	err := Run(context.Background(), args, strings.NewReader(""), &o, &e)
	return o.String(), e.String(), err
}

func TestRunErrors(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("EDGECONFIG", "")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"get"}, "usage: edgectl get KIND"},
		{[]string{"get", "pods", "-o", "xml"}, `unknown output format "xml"`},
		{[]string{"apply"}, "-f is required"},
		{[]string{"apply", "-f", "/nonexistent.yaml"}, "/nonexistent.yaml: no such file or directory"},
		{[]string{"--config", "/nonexistent.conf", "get", "pods"}, "read config"},
	} {
		_, stderr, err := run(tt.args...)
		msg := stderr
		if err != nil {
			msg += err.Error()
		}
		if err == nil || !strings.Contains(msg, tt.want) {
			t.Errorf("edgectl %s: err %v, output %q; want %q", strings.Join(tt.args, " "), err, msg, tt.want)
		}
	}
	if out, _, err := run("--help"); err != nil || !strings.Contains(out, "Usage: edgectl") {
		t.Fatalf("help: %v %q", err, out)
	}
}

// A bad manifest is refused before anything is sent: no master is needed.
func TestApplyValidatesLocally(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/bad.yaml"
	writeFile(t, path, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i, bogus: 1}]}\n")
	_, _, err := run("--server", "https://127.0.0.1:1", "apply", "-f", path)
	if err == nil || !strings.Contains(err.Error(), `unknown field "spec.containers[0].bogus"`) {
		t.Fatalf("err = %v", err)
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// What a node reports cannot drive an admin's terminal.
func TestTerminalSafe(t *testing.T) {
	var b strings.Builder
	w := &terminalSafe{w: &b}
	w.Write([]byte("6.1\x1b]0;PWNED\x07\x1b[2J\tok\n\u009b31m é\x7f"))
	want := "6.1\\x1b]0;PWNED\\x07\\x1b[2J\tok\n\\u009b31m é\\x7f"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}

// describe node shows every condition with its message on one row: the
// agent's PreflightPassed says which checks failed and how to fix them.
func TestDescribeNodeConditions(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	n := &core.Node{TypeMeta: core.TypeMeta{Kind: core.KindNode}, Metadata: core.ObjectMeta{Name: "pi-1"},
		Status: core.NodeStatus{Conditions: []core.NodeCondition{
			{Type: "Ready", Status: core.ConditionTrue, Reason: "AgentReady", Message: "agent is connected", LastTransitionTime: core.NewTime(now.Add(-time.Hour))},
			{Type: "PreflightPassed", Status: core.ConditionFalse, Reason: "ChecksFailed",
				Message:            "1 of 17 checks failed: cgroup memory: cgroup v1: memory is disabled (fix: add \"cgroup_enable=memory cgroup_memory=1\" to /boot/firmware/cmdline.txt)\nthen reboot",
				LastTransitionTime: core.NewTime(now.Add(-5 * time.Minute))}}}}
	var b strings.Builder
	describe(&b, n, nil, now)
	var row string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "PreflightPassed") {
			row = l
		}
	}
	for _, want := range []string{"False", "ChecksFailed", `cgroup memory: cgroup v1: memory is disabled (fix: add "cgroup_enable=memory cgroup_memory=1" to /boot/firmware/cmdline.txt) | then reboot`, "5m ago"} {
		if !strings.Contains(row, want) {
			t.Fatalf("condition row %q lacks %q:\n%s", row, want, b.String())
		}
	}
}
