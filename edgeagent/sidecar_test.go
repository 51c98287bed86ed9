package edgeagent

import (
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// sidecar is an init container with restartPolicy Always.
func sidecar(name string) core.Container {
	c := busybox(name)
	c.RestartPolicy = core.ContainerRestartAlways
	return c
}

// sidecarPod is a pod of policy with init containers inits (in order) and
// one container, app.
func sidecarPod(name string, policy core.RestartPolicy, inits ...core.Container) *core.Pod {
	p := testPod(name, busybox("app"))
	p.Spec.InitContainers = inits
	p.Spec.RestartPolicy = policy
	core.SetDefaults(p)
	return p
}

// probes answers the fake runtime's exec probes by command name: a
// command is OK once set.
type probes struct {
	mu    sync.Mutex
	ok    map[string]bool
	calls map[string]int
}

func newProbes(h *workerHarness) *probes {
	p := &probes{ok: map[string]bool{}, calls: map[string]int{}}
	h.rt.exec = func(_ string, cmd []string) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.calls[cmd[0]]++
		if p.ok[cmd[0]] {
			return 0, nil
		}
		return 1, nil
	}
	return p
}

func (p *probes) set(cmd string, ok bool) { p.mu.Lock(); p.ok[cmd] = ok; p.mu.Unlock() }
func (p *probes) count(cmd string) int    { p.mu.Lock(); defer p.mu.Unlock(); return p.calls[cmd] }

func (h *workerHarness) taskState(name string) core.TaskState {
	s, _, _ := h.rt.state(h.id(name))
	return s
}

func (h *workerHarness) starts(name string) int {
	_, n, _ := h.rt.state(h.id(name))
	return n
}

// The init container after a sidecar starts only once the sidecar has
// started (its startup probe succeeded), without waiting for it to exit;
// the sidecar then runs beside the containers, reported among the init
// containers as started and ready.
func TestWorkerSidecarStartsBeforeNext(t *testing.T) {
	proxy := sidecar("proxy")
	proxy.StartupProbe = &core.Probe{Exec: &core.ExecAction{Command: []string{"up"}}, PeriodSeconds: 5, FailureThreshold: 10}
	h := newWorkerHarness(t, sidecarPod("web", core.RestartAlways, proxy, busybox("setup")))
	pr := newProbes(h)
	h.sync()
	if h.taskState("proxy") != core.TaskRunning || h.taskState("setup") != "absent" {
		t.Fatalf("first pass: proxy %q, setup %q", h.taskState("proxy"), h.taskState("setup"))
	}
	for range 3 { // its startup probe fails: nothing after it starts
		h.clk.Advance(5 * time.Second)
		h.sync()
	}
	if pr.count("up") != 4 || h.taskState("setup") != "absent" || h.taskState("app") != "absent" {
		t.Fatalf("%d startup probes; setup %q, app %q before the sidecar started", pr.count("up"), h.taskState("setup"), h.taskState("app"))
	}
	cs := h.initStatus("proxy")
	if cs.State.Running == nil || cs.Started == nil || *cs.Started || cs.Ready {
		t.Fatalf("sidecar before its startup probe succeeded: %+v", cs)
	}
	if st := h.podStatus(); st.Phase != core.PodPending || !strings.Contains(st.Condition("Initialized").Message, "[proxy setup]") {
		t.Fatalf("pod while the sidecar starts: %+v", st)
	}
	pr.set("up", true)
	h.clk.Advance(5 * time.Second)
	h.sync()
	if h.taskState("setup") != core.TaskRunning || h.taskState("app") != "absent" {
		t.Fatalf("after the sidecar started: setup %q, app %q", h.taskState("setup"), h.taskState("app"))
	}
	cs = h.initStatus("proxy")
	if cs.State.Running == nil || cs.Started == nil || !*cs.Started || !cs.Ready {
		t.Fatalf("started sidecar: %+v", cs)
	}
	if st := h.podStatus(); st.Phase != core.PodPending || !strings.Contains(st.Condition("Initialized").Message, "[setup]") {
		t.Fatalf("pod while setup runs: %+v", st)
	}
	h.rt.exit(t, h.id("setup"), 0)
	h.sync()
	if h.taskState("app") != core.TaskRunning || h.taskState("proxy") != core.TaskRunning {
		t.Fatalf("app %q, proxy %q after setup completed", h.taskState("app"), h.taskState("proxy"))
	}
	st := h.podStatus()
	if st.Phase != core.PodRunning || st.Condition("Initialized").Status != core.ConditionTrue || st.Condition("Ready").Status != core.ConditionTrue {
		t.Fatalf("initialised pod: %+v", st)
	}
	if cs := h.initStatus("proxy"); cs.State.Running == nil || !cs.Ready || cs.State.Terminated != nil {
		t.Fatalf("sidecar beside the container: %+v", cs)
	}
	h.clk.Advance(time.Hour)
	h.sync()
	if h.starts("proxy") != 1 || h.starts("setup") != 1 || h.starts("app") != 1 {
		t.Fatalf("starts: proxy %d, setup %d, app %d", h.starts("proxy"), h.starts("setup"), h.starts("app"))
	}
}

