package edgeagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// The pod worker's scenarios, driven step by step: each sync is one pass of
// the worker's loop, the fake clock stands in for its timers, and the
// returned delay is what the loop would wait. Nothing sleeps.

// workerHarness runs one pod's worker by hand on a fake runtime and clock.
type workerHarness struct {
	t      *testing.T
	clk    *fakeClock
	rt     *fakeRuntime
	a      *Agent
	w      *podWorker
	pod    *core.Pod
	events <-chan core.RuntimeEvent
}

func testPod(name string, containers ...core.Container) *core.Pod {
	p := &core.Pod{TypeMeta: core.TypeMeta{Kind: core.KindPod},
		Metadata: core.ObjectMeta{Name: name, Namespace: "default", UID: name + "-6f1c-4d2a-uid"},
		Spec:     core.PodSpec{HostNetwork: true, Containers: containers}}
	core.SetDefaults(p)
	return p
}

func busybox(name string) core.Container {
	return core.Container{Name: name, Image: "busybox", Command: []string{"sleep", "3600"}}
}

func newWorkerHarness(t *testing.T, pod *core.Pod) *workerHarness {
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	rt.addImage("busybox")
	a := newTestAgent(t, rt, clk, t.TempDir())
	if err := a.init(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	events, err := rt.Events(a.ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := &workerHarness{t: t, clk: clk, rt: rt, a: a, pod: pod, events: events}
	h.w = a.newWorker(pod.Metadata.UID, pod.Metadata.Namespace, pod.Metadata.Name)
	a.workers[pod.Metadata.UID] = h.w
	pod.Spec.EachContainer(func(c *core.Container, _ bool) {
		a.byContainer[containerID(pod, c.Name)] = pod.Metadata.UID
	})
	h.w.setPod(pod)
	return h
}

// sync delivers the runtime's pending events, as the agent's loop does,
// then runs one pass of the worker and returns when it would look again.
func (h *workerHarness) sync() time.Duration {
	for {
		select {
		case ev := <-h.events:
			h.a.handleEvent(ev)
			continue
		default:
		}
		break
	}
	return h.w.sync()
}

func (h *workerHarness) id(container string) string { return containerID(h.pod, container) }

func (h *workerHarness) podStatus() *core.PodStatus {
	h.t.Helper()
	r, ok := h.w.report()
	if !ok {
		h.t.Fatal("no status reported")
	}
	return &r.Status
}

func (h *workerHarness) status(container string) core.ContainerStatus {
	h.t.Helper()
	for _, cs := range h.podStatus().ContainerStatuses {
		if cs.Name == container {
			return cs
		}
	}
	h.t.Fatalf("no status of container %s", container)
	return core.ContainerStatus{}
}

// recorded returns the events the worker queued for the master.
func (h *workerHarness) recorded() []core.PodEvent {
	h.a.events.flush()
	return h.a.events.pending(10000)
}

func countEvents(events []core.PodEvent, reason, message string) int {
	n := 0
	for _, e := range events {
		if e.Reason == reason && strings.Contains(e.Message, message) {
			n++
		}
	}
	return n
}

func waitingReason(cs core.ContainerStatus) string {
	if cs.State.Waiting == nil {
		return ""
	}
	return cs.State.Waiting.Reason
}

// A container starts once, is reported running and ready, and the start
// is an event.
func TestWorkerStartsContainer(t *testing.T) {
	h := newWorkerHarness(t, testPod("web", busybox("app")))
	h.sync()
	state, starts, _ := h.rt.state(h.id("app"))
	if state != core.TaskRunning || starts != 1 {
		t.Fatalf("task %q after %d starts", state, starts)
	}
	h.sync()
	if _, starts, _ := h.rt.state(h.id("app")); starts != 1 {
		t.Fatalf("started %d times", starts)
	}
	st := h.podStatus()
	cs := h.status("app")
	if st.Phase != core.PodRunning || cs.State.Running == nil || !cs.Ready || st.Condition("Ready").Status != core.ConditionTrue {
		t.Fatalf("status %+v", st)
	}
	if cs.ContainerID != "containerd://"+h.id("app") || cs.ImageID != fakeImage("busybox").ID || cs.RestartCount != 0 {
		t.Fatalf("container status %+v", cs)
	}
	if n := countEvents(h.recorded(), "Started", "Started container app"); n != 1 {
		t.Fatalf("%d Started events: %+v", n, h.recorded())
	}
}

// A crashing container restarts at once the first time, then after 1s,
// 2s, 4s ... capped at 60s, waiting in CrashLoopBackOff meanwhile.
func TestWorkerRestartBackoff(t *testing.T) {
	h := newWorkerHarness(t, testPod("web", busybox("app")))
	id := h.id("app")
	h.sync()
	h.rt.exit(t, id, 1)
	if next := h.sync(); next != startCheck {
		t.Fatalf("first restart not at once: next look in %s", next)
	}
	if cs := h.status("app"); cs.RestartCount != 1 || cs.State.Running == nil {
		t.Fatalf("after the first crash: %+v", cs)
	}
	for i, wait := range []time.Duration{1, 2, 4, 8, 16, 32, 60, 60} {
		wait *= time.Second
		h.rt.exit(t, id, 1)
		if next := h.sync(); next != wait {
			t.Fatalf("crash %d: back-off %s, want %s", i+2, next, wait)
		}
		cs := h.status("app")
		if waitingReason(cs) != "CrashLoopBackOff" || !strings.Contains(cs.State.Waiting.Message, "back-off "+wait.String()) {
			t.Fatalf("crash %d: state %+v", i+2, cs.State)
		}
		if last := cs.LastState.Terminated; last == nil || last.ExitCode != 1 || last.Reason != "Error" {
			t.Fatalf("crash %d: last state %+v", i+2, cs.LastState)
		}
		if h.podStatus().Condition("Ready").Status != core.ConditionFalse {
			t.Fatal("a crash-looping pod is reported ready")
		}
		// Not a moment early.
		h.clk.Advance(wait - time.Millisecond)
		if next := h.sync(); next > 10*time.Millisecond || h.status("app").RestartCount != int32(i+1) {
			t.Fatalf("crash %d: restarted early (next %s)", i+2, next)
		}
		h.clk.Advance(time.Millisecond)
		h.sync()
		if cs := h.status("app"); cs.RestartCount != int32(i+2) || cs.State.Running == nil {
			t.Fatalf("crash %d: not restarted after its back-off: %+v", i+2, cs)
		}
	}
	if _, starts, _ := h.rt.state(id); starts != 10 {
		t.Fatalf("%d starts, want 10", starts)
	}
	ev := h.recorded()
	if n := countEvents(ev, "Error", "Container app exited with code 1"); n != 9 {
		t.Fatalf("%d exit events, want 9", n)
	}
	if n := countEvents(ev, "Started", "Restarted container app"); n != 9 {
		t.Fatalf("%d restart events, want 9", n)
	}
}

// A container that ran longer than the back-off cap restarts at once,
// even when no sync saw it running that long; the back-off then starts
// again from 1s.
func TestWorkerBackoffResets(t *testing.T) {
	h := newWorkerHarness(t, testPod("web", busybox("app")))
	id := h.id("app")
	h.sync()
	for range 4 { // back-off reaches 8s
		h.rt.exit(t, id, 1)
		h.clk.Advance(h.sync())
		h.sync()
	}
	h.clk.Advance(61 * time.Second) // runs a minute, unobserved
	h.rt.exit(t, id, 1)
	if next := h.sync(); next != startCheck || h.status("app").RestartCount != 5 {
		t.Fatalf("not restarted at once after a long run: next %s, %+v", next, h.status("app"))
	}
	h.rt.exit(t, id, 1)
	if next := h.sync(); next != time.Second {
		t.Fatalf("back-off after a reset = %s, want 1s", next)
	}
}

// restartPolicy decides whether an exit restarts the container, and the
// pod's phase follows.
func TestWorkerRestartPolicy(t *testing.T) {
	for _, tt := range []struct {
		policy  core.RestartPolicy
		code    int32
		restart bool
		phase   core.PodPhase
		reason  string
	}{
		{core.RestartAlways, 0, true, core.PodRunning, "Completed"},
		{core.RestartAlways, 3, true, core.PodRunning, "Error"},
		{core.RestartOnFailure, 0, false, core.PodSucceeded, "Completed"},
		{core.RestartOnFailure, 3, true, core.PodRunning, "Error"},
		{core.RestartNever, 0, false, core.PodSucceeded, "Completed"},
		{core.RestartNever, 3, false, core.PodFailed, "Error"},
	} {
		t.Run(fmt.Sprintf("%s/%d", tt.policy, tt.code), func(t *testing.T) {
			pod := testPod("job", busybox("app"))
			pod.Spec.RestartPolicy = tt.policy
			h := newWorkerHarness(t, pod)
			h.sync()
			h.rt.exit(t, h.id("app"), tt.code)
			next := h.sync()
			cs := h.status("app")
			if h.podStatus().Phase != tt.phase {
				t.Fatalf("phase %s, want %s", h.podStatus().Phase, tt.phase)
			}
			if _, starts, _ := h.rt.state(h.id("app")); (starts == 2) != tt.restart {
				t.Fatalf("%d starts; restart wanted: %v", starts, tt.restart)
			}
			term := cs.LastState.Terminated
			if !tt.restart {
				term = cs.State.Terminated
				if next != h.a.Resync {
					t.Fatalf("a finished container is looked at again in %s", next)
				}
			}
			if term == nil || term.ExitCode != tt.code || term.Reason != tt.reason {
				t.Fatalf("terminated %+v, want code %d reason %s", term, tt.code, tt.reason)
			}
			if n := countEvents(h.recorded(), tt.reason, fmt.Sprintf("exited with code %d", tt.code)); n != 1 {
				t.Fatalf("%d exit events", n)
			}
		})
	}
}

// A readiness probe marks the container ready after successThreshold
// successes, not before initialDelaySeconds, and unready only after
// failureThreshold failures in a row.
func TestWorkerReadinessProbe(t *testing.T) {
	c := busybox("app")
	c.ReadinessProbe = &core.Probe{Exec: &core.ExecAction{Command: []string{"check"}},
		InitialDelaySeconds: 5, PeriodSeconds: 10, SuccessThreshold: 2, FailureThreshold: 3}
	h := newWorkerHarness(t, testPod("web", c))
	var healthy atomic.Bool
	var probes atomic.Int32
	h.rt.exec = func(id string, cmd []string) (int, error) {
		probes.Add(1)
		if !slices.Equal(cmd, []string{"check"}) || id != h.id("app") {
			return 0, fmt.Errorf("probe ran %v in %s", cmd, id)
		}
		if healthy.Load() {
			return 0, nil
		}
		return 1, nil
	}
	healthy.Store(true)
	ready := func() bool { return h.status("app").Ready }
	h.sync()
	h.clk.Advance(4900 * time.Millisecond)
	if next := h.sync(); probes.Load() != 0 || ready() || next != 100*time.Millisecond {
		t.Fatalf("before the initial delay: %d probes, ready %v, next %s", probes.Load(), ready(), next)
	}
	h.clk.Advance(100 * time.Millisecond)
	if next := h.sync(); probes.Load() != 1 || ready() || next != 10*time.Second {
		t.Fatalf("after one success: %d probes, ready %v, next %s", probes.Load(), ready(), next)
	}
	if h.podStatus().Condition("Ready").Status != core.ConditionFalse {
		t.Fatal("pod ready before its container")
	}
	step := func() { h.clk.Advance(10 * time.Second); h.sync() }
	step()
	if !ready() || h.podStatus().Condition("Ready").Status != core.ConditionTrue {
		t.Fatalf("not ready after 2 successes: %+v", h.podStatus())
	}
	healthy.Store(false)
	for i := 1; i <= 2; i++ {
		if step(); !ready() {
			t.Fatalf("unready after %d failures (threshold 3)", i)
		}
	}
	if step(); ready() {
		t.Fatal("still ready after 3 failures")
	}
	healthy.Store(true)
	if step(); ready() {
		t.Fatal("ready after 1 success (threshold 2)")
	}
	if step(); !ready() {
		t.Fatal("not ready after 2 successes")
	}
	if _, _, sig := h.rt.state(h.id("app")); len(sig) != 0 {
		t.Fatalf("a readiness probe signalled the container: %v", sig)
	}
}

// failureThreshold liveness failures in a row kill the container, which
// then restarts; fewer, or failures broken by a success, do not.
func TestWorkerLivenessProbe(t *testing.T) {
	c := busybox("app")
	c.LivenessProbe = &core.Probe{Exec: &core.ExecAction{Command: []string{"alive"}}, PeriodSeconds: 10, FailureThreshold: 3}
	h := newWorkerHarness(t, testPod("web", c))
	var results []int // exit codes the probe returns, in turn
	h.rt.exec = func(string, []string) (int, error) {
		code := results[0]
		results = results[1:]
		return code, nil
	}
	id := h.id("app")
	results = []int{1, 1, 0, 1, 1, 1}
	h.sync() // starts it and probes at once (no initial delay)
	for range 4 {
		h.clk.Advance(10 * time.Second)
		h.sync()
	}
	if _, _, sig := h.rt.state(id); len(sig) != 0 {
		t.Fatalf("killed after failures broken by a success: %v", sig)
	}
	h.clk.Advance(10 * time.Second)
	h.sync() // third failure in a row
	if _, _, sig := h.rt.state(id); !slices.Equal(sig, []syscall.Signal{syscall.SIGKILL}) {
		t.Fatalf("signals %v, want SIGKILL", sig)
	}
	results = []int{0}
	h.sync()
	cs := h.status("app")
	if cs.RestartCount != 1 || cs.State.Running == nil || cs.LastState.Terminated == nil || cs.LastState.Terminated.ExitCode != 137 {
		t.Fatalf("after the liveness kill: %+v", cs)
	}
	if n := countEvents(h.recorded(), "Unhealthy", "Liveness probe failed 3 times"); n != 1 {
		t.Fatalf("%d Unhealthy events", n)
	}
}

// An OOM kill is reported as OOMKilled, and stays so on later syncs.
func TestWorkerOOMKilled(t *testing.T) {
	t.Run("Never", func(t *testing.T) {
		pod := testPod("job", busybox("app"))
		pod.Spec.RestartPolicy = core.RestartNever
		h := newWorkerHarness(t, pod)
		h.sync()
		h.rt.oomKill(t, h.id("app"))
		for i := range 2 {
			h.clk.Advance(time.Hour)
			h.sync()
			term := h.status("app").State.Terminated
			if term == nil || term.Reason != "OOMKilled" || term.ExitCode != 137 {
				t.Fatalf("sync %d: terminated %+v", i, term)
			}
		}
		if n := countEvents(h.recorded(), "OOMKilled", "exited with code 137"); n != 1 {
			t.Fatalf("%d OOMKilled events", n)
		}
	})
	t.Run("Always", func(t *testing.T) {
		h := newWorkerHarness(t, testPod("web", busybox("app")))
		h.sync()
		h.rt.oomKill(t, h.id("app"))
		h.sync()
		h.rt.exit(t, h.id("app"), 2) // a plain crash after it is not an OOM kill
		h.sync()
		cs := h.status("app")
		if last := cs.LastState.Terminated; last == nil || last.Reason != "Error" || last.ExitCode != 2 {
			t.Fatalf("last state %+v", cs.LastState)
		}
		if n := countEvents(h.recorded(), "OOMKilled", ""); n != 1 {
			t.Fatalf("%d OOMKilled events", n)
		}
	})
	t.Run("EventNeverSeen", func(t *testing.T) {
		pod := testPod("job", busybox("app"))
		pod.Spec.RestartPolicy = core.RestartNever
		h := newWorkerHarness(t, pod)
		h.sync()
		h.rt.oomKillUnannounced(t, h.id("app"))
		h.sync()
		if term := h.status("app").State.Terminated; term == nil || term.Reason != "OOMKilled" {
			t.Fatalf("an OOM kill known only to the cgroup: terminated %+v", term)
		}
	})
}

// A failed pull is ErrImagePull, then ImagePullBackOff while it keeps
// failing, retried with a growing, jittered delay; the container starts
// once the image can be pulled.
func TestWorkerImagePullFailure(t *testing.T) {
	c := busybox("app")
	c.Image = "edge.local/app:v2"
	h := newWorkerHarness(t, testPod("web", c))
	next := h.sync()
	cs := h.status("app")
	if waitingReason(cs) != "ErrImagePull" || !strings.Contains(cs.State.Waiting.Message, `pull "edge.local/app:v2"`) {
		t.Fatalf("state %+v", cs.State)
	}
	if next < 500*time.Millisecond || next > time.Second {
		t.Fatalf("first retry in %s, want 0.5-1s", next)
	}
	h.clk.Advance(next - time.Millisecond)
	h.sync()
	if h.rt.pullCount(c.Image) != 1 {
		t.Fatalf("%d pulls before the retry is due", h.rt.pullCount(c.Image))
	}
	h.clk.Advance(time.Millisecond)
	next = h.sync()
	if reason := waitingReason(h.status("app")); reason != "ImagePullBackOff" {
		t.Fatalf("reason %s after a second failure", reason)
	}
	if next < time.Second || next > 2*time.Second {
		t.Fatalf("second retry in %s, want 1-2s", next)
	}
	h.rt.addToRegistry(c.Image)
	h.clk.Advance(next)
	h.sync()
	if cs := h.status("app"); cs.State.Running == nil || h.rt.pullCount(c.Image) != 3 {
		t.Fatalf("after the registry is back: %+v, %d pulls", cs.State, h.rt.pullCount(c.Image))
	}
	if n := countEvents(h.recorded(), "Failed", "Failed to get image edge.local/app:v2"); n != 1 {
		t.Fatalf("%d pull failure events, want 1", n)
	}
}

// While an image comes, its progress is in the container's waiting
// message (what edgectl describe shows); deleting the pod ends the pull.
func TestWorkerPullProgress(t *testing.T) {
	c := busybox("app")
	c.Image = "edge.local/big:v1"
	h := newWorkerHarness(t, testPod("web", c))
	h.rt.addToRegistry(c.Image)
	var mid core.ContainerStatus
	h.rt.pulling = func(ctx context.Context, ref string, progress func(core.PullProgress)) error {
		progress(core.PullProgress{Done: 12_300_000, Total: 45_600_000})
		mid = h.status("app")
		return nil
	}
	h.sync()
	if w := mid.State.Waiting; w == nil || w.Reason != "ContainerCreating" || w.Message != `Pulling image "edge.local/big:v1": 12.3/45.6 MB` {
		t.Fatalf("status while pulling: %+v", mid.State)
	}
	if cs := h.status("app"); cs.State.Running == nil {
		t.Fatalf("after the pull: %+v", cs.State)
	}

	c2 := busybox("app")
	c2.Image = "edge.local/huge:v1"
	h2 := newWorkerHarness(t, testPod("web2", c2))
	ended := make(chan error, 1)
	h2.rt.pulling = func(ctx context.Context, ref string, progress func(core.PullProgress)) error {
		h2.w.terminate() // the pod is deleted while its image comes
		<-ctx.Done()
		ended <- ctx.Err()
		return core.Errorf(core.EUNAVAILABLE, "%v", ctx.Err())
	}
	h2.sync()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the pull's context did not end")
		}
	default:
		t.Fatal("the pull did not end with the pod")
	}
}

