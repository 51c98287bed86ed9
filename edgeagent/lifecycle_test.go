package edgeagent

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

func (h *workerHarness) initStatus(container string) core.ContainerStatus {
	h.t.Helper()
	for _, cs := range h.podStatus().InitContainerStatuses {
		if cs.Name == container {
			return cs
		}
	}
	h.t.Fatalf("no init status of container %s", container)
	return core.ContainerStatus{}
}

func initPod(name string, policy core.RestartPolicy, inits ...string) *core.Pod {
	p := testPod(name, busybox("app"))
	for _, n := range inits {
		p.Spec.InitContainers = append(p.Spec.InitContainers, busybox(n))
	}
	p.Spec.RestartPolicy = policy
	core.SetDefaults(p)
	return p
}

// Init containers run one at a time, in order, each to completion, and
// the containers start only after the last; the pod is Pending and not
// Initialized meanwhile.
func TestWorkerInitContainersInOrder(t *testing.T) {
	h := newWorkerHarness(t, initPod("web", core.RestartAlways, "first", "second"))
	state := func(name string) core.TaskState { s, _, _ := h.rt.state(h.id(name)); return s }
	h.sync()
	if state("first") != core.TaskRunning || state("second") != "absent" || state("app") != "absent" {
		t.Fatalf("first pass: first %q, second %q, app %q", state("first"), state("second"), state("app"))
	}
	st := h.podStatus()
	if st.Phase != core.PodPending || st.Condition("Initialized").Status != core.ConditionFalse ||
		!strings.Contains(st.Condition("Initialized").Message, "[first second]") {
		t.Fatalf("while initialising: %+v", st)
	}
	if waitingReason(h.status("app")) != "PodInitializing" || h.initStatus("first").State.Running == nil {
		t.Fatalf("statuses while initialising: %+v", st)
	}
	h.clk.Advance(time.Hour) // however long it runs, nothing else starts
	h.sync()
	if state("second") != "absent" || state("app") != "absent" {
		t.Fatal("started something while the first init container runs")
	}
	h.rt.exit(t, h.id("first"), 0)
	h.sync()
	if state("second") != core.TaskRunning || state("app") != "absent" {
		t.Fatalf("after the first completed: second %q, app %q", state("second"), state("app"))
	}
	if cs := h.initStatus("first"); cs.State.Terminated == nil || cs.State.Terminated.Reason != "Completed" || !cs.Ready {
		t.Fatalf("first after completing: %+v", cs)
	}
	h.rt.exit(t, h.id("second"), 0)
	h.sync()
	if state("app") != core.TaskRunning {
		t.Fatalf("app %q after the init containers completed", state("app"))
	}
	st = h.podStatus()
	if st.Phase != core.PodRunning || st.Condition("Initialized").Status != core.ConditionTrue || st.Condition("Ready").Status != core.ConditionTrue {
		t.Fatalf("initialised pod: %+v", st)
	}
	for _, name := range []string{"first", "second"} {
		if _, starts, _ := h.rt.state(h.id(name)); starts != 1 {
			t.Fatalf("%s started %d times", name, starts)
		}
	}
	if n := countEvents(h.recorded(), "Completed", "Init container"); n != 2 {
		t.Fatalf("%d Completed events", n)
	}
	// A completed init container is not restarted by an Always pod.
	h.clk.Advance(time.Hour)
	h.sync()
	if _, starts, _ := h.rt.state(h.id("first")); starts != 1 {
		t.Fatalf("a completed init container restarted: %d starts", starts)
	}
}