// A sidecar that exits, with any code, is restarted with the containers'
// back-off, even in a Never pod, while the container keeps running; its
// exits neither fail nor complete the pod.
func TestWorkerSidecarRestarts(t *testing.T) {
	h := newWorkerHarness(t, sidecarPod("web", core.RestartNever, sidecar("proxy")))
	id := h.id("proxy")
	h.sync()
	if h.taskState("app") != core.TaskRunning {
		t.Fatalf("app %q", h.taskState("app"))
	}
	h.rt.exit(t, id, 0)
	if next := h.sync(); next != startCheck || h.taskState("proxy") != core.TaskRunning {
		t.Fatalf("sidecar not restarted at once after exit 0: %q, next %s", h.taskState("proxy"), next)
	}
	h.rt.exit(t, id, 2)
	if next := h.sync(); next != time.Second {
		t.Fatalf("back-off %s after the second exit, want 1s", next)
	}
	cs := h.initStatus("proxy")
	if waitingReason(cs) != "CrashLoopBackOff" || cs.LastState.Terminated == nil || cs.LastState.Terminated.ExitCode != 2 || cs.RestartCount != 1 {
		t.Fatalf("sidecar in back-off: %+v", cs)
	}
	st := h.podStatus()
	if st.Phase != core.PodRunning || st.Condition("Ready").Status != core.ConditionFalse {
		t.Fatalf("pod while its sidecar backs off: phase %s, conditions %+v", st.Phase, st.Conditions)
	}
	h.clk.Advance(time.Second)
	h.sync()
	if cs := h.initStatus("proxy"); cs.State.Running == nil || cs.RestartCount != 2 {
		t.Fatalf("sidecar after its back-off: %+v", cs)
	}
	if cs := h.status("app"); cs.State.Running == nil || cs.RestartCount != 0 || h.starts("app") != 1 {
		t.Fatalf("app: %+v after %d starts", cs, h.starts("app"))
	}
	if st := h.podStatus(); st.Phase != core.PodRunning || st.Condition("Ready").Status != core.ConditionTrue {
		t.Fatalf("pod: phase %s, conditions %+v", st.Phase, st.Conditions)
	}
	if _, _, sig := h.rt.state(h.id("app")); len(sig) != 0 {
		t.Fatalf("app signalled: %v", sig)
	}
}

// The pod is Ready only once its sidecar's readiness probe succeeds, and
// no longer when it fails.
func TestWorkerSidecarReadiness(t *testing.T) {
	proxy := sidecar("proxy")
	proxy.ReadinessProbe = &core.Probe{Exec: &core.ExecAction{Command: []string{"ready"}}, PeriodSeconds: 10, FailureThreshold: 1}
	h := newWorkerHarness(t, sidecarPod("web", core.RestartAlways, proxy))
	pr := newProbes(h)
	h.sync()
	if h.taskState("app") != core.TaskRunning {
		t.Fatalf("app %q: a sidecar without a startup probe is started when it runs", h.taskState("app"))
	}
	st := h.podStatus()
	if !h.status("app").Ready || h.initStatus("proxy").Ready || st.Condition("Ready").Status != core.ConditionFalse ||
		st.Condition("ContainersReady").Status != core.ConditionFalse {
		t.Fatalf("pod ready before its sidecar: %+v", st)
	}
	pr.set("ready", true)
	h.clk.Advance(10 * time.Second)
	h.sync()
	st = h.podStatus()
	if !h.initStatus("proxy").Ready || st.Condition("Ready").Status != core.ConditionTrue || st.Condition("ContainersReady").Status != core.ConditionTrue {
		t.Fatalf("pod with its sidecar ready: %+v", st)
	}
	pr.set("ready", false)
	h.clk.Advance(10 * time.Second)
	h.sync()
	if h.initStatus("proxy").Ready || h.podStatus().Condition("Ready").Status != core.ConditionFalse {
		t.Fatalf("pod ready while its sidecar's readiness fails: %+v", h.podStatus())
	}
}

