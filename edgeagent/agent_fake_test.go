package edgeagent

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// The agent as a whole on a fake runtime: its loop, the runtime's event
// stream, adoption after a restart and removal of pods no longer wanted.

func openTestAgent(t *testing.T, rt *fakeRuntime, clk *fakeClock, dataDir string) (*Agent, *fakeReporter) {
	t.Helper()
	a := newTestAgent(t, rt, clk, dataDir)
	rep := &fakeReporter{}
	a.Reporter = rep
	if err := a.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, rep
}

// containerStatus returns the reported status of a pod's container, if
// the pod is reported.
func containerStatus(a *Agent, uid, container string) (core.ContainerStatus, bool) {
	for _, p := range a.Snapshot().Pods {
		if p.UID != uid {
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == container {
				return cs, true
			}
		}
	}
	return core.ContainerStatus{}, false
}

func waitRunning(t *testing.T, a *Agent, pod *core.Pod, restarts int32) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("container running with restart count %d", restarts), func() bool {
		cs, ok := containerStatus(a, pod.Metadata.UID, "app")
		return ok && cs.State.Running != nil && cs.RestartCount == restarts
	})
}

func desired(hash string, pods ...*core.Pod) *core.DesiredState {
	return &core.DesiredState{Node: "pi", Hash: hash, Pods: pods}
}