// A restarted agent adopting an initialised pod reads back how its init
// containers ended and runs none of them again; one restarted mid-way
// does not rerun those that completed.
func TestWorkerInitAdoption(t *testing.T) {
	restart := func(h *workerHarness) *podWorker {
		a := newTestAgent(t, h.rt, h.clk, h.a.DataDir)
		if err := a.init(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		w := a.newWorker(h.pod.Metadata.UID, h.pod.Metadata.Namespace, h.pod.Metadata.Name)
		w.setPod(h.pod)
		return w
	}
	t.Run("Initialized", func(t *testing.T) {
		h := newWorkerHarness(t, initPod("web", core.RestartAlways, "first", "second"))
		h.sync()
		h.rt.exit(t, h.id("first"), 0)
		h.sync()
		h.rt.exit(t, h.id("second"), 0)
		h.sync()
		// The first's container went (removed by hand): still not rerun.
		h.rt.DeleteTask(t.Context(), h.id("first"))
		h.rt.RemoveContainer(t.Context(), h.id("first"))
		w := restart(h)
		w.sync()
		r, _ := w.report()
		if _, starts, _ := h.rt.state(h.id("second")); starts != 1 {
			t.Fatalf("second init container started %d times", starts)
		}
		if state, _, _ := h.rt.state(h.id("first")); state != "absent" {
			t.Fatalf("first init container recreated: %q", state)
		}
		if _, starts, _ := h.rt.state(h.id("app")); starts != 1 {
			t.Fatalf("app started %d times", starts)
		}
		if r.Status.Phase != core.PodRunning || r.Status.Condition("Initialized").Status != core.ConditionTrue || len(r.Status.InitContainerStatuses) != 2 {
			t.Fatalf("adopted status %+v", r.Status)
		}
		for _, cs := range r.Status.InitContainerStatuses {
			if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
				t.Fatalf("adopted init status %+v", cs)
			}
		}
	})
	t.Run("MidWay", func(t *testing.T) {
		h := newWorkerHarness(t, initPod("web", core.RestartAlways, "first", "second"))
		h.sync()
		h.rt.exit(t, h.id("first"), 0)
		h.sync() // second runs
		w := restart(h)
		w.sync()
		if _, starts, _ := h.rt.state(h.id("first")); starts != 1 {
			t.Fatalf("first init container started %d times", starts)
		}
		if state, starts, _ := h.rt.state(h.id("second")); state != core.TaskRunning || starts != 1 {
			t.Fatalf("second: %q after %d starts", state, starts)
		}
		if state, _, _ := h.rt.state(h.id("app")); state != "absent" {
			t.Fatalf("app %q before the init containers completed", state)
		}
	})
}

// A failing init container restarts with the containers' back-off under
// Always and OnFailure, and fails the pod under Never; the containers never
// start.
func TestWorkerInitContainerFails(t *testing.T) {
	for _, policy := range []core.RestartPolicy{core.RestartAlways, core.RestartOnFailure} {
		t.Run(string(policy), func(t *testing.T) {
			h := newWorkerHarness(t, initPod("web", policy, "setup"))
			id := h.id("setup")
			h.sync()
			h.rt.exit(t, id, 1)
			if next := h.sync(); next != startCheck || h.initStatus("setup").RestartCount != 1 {
				t.Fatalf("first failure not restarted at once: next %s, %+v", next, h.initStatus("setup"))
			}
			h.rt.exit(t, id, 1)
			if next := h.sync(); next != time.Second {
				t.Fatalf("back-off %s after the second failure, want 1s", next)
			}
			cs := h.initStatus("setup")
			if waitingReason(cs) != "CrashLoopBackOff" || cs.LastState.Terminated == nil || cs.LastState.Terminated.ExitCode != 1 {
				t.Fatalf("init status %+v", cs)
			}
			if h.podStatus().Phase != core.PodPending {
				t.Fatalf("phase %s", h.podStatus().Phase)
			}
			h.clk.Advance(time.Second)
			h.sync()
			h.rt.exit(t, id, 0)
			h.sync()
			if state, _, _ := h.rt.state(h.id("app")); state != core.TaskRunning {
				t.Fatalf("app %q after the init container finally completed", state)
			}
		})
	}
	t.Run("Never", func(t *testing.T) {
		h := newWorkerHarness(t, initPod("job", core.RestartNever, "setup", "more"))
		h.sync()
		h.rt.exit(t, h.id("setup"), 2)
		h.sync()
		h.clk.Advance(time.Hour)
		h.sync()
		st := h.podStatus()
		if st.Phase != core.PodFailed {
			t.Fatalf("phase %s, want Failed", st.Phase)
		}
		if cs := h.initStatus("setup"); cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 2 || cs.RestartCount != 0 {
			t.Fatalf("init status %+v", cs)
		}
		for _, name := range []string{"more", "app"} {
			if state, _, _ := h.rt.state(h.id(name)); state != "absent" {
				t.Fatalf("%s created after a failed init container", name)
			}
		}
		if _, starts, _ := h.rt.state(h.id("setup")); starts != 1 {
			t.Fatalf("setup started %d times under Never", starts)
		}
	})
}