// On delete the container stops first; then the sidecars, the last
// declared first, each once those after it stopped, with what is left of
// the grace period.
func TestWorkerSidecarStopsLast(t *testing.T) {
	pod := sidecarPod("web", core.RestartAlways, sidecar("log"), sidecar("proxy"))
	grace := int64(30)
	pod.Spec.TerminationGracePeriodSeconds = &grace
	h := newWorkerHarness(t, pod)
	h.rt.setTrapTERM("app")
	h.rt.setTrapTERM("log")
	h.sync()
	for _, n := range []string{"log", "proxy", "app"} {
		if h.taskState(n) != core.TaskRunning {
			t.Fatalf("%s %q", n, h.taskState(n))
		}
	}
	h.w.terminate()
	start := h.clk.Now()
	done := make(chan struct{})
	go func() { h.w.sync(); close(done) }()
	// app's grace, and each sidecar waiting for its turn within it.
	waitUntil(t, "the containers to stop in order", func() bool { return h.clk.timersAt(start.Add(30*time.Second)) == 3 })
	h.clk.Advance(10 * time.Second)
	if log := h.rt.signalLog(); !slices.Equal(log, []string{h.id("app") + " terminated"}) {
		t.Fatalf("signals while app shuts down: %q", log)
	}
	h.rt.exit(t, h.id("app"), 0) // done with its SIGTERM, after 10s
	want := []string{h.id("app") + " terminated", h.id("proxy") + " terminated", h.id("log") + " terminated"}
	waitUntil(t, "the sidecars' SIGTERMs", func() bool { return slices.Equal(h.rt.signalLog(), want) })
	// log ignores SIGTERM: it has the 20s left, not a new 30s.
	waitUntil(t, "log's grace", func() bool { return h.clk.timersAt(start.Add(30*time.Second)) == 1 })
	if n := h.clk.timersAt(start.Add(40 * time.Second)); n != 0 {
		t.Fatalf("%d timers at a full grace from log's SIGTERM", n)
	}
	h.clk.Advance(20 * time.Second)
	<-done
	if log := h.rt.signalLog(); !slices.Equal(log, append(want, h.id("log")+" killed")) {
		t.Fatalf("signals %q", log)
	}
	if !h.w.isFinished() {
		t.Fatal("pod not removed")
	}
	if n, _ := h.rt.counts(); n != 0 {
		t.Fatalf("%d containers left", n)
	}
}

// An agent that does not know the pod (adopted, no longer wanted) stops
// its sidecars last too: their labels say they are.
func TestWorkerSidecarStopsLastUnknownPod(t *testing.T) {
	h := newWorkerHarness(t, sidecarPod("web", core.RestartAlways, sidecar("log"), busybox("setup"), sidecar("proxy")))
	h.sync()
	h.rt.exit(t, h.id("setup"), 0)
	h.sync()
	h.w.mu.Lock()
	h.w.pod = nil
	h.w.mu.Unlock()
	h.w.terminate()
	h.sync()
	log := h.rt.signalLog()
	if !slices.Equal(log, []string{h.id("app") + " terminated", h.id("proxy") + " terminated", h.id("log") + " terminated"}) {
		t.Fatalf("signals %q", log)
	}
}

// A Never pod whose container is done completes while its sidecar runs:
// the pod's phase is the container's, and the sidecar is then stopped and
// not restarted.
func TestWorkerSidecarJob(t *testing.T) {
	for _, tt := range []struct {
		policy core.RestartPolicy
		code   int32
		phase  core.PodPhase
	}{{core.RestartNever, 0, core.PodSucceeded}, {core.RestartNever, 1, core.PodFailed}, {core.RestartOnFailure, 0, core.PodSucceeded}} {
		t.Run(string(tt.policy)+"/"+string(tt.phase), func(t *testing.T) {
			h := newWorkerHarness(t, sidecarPod("job", tt.policy, sidecar("proxy")))
			h.sync()
			h.rt.exit(t, h.id("proxy"), 1) // a crash before the job is done: restarted
			h.sync()
			if h.taskState("proxy") != core.TaskRunning || h.podStatus().Phase != core.PodRunning {
				t.Fatalf("proxy %q, phase %s", h.taskState("proxy"), h.podStatus().Phase)
			}
			h.rt.exit(t, h.id("app"), tt.code)
			h.sync()
			if ph := h.podStatus().Phase; ph != tt.phase {
				t.Fatalf("phase %s with the sidecar running, want %s", ph, tt.phase)
			}
			if _, _, sig := h.rt.state(h.id("proxy")); !slices.Equal(sig, []syscall.Signal{syscall.SIGTERM}) {
				t.Fatalf("sidecar signals %v", sig)
			}
			h.clk.Advance(time.Hour)
			h.sync()
			h.sync()
			if state, starts, _ := h.rt.state(h.id("proxy")); state != core.TaskStopped || starts != 2 {
				t.Fatalf("sidecar %q after %d starts: restarted once the job was done", state, starts)
			}
			st := h.podStatus()
			cs := h.initStatus("proxy")
			if st.Phase != tt.phase || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 143 || cs.Ready {
				t.Fatalf("phase %s, sidecar %+v", st.Phase, cs)
			}
			if n := countEvents(h.recorded(), "Killing", "Stopping sidecar proxy"); n != 1 {
				t.Fatalf("%d Killing events", n)
			}
			// A restarted agent reads the finished job back as it was.
			h = restartAgent(t, h)
			h.sync()
			h.sync()
			if _, starts, _ := h.rt.state(h.id("proxy")); starts != 2 {
				t.Fatalf("sidecar restarted by a new agent: %d starts", starts)
			}
			cs = h.initStatus("proxy")
			if st := h.podStatus(); st.Phase != tt.phase || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 143 {
				t.Fatalf("after an agent restart: phase %s, sidecar %+v", st.Phase, cs)
			}
		})
	}
	t.Run("OnFailure/failed", func(t *testing.T) { // the container restarts: not done
		h := newWorkerHarness(t, sidecarPod("job", core.RestartOnFailure, sidecar("proxy")))
		h.sync()
		h.rt.exit(t, h.id("app"), 1)
		h.sync()
		if _, _, sig := h.rt.state(h.id("proxy")); len(sig) != 0 || h.podStatus().Phase != core.PodRunning {
			t.Fatalf("sidecar signalled %v, phase %s", sig, h.podStatus().Phase)
		}
	})
}