// The pull policy decides when the registry is asked: IfNotPresent and
// Never use a present image, Always pulls and falls back to the local copy
// when the registry is unreachable, Never never pulls.
func TestWorkerPullPolicy(t *testing.T) {
	for _, tt := range []struct {
		name       string
		policy     core.PullPolicy
		present    bool
		inRegistry bool
		pulls      int
		reason     string // waiting reason, "" if running
	}{
		{"IfNotPresent present", core.PullIfNotPresent, true, true, 0, ""},
		{"IfNotPresent absent", core.PullIfNotPresent, false, true, 1, ""},
		{"Always present", core.PullAlways, true, true, 1, ""},
		{"Always offline uses the local copy", core.PullAlways, true, false, 1, ""},
		{"Always absent offline", core.PullAlways, false, false, 1, "ErrImagePull"},
		{"Never present", core.PullNever, true, true, 0, ""},
		{"Never absent", core.PullNever, false, true, 0, "ErrImageNeverPull"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := busybox("app")
			c.Image, c.ImagePullPolicy = "edge.local/tool:1", tt.policy
			h := newWorkerHarness(t, testPod("web", c))
			if tt.present {
				h.rt.addImage(c.Image)
			}
			if tt.inRegistry {
				h.rt.addToRegistry(c.Image)
			}
			h.sync()
			cs := h.status("app")
			if got := h.rt.pullCount(c.Image); got != tt.pulls {
				t.Fatalf("%d pulls, want %d", got, tt.pulls)
			}
			if got := waitingReason(cs); got != tt.reason || (tt.reason == "" && cs.State.Running == nil) {
				t.Fatalf("state %+v, want waiting reason %q", cs.State, tt.reason)
			}
			if tt.reason == "ErrImageNeverPull" {
				h.clk.Advance(time.Minute)
				h.sync()
				if got := waitingReason(h.status("app")); got != "ErrImageNeverPull" || h.rt.pullCount(c.Image) != 0 {
					t.Fatalf("retry: reason %s, %d pulls", got, h.rt.pullCount(c.Image))
				}
			}
		})
	}
}