// Until its startup probe succeeds a container runs no liveness or
// readiness probe and is neither started nor ready; then they run.
func TestWorkerStartupProbeGates(t *testing.T) {
	c := busybox("app")
	c.StartupProbe = &core.Probe{Exec: &core.ExecAction{Command: []string{"started"}}, PeriodSeconds: 5, FailureThreshold: 10}
	c.LivenessProbe = &core.Probe{Exec: &core.ExecAction{Command: []string{"alive"}}, PeriodSeconds: 10, FailureThreshold: 1}
	h := newWorkerHarness(t, testPod("web", c))
	var mu sync.Mutex
	calls := map[string]int{}
	up := false
	h.rt.exec = func(_ string, cmd []string) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		calls[cmd[0]]++
		if cmd[0] == "started" && !up {
			return 1, nil
		}
		if cmd[0] == "alive" {
			return 1, nil // would kill it at once if it ran
		}
		return 0, nil
	}
	count := func(name string) int { mu.Lock(); defer mu.Unlock(); return calls[name] }
	h.sync()
	for range 5 {
		h.clk.Advance(5 * time.Second)
		h.sync()
	}
	cs := h.status("app")
	if count("started") != 6 || count("alive") != 0 {
		t.Fatalf("%d startup and %d liveness probes before it started", count("started"), count("alive"))
	}
	if cs.Started == nil || *cs.Started || cs.Ready || cs.State.Running == nil {
		t.Fatalf("status before the startup probe succeeded: %+v", cs)
	}
	mu.Lock()
	up = true
	mu.Unlock()
	h.clk.Advance(5 * time.Second)
	h.sync()
	if cs := h.status("app"); cs.Started == nil || !*cs.Started {
		t.Fatalf("not started after its startup probe succeeded: %+v", cs)
	}
	if count("alive") != 1 {
		t.Fatalf("%d liveness probes once started", count("alive"))
	}
	if _, _, sig := h.rt.state(h.id("app")); !slices.Equal(sig, []syscall.Signal{syscall.SIGKILL}) {
		t.Fatalf("signals %v: the failing liveness probe runs once started", sig)
	}
}

// failureThreshold startup probe failures kill the container, which
// restarts per policy, and its next start waits for the probe again.
func TestWorkerStartupProbeKills(t *testing.T) {
	c := busybox("app")
	c.StartupProbe = &core.Probe{TCPSocket: &core.TCPSocketAction{Port: core.IntOrInt(1)}, PeriodSeconds: 10, FailureThreshold: 3, TimeoutSeconds: 1}
	c.StartupProbe.Exec, c.StartupProbe.TCPSocket = &core.ExecAction{Command: []string{"started"}}, nil
	h := newWorkerHarness(t, testPod("web", c))
	h.rt.exec = func(string, []string) (int, error) { return 1, nil }
	id := h.id("app")
	h.sync() // probe 1
	h.clk.Advance(10 * time.Second)
	h.sync() // probe 2
	if _, _, sig := h.rt.state(id); len(sig) != 0 {
		t.Fatalf("killed after 2 failures: %v", sig)
	}
	h.clk.Advance(10 * time.Second)
	h.sync() // probe 3
	if _, _, sig := h.rt.state(id); !slices.Equal(sig, []syscall.Signal{syscall.SIGKILL}) {
		t.Fatalf("signals %v after 3 failures", sig)
	}
	h.sync()
	cs := h.status("app")
	if cs.RestartCount != 1 || cs.State.Running == nil || cs.Started == nil || *cs.Started {
		t.Fatalf("after the kill: %+v", cs)
	}
	if n := countEvents(h.recorded(), "Unhealthy", "Startup probe failed 3 times"); n != 1 {
		t.Fatalf("%d Unhealthy events", n)
	}
}