// restartAgent is h's pod on a new agent over the same runtime, clock and
// data directory: an agent restart.
func restartAgent(t *testing.T, h *workerHarness) *workerHarness {
	a := newTestAgent(t, h.rt, h.clk, h.a.DataDir)
	if err := a.init(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	events, err := h.rt.Events(a.ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := &workerHarness{t: t, clk: h.clk, rt: h.rt, a: a, pod: h.pod, events: events}
	n.w = a.newWorker(h.pod.Metadata.UID, h.pod.Metadata.Namespace, h.pod.Metadata.Name)
	a.workers[h.pod.Metadata.UID] = n.w
	h.pod.Spec.EachContainer(func(c *core.Container, _ bool) { a.byContainer[containerID(h.pod, c.Name)] = h.pod.Metadata.UID })
	n.w.setPod(h.pod)
	return n
}

// A restarted agent adopts a running sidecar without restarting it, keeps
// it running afterwards, and does not rerun what the init sequence passed.
func TestWorkerSidecarAdoption(t *testing.T) {
	restart := func(h *workerHarness) *workerHarness { return restartAgent(t, h) }
	t.Run("Initialized", func(t *testing.T) {
		h := newWorkerHarness(t, sidecarPod("web", core.RestartAlways, sidecar("proxy"), busybox("setup")))
		h.sync()
		h.rt.exit(t, h.id("setup"), 0)
		h.sync()
		h.rt.exit(t, h.id("proxy"), 1)
		h.sync() // proxy restarted once: restart count 1 on its labels
		h = restart(h)
		h.sync()
		if h.starts("proxy") != 2 || h.starts("app") != 1 || h.starts("setup") != 1 {
			t.Fatalf("starts after adoption: proxy %d, app %d, setup %d", h.starts("proxy"), h.starts("app"), h.starts("setup"))
		}
		if _, _, sig := h.rt.state(h.id("proxy")); len(sig) != 0 {
			t.Fatalf("adopted sidecar signalled: %v", sig)
		}
		cs := h.initStatus("proxy")
		if cs.State.Running == nil || cs.RestartCount != 1 || cs.Started == nil || !*cs.Started || !cs.Ready {
			t.Fatalf("adopted sidecar: %+v", cs)
		}
		if st := h.podStatus(); st.Phase != core.PodRunning || st.Condition("Ready").Status != core.ConditionTrue {
			t.Fatalf("adopted pod: %+v", st)
		}
		h.rt.exit(t, h.id("proxy"), 1) // kept running by the new agent
		h.sync()
		h.clk.Advance(time.Second)
		h.sync()
		if cs := h.initStatus("proxy"); cs.State.Running == nil || cs.RestartCount != 2 {
			t.Fatalf("adopted sidecar after an exit: %+v", cs)
		}
	})
	t.Run("MidWay", func(t *testing.T) {
		h := newWorkerHarness(t, sidecarPod("web", core.RestartAlways, sidecar("proxy"), busybox("setup")))
		h.sync() // proxy started, setup runs
		h = restart(h)
		h.sync()
		if h.starts("proxy") != 1 || h.starts("setup") != 1 || h.taskState("app") != "absent" {
			t.Fatalf("proxy %d starts, setup %d, app %q", h.starts("proxy"), h.starts("setup"), h.taskState("app"))
		}
		h.rt.exit(t, h.id("setup"), 0)
		h.sync()
		if h.taskState("app") != core.TaskRunning || h.starts("proxy") != 1 {
			t.Fatalf("app %q, proxy %d starts", h.taskState("app"), h.starts("proxy"))
		}
	})
}