// A restarted agent adopts the containers it left running: no second
// container, no extra start, the restart count carries on, and exits
// still wake the adopted pod. A pod no longer wanted is then removed.
func TestAgentAdoptsContainers(t *testing.T) {
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	rt.addImage("busybox")
	dir := t.TempDir()
	pod := testPod("web", busybox("app"))
	id := containerID(pod, "app")
	goroutines := runtime.NumGoroutine()

	a1, _ := openTestAgent(t, rt, clk, dir)
	a1.SetDesired(desired("h1", pod))
	waitRunning(t, a1, pod, 0)
	rt.exit(t, id, 1) // the exit event wakes the worker: Resync is an hour
	waitRunning(t, a1, pod, 1)
	if err := a1.Close(); err != nil {
		t.Fatal(err)
	}
	if state, starts, _ := rt.state(id); state != core.TaskRunning || starts != 2 {
		t.Fatalf("after the agent stopped: task %q, %d starts", state, starts)
	}

	a2, rep := openTestAgent(t, rt, clk, dir) // loads the saved desired state
	waitRunning(t, a2, pod, 1)
	if n, created := rt.counts(); n != 1 || created != 1 {
		t.Fatalf("%d containers, %d created: the agent duplicated its container", n, created)
	}
	if _, starts, _ := rt.state(id); starts != 2 {
		t.Fatalf("%d starts: the adopted container was started again", starts)
	}
	rt.exit(t, id, 1)
	waitRunning(t, a2, pod, 2)

	a2.SetDesired(desired("h2"))
	waitUntil(t, "the pod removed", func() bool {
		n, _ := rt.counts()
		return n == 0 && len(a2.Snapshot().Pods) == 0
	})
	if _, _, sig := rt.state(id); !slices.Equal(sig, []syscall.Signal{syscall.SIGTERM}) {
		t.Fatalf("signals %v, want SIGTERM", sig)
	}
	waitUntil(t, "events at the master", func() bool {
		var reasons []string
		for _, e := range rep.sent() {
			reasons = append(reasons, e.Reason+": "+e.Message)
		}
		all := strings.Join(reasons, "\n")
		return strings.Contains(all, "Started: Restarted container app (restart 2)") &&
			strings.Contains(all, "Error: Container app exited with code 1") &&
			strings.Contains(all, "Killing: Stopping the pod's containers (grace period 30s)")
	})
	if err := a2.Close(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the agents' goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines })
}

// Containers found without a known desired state are left alone (the
// master may still want them), then removed once the master does not.
func TestAgentKeepsAdoptedUntilDesiredKnown(t *testing.T) {
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	rt.addImage("busybox")
	pod := testPod("web", busybox("app"))
	a1, _ := openTestAgent(t, rt, clk, t.TempDir())
	a1.SetDesired(desired("h1", pod))
	waitRunning(t, a1, pod, 0)
	a1.Close()

	a2, _ := openTestAgent(t, rt, clk, t.TempDir()) // no saved desired state
	waitUntil(t, "the container adopted", func() bool {
		a2.mu.Lock()
		defer a2.mu.Unlock()
		return a2.workers[pod.Metadata.UID] != nil
	})
	if len(a2.Snapshot().Pods) != 0 {
		t.Fatal("a pod reported before the master said it wants it")
	}
	if state, _, sig := rt.state(containerID(pod, "app")); state != core.TaskRunning || len(sig) != 0 {
		t.Fatalf("adopted container touched: %q, signals %v", state, sig)
	}
	a2.SetDesired(desired("h2"))
	waitUntil(t, "the orphan removed", func() bool { n, _ := rt.counts(); return n == 0 })
}

// A pod replaced by one of the same name (a new UID) starts only once the
// old one is gone: they would share log paths and, with hostNetwork, ports.
func TestAgentReplacesPodOfSameName(t *testing.T) {
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	rt.addImage("busybox")
	old := testPod("web", busybox("app"))
	a, _ := openTestAgent(t, rt, clk, t.TempDir())
	a.SetDesired(desired("h1", old))
	waitRunning(t, a, old, 0)
	rt.setTrapTERM("app") // the old pod takes its full grace period to go

	repl := testPod("web", busybox("app"))
	repl.Metadata.UID = "web-replacement-uid"
	a.SetDesired(desired("h2", repl))
	graceEnd := clk.Now().Add(30 * time.Second)
	waitUntil(t, "the old pod's grace period", func() bool { return clk.timersAt(graceEnd) == 1 })
	if state, _, _ := rt.state(containerID(repl, "app")); state != "absent" {
		t.Fatalf("replacement created while the old pod runs (%q)", state)
	}
	clk.Advance(30 * time.Second)
	waitRunning(t, a, repl, 0)
	if state, _, _ := rt.state(containerID(old, "app")); state != "absent" {
		t.Fatalf("old container left: %q", state)
	}
}

// The agent subscribes to runtime events before it lists the containers a
// previous agent left: an exit after a worker's first look and before the
// subscription would go unseen until the next resync (an hour here), and
// the adopted pod stay down meanwhile.
func TestAgentSubscribesBeforeAdopting(t *testing.T) {
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	openTestAgent(t, rt, clk, t.TempDir())
	calls := func() []string {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		return slices.Clone(rt.calls)
	}
	waitUntil(t, "the agent to subscribe and list containers", func() bool {
		c := calls()
		return slices.Contains(c, "Events") && slices.Contains(c, "Containers")
	})
	if c := calls(); slices.Index(c, "Containers") < slices.Index(c, "Events") {
		t.Fatalf("runtime calls %v: containers listed before subscribing to events", c)
	}
}

// When the runtime's event stream breaks (containerd restarted), the agent
// subscribes again, and exits wake workers as before.
func TestAgentResubscribes(t *testing.T) {
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	rt.addImage("busybox")
	pod := testPod("web", busybox("app"))
	a, _ := openTestAgent(t, rt, clk, t.TempDir())
	a.SetDesired(desired("h1", pod))
	waitRunning(t, a, pod, 0)
	rt.breakStreams()
	waitUntil(t, "a new subscription", func() bool { return rt.subscriptions() == 2 })
	rt.exit(t, containerID(pod, "app"), 1)
	waitRunning(t, a, pod, 1)
}

// An agent stopped while a pod waits out its grace period stops at once,
// without killing the container early; the next agent finishes the job.
func TestAgentCloseDuringGracePeriod(t *testing.T) {
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	rt.addImage("busybox")
	rt.setTrapTERM("app")
	dir := t.TempDir()
	pod := testPod("web", busybox("app"))
	id := containerID(pod, "app")
	a1, _ := openTestAgent(t, rt, clk, dir)
	a1.SetDesired(desired("h1", pod))
	waitRunning(t, a1, pod, 0)
	a1.SetDesired(desired("h2"))
	graceEnd := clk.Now().Add(30 * time.Second)
	waitUntil(t, "the grace period", func() bool { return clk.timersAt(graceEnd) == 1 })
	closed := make(chan error)
	go func() { closed <- a1.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for the grace period")
	}
	if state, _, sig := rt.state(id); state != core.TaskRunning || !slices.Equal(sig, []syscall.Signal{syscall.SIGTERM}) {
		t.Fatalf("after Close: task %q, signals %v", state, sig)
	}

	openTestAgent(t, rt, clk, dir)
	graceEnd = clk.Now().Add(30 * time.Second)
	waitUntil(t, "the grace period again", func() bool { return clk.timersAt(graceEnd) == 1 })
	clk.Advance(30 * time.Second)
	waitUntil(t, "the container removed", func() bool { n, _ := rt.counts(); return n == 0 })
	if _, _, sig := rt.state(id); !slices.Equal(sig, []syscall.Signal{syscall.SIGTERM, syscall.SIGTERM, syscall.SIGKILL}) {
		t.Fatalf("signals %v", sig)
	}
}

// An agent killed after attaching a pod to its network but before it
// recorded the address: the next one releases the attachment and attaches
// again instead of failing forever. A pod first seen by a running agent is
// attached without a release first (nothing to release on its start path).
func TestAgentReattachesPodKilledMidStart(t *testing.T) {
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	rt.addImage("busybox")
	dir := t.TempDir()
	net := &fakeNetwork{}
	pod := testPod("web", busybox("app"))
	pod.Spec.HostNetwork = false
	id := containerID(pod, "app")

	a1 := newTestAgent(t, rt, clk, dir)
	a1.Network = net
	a1.Reporter = &fakeReporter{}
	if err := a1.Open(); err != nil {
		t.Fatal(err)
	}
	a1.SetDesired(desired("h1", pod))
	waitRunning(t, a1, pod, 0)
	if n := net.releases(); n != 0 {
		t.Fatalf("%d network releases on a new pod's start path", n)
	}
	a1.Close()
	// As if a1 had died before recording the pod's address on its container.
	rt.mu.Lock()
	delete(rt.ctrs[id].info.Labels, labelPodIP)
	rt.mu.Unlock()

	a2 := newTestAgent(t, rt, clk, dir)
	a2.Network = net
	a2.Reporter = &fakeReporter{}
	if err := a2.Open(); err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	waitUntil(t, "the pod running with an address", func() bool {
		for _, p := range a2.Snapshot().Pods {
			if p.UID == pod.Metadata.UID && p.Status.PodIP != "" && p.Status.Phase == core.PodRunning {
				return true
			}
		}
		return false
	})
	if n := net.releases(); n != 1 {
		t.Fatalf("%d network releases, want 1 (the inherited attachment)", n)
	}
}

// The node's image list is reused between reports, but an image the node
// gains (imported by hand, then asked for by a rollout's prefetch) shows in
// the next report at once: a rollout waits for it before stopping pods.
func TestAgentReportsNewImages(t *testing.T) {
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	rt.addImage("busybox")
	a, rep := openTestAgent(t, rt, clk, t.TempDir())
	has := func(r *core.NodeReport, ref string) bool {
		for _, img := range r.Status.Images {
			for _, n := range img.Names {
				if n == core.NormalizeImage(ref) {
					return true
				}
			}
		}
		return false
	}
	if r := a.Snapshot(); !has(r, "busybox") {
		t.Fatalf("images %+v", r.Status.Images)
	}
	rt.addImage("demo:v2") // imported by hand: not in the cached list yet
	if r := a.Snapshot(); has(r, "demo:v2") {
		t.Fatal("the list was not cached (a runtime listing for every report)")
	}
	a.SetDesired(&core.DesiredState{Node: "pi", Hash: "h1", Pods: []*core.Pod{}, Prefetch: []string{"demo:v2"}})
	waitUntil(t, "a report with the prefetched image", func() bool {
		for _, r := range rep.sentReports() {
			if has(r, "demo:v2") {
				return true
			}
		}
		return false
	})
}

// A restarted agent keeps a pod's address when the container listed first
// never recorded it (it had not started): re-attaching the pod would give
// its running containers a new address and cut their connections.
func TestAgentAdoptKeepsAddressOfAnyContainer(t *testing.T) {
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	rt.addImage("busybox")
	dir := t.TempDir()
	net := &fakeNetwork{}
	pod := testPod("web", busybox("app"), busybox("a-side"))
	pod.Spec.HostNetwork = false
	a1 := newTestAgent(t, rt, clk, dir)
	a1.Network, a1.Reporter = net, &fakeReporter{}
	if err := a1.Open(); err != nil {
		t.Fatal(err)
	}
	a1.SetDesired(desired("h1", pod))
	var ip string
	waitUntil(t, "the pod running", func() bool {
		for _, p := range a1.Snapshot().Pods {
			if p.Status.Phase == core.PodRunning && len(p.Status.ContainerStatuses) == 2 &&
				p.Status.ContainerStatuses[0].State.Running != nil && p.Status.ContainerStatuses[1].State.Running != nil {
				ip = p.Status.PodIP
				return ip != ""
			}
		}
		return false
	})
	a1.Close()
	rt.mu.Lock()
	delete(rt.ctrs[containerID(pod, "a-side")].info.Labels, labelPodIP) // as if it never started
	rt.mu.Unlock()

	a2 := newTestAgent(t, rt, clk, dir)
	a2.Network, a2.Reporter = net, &fakeReporter{}
	if err := a2.Open(); err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	waitUntil(t, "the adopted pod reported", func() bool {
		for _, p := range a2.Snapshot().Pods {
			if p.Status.PodIP != "" {
				return true
			}
		}
		return false
	})
	if got := a2.Snapshot().Pods[0].Status.PodIP; got != ip || net.releases() != 0 {
		t.Fatalf("after the restart the pod has address %s (was %s), %d network releases", got, ip, net.releases())
	}
}