// postStart runs right after the start; until it is done the container is
// not ready and the next container is not created. A failing hook kills
// the container, which restarts, with FailedPostStartHook in its last
// state and an event.
func TestWorkerPostStart(t *testing.T) {
	app := busybox("app")
	app.Lifecycle = &core.Lifecycle{PostStart: &core.LifecycleHandler{Exec: &core.ExecAction{Command: []string{"setup"}}}}
	h := newWorkerHarness(t, testPod("web", app, busybox("side")))
	release := make(chan int)
	var hooks sync.WaitGroup
	hooks.Add(1)
	h.rt.execCtx = func(ctx context.Context, id string, cmd []string) (int, error) {
		if id != h.id("app") || cmd[0] != "setup" {
			return 0, fmt.Errorf("exec %v in %s", cmd, id)
		}
		hooks.Done()
		select {
		case code := <-release:
			return code, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	h.sync()
	hooks.Wait()
	h.sync()
	if state, _, _ := h.rt.state(h.id("side")); state != "absent" {
		t.Fatalf("side %q while app's postStart runs", state)
	}
	if cs := h.status("app"); cs.Ready || cs.State.Running == nil {
		t.Fatalf("app while its hook runs: %+v", cs)
	}
	release <- 0
	waitUntil(t, "side to start after the hook", func() bool {
		h.sync()
		state, _, _ := h.rt.state(h.id("side"))
		return state == core.TaskRunning
	})
	if !h.status("app").Ready {
		t.Fatal("app not ready after its hook succeeded")
	}
	if _, _, sig := h.rt.state(h.id("app")); len(sig) != 0 {
		t.Fatalf("app signalled after a successful hook: %v", sig)
	}

	// A failing hook on the next start.
	hooks.Add(1)
	h.rt.exit(t, h.id("app"), 0)
	h.sync() // restarted at once; the hook runs
	hooks.Wait()
	release <- 7
	waitUntil(t, "the failed hook to kill app", func() bool {
		h.sync()
		_, _, sig := h.rt.state(h.id("app"))
		return slices.Equal(sig, []syscall.Signal{syscall.SIGKILL})
	})
	hooks.Add(1) // the hook of the restart after the kill
	h.clk.Advance(time.Second)
	h.sync()
	cs := h.status("app")
	last := cs.LastState.Terminated
	if cs.RestartCount != 2 || last == nil || last.ExitCode != 137 || !strings.Contains(last.Message, "FailedPostStartHook") ||
		!strings.Contains(last.Message, "exited with 7") {
		t.Fatalf("after the failed hook: %+v (last %+v)", cs, last)
	}
	if n := countEvents(h.recorded(), "FailedPostStartHook", "exited with 7"); n != 1 {
		t.Fatalf("%d FailedPostStartHook events", n)
	}
	hooks.Wait()
	h.w.terminate() // ends the hook still running
	done := make(chan struct{})
	go func() { h.w.sync(); close(done) }()
	waitUntil(t, "the pod to go", func() bool { h.clk.Advance(time.Second); return h.w.isFinished() })
	<-done
}

// preStop runs before SIGTERM; one that outlasts the grace period is cut
// off at its end, and the container then gets the kubelet's 2s between
// SIGTERM and SIGKILL.
func TestWorkerPreStop(t *testing.T) {
	t.Run("BeforeSIGTERM", func(t *testing.T) {
		app := busybox("app")
		app.Lifecycle = &core.Lifecycle{PreStop: &core.LifecycleHandler{Exec: &core.ExecAction{Command: []string{"drain"}}}}
		h := newWorkerHarness(t, testPod("web", app))
		var sigsAtHook []syscall.Signal
		ran := 0
		h.rt.exec = func(id string, cmd []string) (int, error) {
			ran++
			_, _, sigsAtHook = h.rt.state(id)
			return 0, nil
		}
		h.sync()
		h.w.terminate()
		h.sync()
		_, _, sig := h.rt.state(h.id("app"))
		if ran != 1 || len(sigsAtHook) != 0 || !slices.Equal(sig, []syscall.Signal{syscall.SIGTERM}) {
			t.Fatalf("hook ran %d times, with signals %v before it; signals %v", ran, sigsAtHook, sig)
		}
		if !h.w.isFinished() {
			t.Fatal("pod not removed")
		}
	})
	t.Run("BoundedByGrace", func(t *testing.T) {
		app := busybox("app")
		app.Lifecycle = &core.Lifecycle{PreStop: &core.LifecycleHandler{Exec: &core.ExecAction{Command: []string{"hang"}}}}
		pod := testPod("web", app)
		grace := int64(10)
		pod.Spec.TerminationGracePeriodSeconds = &grace
		h := newWorkerHarness(t, pod)
		h.rt.setTrapTERM("app")
		hookEnded := make(chan error, 1)
		h.rt.execCtx = func(ctx context.Context, _ string, _ []string) (int, error) {
			<-ctx.Done()
			hookEnded <- ctx.Err()
			return 0, ctx.Err()
		}
		h.sync()
		h.w.terminate()
		start := h.clk.Now()
		done := make(chan struct{})
		go func() { h.w.sync(); close(done) }()
		waitUntil(t, "the hook's deadline", func() bool { return h.clk.timersAt(start.Add(10*time.Second)) == 1 })
		h.clk.Advance(10*time.Second - time.Millisecond)
		if _, _, sig := h.rt.state(h.id("app")); len(sig) != 0 {
			t.Fatalf("signalled during preStop: %v", sig)
		}
		h.clk.Advance(time.Millisecond)
		if err := <-hookEnded; err == nil {
			t.Fatal("hook not cancelled at the end of the grace period")
		}
		end := h.clk.Now().Add(preStopMinimum)
		waitUntil(t, "the SIGTERM wait", func() bool { return h.clk.timersAt(end) == 1 })
		if _, _, sig := h.rt.state(h.id("app")); !slices.Equal(sig, []syscall.Signal{syscall.SIGTERM}) {
			t.Fatalf("signals %v after the hook", sig)
		}
		h.clk.Advance(preStopMinimum)
		<-done
		if _, _, sig := h.rt.state(h.id("app")); !slices.Equal(sig, []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}) {
			t.Fatalf("signals %v", sig)
		}
		if n := countEvents(h.recorded(), "FailedPreStopHook", "grace period"); n != 1 {
			t.Fatalf("%d FailedPreStopHook events", n)
		}
	})
	t.Run("Sleep", func(t *testing.T) {
		app := busybox("app")
		app.Lifecycle = &core.Lifecycle{PreStop: &core.LifecycleHandler{Sleep: &core.SleepAction{Seconds: 5}}}
		h := newWorkerHarness(t, testPod("web", app))
		h.sync()
		h.w.terminate()
		start := h.clk.Now()
		done := make(chan struct{})
		go func() { h.w.sync(); close(done) }()
		waitUntil(t, "the sleep", func() bool { return h.clk.timersAt(start.Add(5*time.Second)) == 1 })
		if _, _, sig := h.rt.state(h.id("app")); len(sig) != 0 {
			t.Fatalf("signalled during the sleep: %v", sig)
		}
		h.clk.Advance(5 * time.Second)
		<-done
		if _, _, sig := h.rt.state(h.id("app")); !slices.Equal(sig, []syscall.Signal{syscall.SIGTERM}) {
			t.Fatalf("signals %v", sig)
		}
	})
}

// The container's termination message file becomes its terminated state's
// message (at most 4096 bytes), emptied at each start; with
// FallbackToLogsOnError an empty file on failure gives the log's tail.
func TestWorkerTerminationMessage(t *testing.T) {
	t.Run("File", func(t *testing.T) {
		pod := testPod("job", busybox("app"))
		pod.Spec.RestartPolicy = core.RestartOnFailure
		h := newWorkerHarness(t, pod)
		h.sync()
		path := h.w.terminationPath("app")
		if err := os.WriteFile(path, []byte("disk full"), 0o666); err != nil {
			t.Fatal(err)
		}
		h.rt.exit(t, h.id("app"), 3)
		h.sync() // restarts at once, emptying the file
		if last := h.status("app").LastState.Terminated; last == nil || last.Message != "disk full" || last.ExitCode != 3 {
			t.Fatalf("last state %+v", last)
		}
		if b, err := os.ReadFile(path); err != nil || len(b) != 0 {
			t.Fatalf("file after the restart: %q %v", b, err)
		}
		if err := os.WriteFile(path, []byte(strings.Repeat("x", 5000)), 0o666); err != nil {
			t.Fatal(err)
		}
		h.rt.exit(t, h.id("app"), 0)
		h.sync()
		if term := h.status("app").State.Terminated; term == nil || len(term.Message) != 4096 {
			t.Fatalf("terminated %+v", term)
		}
	})
	t.Run("PodBudget", func(t *testing.T) { // 12 KiB for all of a pod's containers
		pod := testPod("job", busybox("app"), busybox("b"), busybox("c"), busybox("d"))
		pod.Spec.RestartPolicy = core.RestartNever
		h := newWorkerHarness(t, pod)
		h.sync()
		if err := os.WriteFile(h.w.terminationPath("app"), []byte(strings.Repeat("x", 5000)), 0o666); err != nil {
			t.Fatal(err)
		}
		h.rt.exit(t, h.id("app"), 1)
		h.sync()
		if term := h.status("app").State.Terminated; term == nil || len(term.Message) != 3072 {
			t.Fatalf("terminated %+v", term)
		}
	})
	t.Run("FallbackToLogsOnError", func(t *testing.T) {
		c := busybox("app")
		c.TerminationMessagePolicy = core.TerminationMessageFallback
		pod := testPod("job", c)
		pod.Spec.RestartPolicy = core.RestartNever
		h := newWorkerHarness(t, pod)
		h.sync()
		f, err := os.OpenFile(h.w.logPath("app"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			fmt.Fprintf(f, "line %d\n", i)
		}
		f.Close()
		h.rt.exit(t, h.id("app"), 1)
		h.sync()
		term := h.status("app").State.Terminated
		if term == nil || !strings.HasPrefix(term.Message, "line 20\n") || !strings.HasSuffix(term.Message, "line 99") ||
			strings.Count(term.Message, "\n") != 79 {
			t.Fatalf("terminated %+v", term)
		}
	})
}