// A limit that does not parse leaves the container waiting with
// CreateContainerConfigError naming the container and field; nothing runs
// unlimited.
func TestWorkerBadLimit(t *testing.T) {
	c := busybox("app")
	c.Resources.Limits = core.ResourceList{"memory": "32MiB"}
	h := newWorkerHarness(t, testPod("web", c))
	h.sync()
	h.clk.Advance(time.Minute)
	h.sync()
	cs := h.status("app")
	if waitingReason(cs) != "CreateContainerConfigError" || !strings.Contains(cs.State.Waiting.Message, `container "app": resources.limits.memory: quantity "32MiB"`) {
		t.Fatalf("state %+v", cs.State)
	}
	if n, created := h.rt.counts(); n != 0 || created != 0 {
		t.Fatalf("%d containers created", created)
	}
	if n := countEvents(h.recorded(), "Failed", "resources.limits.memory"); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

// What the runtime is asked to create: limits, environment, mounts and
// the pod's network namespace; the pod IP is reported and written to the
// pod's hosts file.
func TestWorkerContainerConfig(t *testing.T) {
	c := busybox("app")
	c.Env = []core.EnvVar{{Name: "MODE", Value: "edge"}}
	c.WorkingDir = "/srv"
	c.Resources.Limits = core.ResourceList{"memory": "64Mi", "cpu": "500m"}
	c.VolumeMounts = []core.VolumeMount{{Name: "cache", MountPath: "/cache"},
		{Name: "conf", MountPath: "/etc/app", ReadOnly: true, MountPropagation: core.PropagationHostToContainer}}
	c.TerminationMessagePath = "/run/last-words"
	hostDir := t.TempDir()
	pod := testPod("web", c)
	pod.Spec.HostNetwork = false
	pod.Spec.Volumes = []core.Volume{{Name: "cache", EmptyDir: &core.EmptyDirVolumeSource{}},
		{Name: "conf", HostPath: &core.HostPathVolumeSource{Path: hostDir, Type: "Directory"}}}
	h := newWorkerHarness(t, pod)
	h.a.Network = &fakeNetwork{}
	h.sync()
	cfg := h.rt.config(h.id("app"))
	if cfg == nil {
		t.Fatal("no container")
	}
	podDir := h.w.podDir()
	netns := filepath.Join(h.a.RunDir, "netns", pod.Metadata.UID)
	want := core.ContainerResources{MemoryLimit: 64 << 20, CPUQuota: 50000, CPUPeriod: cpuPeriod, CPUShares: 512, PidsLimit: 1024}
	if cfg.Resources != want || cfg.HostNetwork || cfg.NetNSPath != netns || cfg.Hostname != "web" ||
		!slices.Equal(cfg.Env, []string{"MODE=edge"}) || cfg.WorkingDir != "/srv" || !slices.Equal(cfg.Command, c.Command) {
		t.Fatalf("config %+v", cfg)
	}
	mounts := []core.Mount{
		{Source: filepath.Join(podDir, "hosts"), Destination: "/etc/hosts", ReadOnly: true},
		{Source: filepath.Join(podDir, "hostname"), Destination: "/etc/hostname", ReadOnly: true},
	}
	if _, err := os.Stat("/etc/resolv.conf"); err == nil {
		mounts = append(mounts, core.Mount{Source: "/etc/resolv.conf", Destination: "/etc/resolv.conf", ReadOnly: true})
	}
	mounts = append(mounts, core.Mount{Source: filepath.Join(podDir, "volumes", "cache"), Destination: "/cache"},
		core.Mount{Source: hostDir, Destination: "/etc/app", ReadOnly: true, Propagation: "rslave"},
		core.Mount{Source: filepath.Join(h.a.RunDir, "pods", pod.Metadata.UID, "termination", "app"), Destination: "/run/last-words"})
	if !reflect.DeepEqual(cfg.Mounts, mounts) {
		t.Fatalf("mounts %+v\nwant %+v", cfg.Mounts, mounts)
	}
	if cfg.Labels[labelNetNS] != netns || cfg.Labels[labelPodUID] != pod.Metadata.UID || cfg.Labels[labelContainer] != "app" {
		t.Fatalf("labels %v", cfg.Labels)
	}
	if fi, err := os.Stat(mounts[len(mounts)-1].Source); err != nil || fi.Mode().Perm() != 0o666 || fi.Size() != 0 {
		t.Fatalf("termination message file: %v %v", fi, err) // writable by any user the container runs as
	}
	if ip := h.podStatus().PodIP; ip != "10.42.0.2" {
		t.Fatalf("pod IP %q", ip)
	}
	if b, _ := os.ReadFile(filepath.Join(podDir, "hosts")); !strings.Contains(string(b), "10.42.0.2\tweb\n") {
		t.Fatalf("hosts file %q", b)
	}
}

// Teardown sends SIGTERM, waits the grace period for the container to go,
// sends SIGKILL only if it did not, and removes the container, its
// network namespace, pod directory and logs.
func TestWorkerTeardown(t *testing.T) {
	for _, tt := range []struct {
		name     string
		grace    int64
		trapTERM bool
		signals  []syscall.Signal
	}{
		{"honours SIGTERM", 30, false, []syscall.Signal{syscall.SIGTERM}},
		{"ignores SIGTERM", 30, true, []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}},
		{"no grace", 0, false, []syscall.Signal{syscall.SIGKILL}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod("web", busybox("app"), busybox("side"))
			pod.Spec.TerminationGracePeriodSeconds = &tt.grace
			pod.Spec.HostNetwork = false
			h := newWorkerHarness(t, pod)
			if tt.trapTERM {
				h.rt.setTrapTERM("app")
				h.rt.setTrapTERM("side")
			}
			h.sync()
			if _, err := os.Stat(h.w.logPath("app")); err != nil {
				t.Fatal(err)
			}
			h.w.terminate()
			start := h.clk.Now()
			done := make(chan time.Duration)
			go func() { done <- h.w.sync() }()
			if tt.trapTERM {
				// Both containers wait out the grace period together.
				graceEnd := start.Add(time.Duration(tt.grace) * time.Second)
				waitUntil(t, "both grace timers", func() bool { return h.clk.timersAt(graceEnd) == 2 })
				h.clk.Advance(time.Duration(tt.grace)*time.Second - time.Millisecond)
				select {
				case <-done:
					t.Fatal("teardown ended before the grace period")
				default:
				}
				if _, _, sig := h.rt.state(h.id("app")); len(sig) != 1 {
					t.Fatalf("signals %v before the grace period ended", sig)
				}
				h.clk.Advance(time.Millisecond)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("teardown did not end")
			}
			for _, name := range []string{"app", "side"} {
				state, _, sig := h.rt.state(h.id(name))
				if state != "absent" {
					t.Fatalf("container %s not removed", name)
				}
				if !slices.Equal(sig, tt.signals) {
					t.Fatalf("%s got signals %v, want %v", name, sig, tt.signals)
				}
			}
			if !h.w.isFinished() {
				t.Fatal("worker not finished")
			}
			for _, p := range []string{h.w.netnsPath, h.w.podDir(), h.w.logDir()} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Fatalf("%s left behind (%v)", p, err)
				}
			}
			if n := countEvents(h.recorded(), "Killing", fmt.Sprintf("grace period %s", time.Duration(tt.grace)*time.Second)); n != 1 {
				t.Fatalf("%d Killing events", n)
			}
		})
	}
}
