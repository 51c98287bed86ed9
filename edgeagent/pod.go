package edgeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/edgeorch/edge/core"
)

// podWorker owns one pod: it creates, starts, restarts and finally removes
// the pod's containers, one goroutine per pod so that a slow pull or a long
// grace period never holds up other pods.
type podWorker struct {
	a                    *Agent
	uid, namespace, name string

	mu          sync.Mutex
	pod         *core.Pod
	terminating bool
	finished    bool
	netnsPath   string
	podIP       string
	ctrs        map[string]*ctrState
	status      *core.PodStatus
	kick        chan struct{}
	quit        chan struct{}
	startOnce   sync.Once
	stopOnce    sync.Once
}

// ctrState is what the worker knows of one container beyond containerd.
type ctrState struct {
	restarts     int32
	backoff      time.Duration // wait before the next restart after a crash
	retryAt      time.Time
	pullFailures int
	waiting      *core.ContainerStateWaiting
	running      *core.ContainerStateRunning
	terminated   *core.ContainerStateTerminated
	last         *core.ContainerStateTerminated
	ready        bool
	imageID      string
	created      time.Time
	probes       probeState
	exitSeen     time.Time // the exit last recorded as an event
}

const maxBackoff = 60 * time.Second

func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return time.Second
	}
	return min(2*d, maxBackoff)
}

func (a *Agent) newWorker(uid, namespace, name string) *podWorker {
	return &podWorker{a: a, uid: uid, namespace: namespace, name: name, ctrs: map[string]*ctrState{},
		kick: make(chan struct{}, 1), quit: make(chan struct{})}
}

func (w *podWorker) setPod(p *core.Pod) {
	w.mu.Lock()
	changed := w.pod == nil
	w.pod = p
	w.mu.Unlock()
	if changed {
		w.kickNow()
	}
}

func (w *podWorker) terminate() {
	w.mu.Lock()
	changed := !w.terminating
	w.terminating = true
	w.mu.Unlock()
	if changed {
		w.kickNow()
	}
}

func (w *podWorker) kickNow() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *podWorker) isFinished() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.finished
}

func (w *podWorker) start() {
	w.startOnce.Do(func() {
		w.a.wg.Add(1)
		go w.loop()
	})
}

// stop ends the worker without touching its containers (agent shutdown).
func (w *podWorker) stop() { w.stopOnce.Do(func() { close(w.quit) }) }

func (w *podWorker) loop() {
	defer w.a.wg.Done()
	for {
		next := w.sync()
		if w.isFinished() {
			select {
			case w.a.workerDone <- w.uid:
			case <-w.a.ctx.Done():
			}
			return
		}
		t := time.NewTimer(next)
		select {
		case <-w.kick:
		case <-t.C:
		case <-w.quit:
			t.Stop()
			return
		case <-w.a.ctx.Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}

func (w *podWorker) podDir() string { return filepath.Join(w.a.DataDir, "pods", w.uid) }

func (w *podWorker) logDir() string {
	return filepath.Join(w.a.DataDir, "logs", w.namespace+"_"+w.name+"_"+w.uid)
}

func (w *podWorker) logPath(container string) string {
	return filepath.Join(w.logDir(), container+".log")
}

func (w *podWorker) state(name string) *ctrState {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.ctrs[name]
	if st == nil {
		st = &ctrState{}
		w.ctrs[name] = st
	}
	return st
}

// sync moves the pod one step towards what is wanted and returns when to
// look again.
func (w *podWorker) sync() time.Duration {
	w.mu.Lock()
	pod, term := w.pod, w.terminating
	w.mu.Unlock()
	switch {
	case term:
		if err := w.teardown(pod); err != nil {
			w.a.Log.Error("removing pod failed; retrying", "pod", w.namespace+"/"+w.name, "err", err)
			return 2 * time.Second
		}
		w.mu.Lock()
		w.finished = true
		w.mu.Unlock()
		w.a.Log.Info("pod removed", "pod", w.namespace+"/"+w.name)
		return 0
	case pod == nil:
		return w.a.Resync // adopted, and no desired state known yet: leave it be
	}
	next := w.a.Resync
	// The network is set up while the containers are created: both take a
	// few hundred milliseconds and only starting a task needs the network.
	netReady := func() error { return nil }
	if !pod.Spec.HostNetwork {
		if w.netnsPath == "" {
			w.netnsPath = filepath.Join(w.a.RunDir, "netns", w.uid)
		}
		done := make(chan error, 1)
		go func() { done <- w.setupNetwork(pod) }()
		netReady = sync.OnceValue(func() error { return <-done })
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		d := w.syncContainer(pod, c, w.state(c.Name), netReady)
		next = min(next, d)
		if pd := w.probe(pod, c, w.state(c.Name)); pd > 0 {
			next = min(next, pd)
		}
	}
	if err := netReady(); err != nil {
		for _, c := range pod.Spec.Containers {
			st := w.state(c.Name)
			if st.running == nil {
				st.waiting = &core.ContainerStateWaiting{Reason: "NetworkNotReady", Message: err.Error()}
			}
		}
		next = 2 * time.Second
	}
	w.updateStatus(pod)
	return max(next, 10*time.Millisecond)
}

// setupNetwork makes sure the pod's namespace exists and is attached, and
// writes its hosts and hostname files.
func (w *podWorker) setupNetwork(pod *core.Pod) error {
	a := w.a
	fresh := false
	if _, err := os.Stat(w.netnsPath); err != nil {
		fresh = true
	}
	if err := createNetNS(w.netnsPath); err != nil {
		return err
	}
	w.mu.Lock()
	if fresh {
		w.podIP = "" // a new namespace (after a reboot) has no network yet
	}
	ip := w.podIP
	w.mu.Unlock()
	if ip == "" && a.Network != nil {
		if fresh {
			// After a reboot the old attachment is gone but its address may
			// still be held (host-local keeps leases on disk): release it,
			// as the kubelet does before recreating a sandbox.
			a.Network.Teardown(a.ctx, w.uid, w.name, w.namespace, w.netnsPath)
		}
		var err error
		if ip, err = a.Network.Setup(a.ctx, w.uid, w.name, w.namespace, w.netnsPath); err != nil {
			return fmt.Errorf("pod network: %w", err)
		}
		w.mu.Lock()
		w.podIP = ip
		w.mu.Unlock()
	}
	if err := os.MkdirAll(w.podDir(), 0o755); err != nil {
		return err
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if ip != "" {
		hosts += ip + "\t" + pod.Metadata.Name + "\n"
	}
	if err := writeIfChanged(filepath.Join(w.podDir(), "hosts"), hosts); err != nil {
		return err
	}
	return writeIfChanged(filepath.Join(w.podDir(), "hostname"), pod.Metadata.Name+"\n")
}

func writeIfChanged(path, content string) error {
	if b, err := os.ReadFile(path); err == nil && string(b) == content {
		return nil
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

func shouldRestart(policy core.RestartPolicy, exitCode int32) bool {
	return policy == core.RestartAlways || (policy == core.RestartOnFailure && exitCode != 0)
}

func (w *podWorker) syncContainer(pod *core.Pod, c *core.Container, st *ctrState, netReady func() error) time.Duration {
	a := w.a
	ctx := a.ctx
	now := a.Now()
	id := containerID(pod, c.Name)
	ctr, err := a.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		if now.Before(st.retryAt) {
			return st.retryAt.Sub(now)
		}
		ctr, err = w.createContainer(pod, c, st, id)
		if err != nil {
			st.backoff = nextBackoff(st.backoff)
			st.retryAt = now.Add(st.backoff)
			return st.backoff
		}
		st.backoff, st.retryAt = 0, time.Time{}
	} else if err != nil {
		return 2 * time.Second // containerd is restarting; look again soon
	}
	labels, err := ctr.Labels(ctx)
	if err != nil {
		return 2 * time.Second
	}
	st.restarts = atoi32(labels[labelRestarts])
	if st.created.IsZero() {
		if info, err := ctr.Info(ctx, containerd.WithoutRefreshedMetadata); err == nil {
			st.created = info.CreatedAt
			if img, err := ctr.Image(ctx); err == nil {
				st.imageID = img.Target().Digest.String()
			}
		}
	}
	startedAt := parseTime(labels[labelStartedAt])
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		if startedAt != nil && !shouldRestart(pod.Spec.RestartPolicy, -1) {
			// It ran before the node rebooted; its exit status is lost.
			st.running, st.waiting = nil, nil
			st.terminated = &core.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown",
				Message: "the container's task was lost (node reboot?)", StartedAt: startedAt}
			return a.Resync
		}
		return w.startTask(ctr, c, st, startedAt != nil, netReady)
	} else if err != nil {
		return 2 * time.Second
	}
	status, err := task.Status(ctx)
	if err != nil {
		return time.Second
	}
	switch status.Status {
	case containerd.Stopped:
		term := &core.ContainerStateTerminated{ExitCode: int32(status.ExitStatus), StartedAt: startedAt, Reason: "Completed"}
		if !status.ExitTime.IsZero() {
			term.FinishedAt = core.NewTime(status.ExitTime)
		}
		if term.ExitCode != 0 {
			term.Reason = "Error"
			if w.oomKilled(id) {
				term.Reason = "OOMKilled"
			}
		}
		if !status.ExitTime.Equal(st.exitSeen) {
			st.exitSeen = status.ExitTime
			typ := core.EventNormal
			if term.ExitCode != 0 {
				typ = core.EventWarning
			}
			w.event(c.Name, typ, term.Reason, "Container %s exited with code %d", c.Name, term.ExitCode)
		}
		if !shouldRestart(pod.Spec.RestartPolicy, term.ExitCode) {
			st.running, st.waiting, st.terminated, st.ready = nil, nil, term, false
			return a.Resync
		}
		st.last, st.terminated, st.ready = term, nil, false
		if st.retryAt.IsZero() {
			exited := status.ExitTime
			if exited.IsZero() {
				exited = now
			}
			st.retryAt = exited.Add(st.backoff)
		}
		if now.Before(st.retryAt) {
			st.running = nil
			st.waiting = &core.ContainerStateWaiting{Reason: "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container %s", st.backoff, c.Name)}
			return st.retryAt.Sub(now)
		}
		if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			return time.Second
		}
		d := w.startTask(ctr, c, st, true, netReady)
		st.backoff = nextBackoff(st.backoff)
		st.retryAt = time.Time{}
		return d
	case containerd.Created:
		if err := task.Start(ctx); err != nil {
			task.Delete(ctx, containerd.WithProcessKill)
		}
		return 100 * time.Millisecond
	default:
		st.waiting, st.terminated = nil, nil
		st.running = &core.ContainerStateRunning{StartedAt: startedAt}
		if startedAt != nil && now.Sub(startedAt.Time) > maxBackoff {
			st.backoff = 0 // it ran long enough: the next crash restarts at once
		}
		if c.ReadinessProbe == nil {
			st.ready = true
		}
		return a.Resync
	}
}

func (w *podWorker) createContainer(pod *core.Pod, c *core.Container, st *ctrState, id string) (containerd.Container, error) {
	a := w.a
	ctx := a.ctx
	if st.waiting == nil {
		st.waiting = &core.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	img, err := a.ensureImage(ctx, c.Image, c.ImagePullPolicy)
	if err != nil {
		reason := "ErrImagePull"
		var pe *pullError
		if errors.As(err, &pe) {
			reason = pe.reason
		}
		if reason == "ErrImagePull" && st.pullFailures > 0 {
			reason = "ImagePullBackOff"
		}
		st.pullFailures++
		st.waiting = &core.ContainerStateWaiting{Reason: reason, Message: err.Error()}
		if st.pullFailures == 1 {
			a.Log.Warn("image not available", "pod", w.namespace+"/"+w.name, "image", c.Image, "err", err)
			w.event(c.Name, core.EventWarning, "Failed", "Failed to get image %s: %v", c.Image, err)
		}
		return nil, err
	}
	st.pullFailures = 0
	opts, err := a.specOpts(pod, c, img, w.netnsPath, w.podDir())
	if err != nil {
		st.waiting = &core.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
		return nil, err
	}
	labels := map[string]string{
		labelPodUID: pod.Metadata.UID, labelPodName: pod.Metadata.Name, labelPodNamespace: pod.Metadata.Namespace,
		labelContainer: c.Name, labelSpecHash: specHash(c), labelRestarts: "0",
	}
	if w.netnsPath != "" && !pod.Spec.HostNetwork {
		labels[labelNetNS] = w.netnsPath
	}
	ctr, err := a.client.NewContainer(ctx, id, containerd.WithImage(img), containerd.WithNewSnapshot(id, img),
		containerd.WithNewSpec(opts...), containerd.WithContainerLabels(labels))
	if err != nil {
		st.waiting = &core.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		return nil, err
	}
	return ctr, nil
}

// startTask starts a container's process; restart counts it as a restart.
func (w *podWorker) startTask(ctr containerd.Container, c *core.Container, st *ctrState, restart bool, netReady func() error) time.Duration {
	a := w.a
	if err := netReady(); err != nil {
		st.waiting = &core.ContainerStateWaiting{Reason: "NetworkNotReady", Message: err.Error()}
		return 2 * time.Second
	}
	if _, err := newTask(a.ctx, ctr, w.logPath(c.Name)); err != nil {
		st.running = nil
		st.waiting = &core.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
		st.backoff = nextBackoff(st.backoff)
		st.retryAt = a.Now().Add(st.backoff)
		return st.backoff
	}
	now := core.NewTime(a.Now())
	labels := map[string]string{labelStartedAt: now.Format(time.RFC3339)}
	if restart {
		st.restarts++
		labels[labelRestarts] = fmt.Sprint(st.restarts)
		w.event(c.Name, core.EventNormal, "Started", "Restarted container %s (restart %d)", c.Name, st.restarts)
	} else {
		w.event(c.Name, core.EventNormal, "Started", "Started container %s", c.Name)
	}
	w.mu.Lock()
	if w.podIP != "" {
		labels[labelPodIP] = w.podIP // read back when a restarted agent adopts the pod
	}
	w.mu.Unlock()
	if _, err := ctr.SetLabels(a.ctx, labels); err != nil {
		a.Log.Warn("recording container start failed", "container", ctr.ID(), "err", err)
	}
	st.waiting, st.terminated = nil, nil
	st.running = &core.ContainerStateRunning{StartedAt: now}
	st.ready = c.ReadinessProbe == nil
	st.probes = probeState{}
	return 50 * time.Millisecond // confirm it is still up shortly
}

func parseTime(s string) *core.Time {
	if s == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil
	}
	return core.NewTime(t)
}

// updateStatus recomputes the pod's status and flags a report if it changed.
func (w *podWorker) updateStatus(pod *core.Pod) {
	a := w.a
	st := core.PodStatus{Phase: core.PodPending, HostIP: a.hostIP}
	allDone, allOK, anyRunning, allReady := true, true, false, true
	var started *core.Time
	w.mu.Lock()
	st.PodIP = w.podIP
	if pod.Spec.HostNetwork {
		st.PodIP = a.hostIP
	}
	for _, c := range pod.Spec.Containers {
		s := w.ctrs[c.Name]
		if s == nil {
			s = &ctrState{waiting: &core.ContainerStateWaiting{Reason: "ContainerCreating"}}
		}
		cs := core.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: s.imageID, RestartCount: s.restarts, Ready: s.ready && s.running != nil}
		if !s.created.IsZero() {
			cs.ContainerID = "containerd://" + containerID(pod, c.Name)
			if t := core.NewTime(s.created); started == nil || t.Before(started.Time) {
				started = t
			}
		}
		switch {
		case s.running != nil:
			cs.State.Running = s.running
			anyRunning = true
			allDone = false
		case s.terminated != nil:
			cs.State.Terminated = s.terminated
			if s.terminated.ExitCode != 0 {
				allOK = false
			}
		default:
			cs.State.Waiting = s.waiting
			if cs.State.Waiting == nil {
				cs.State.Waiting = &core.ContainerStateWaiting{Reason: "ContainerCreating"}
			}
			allDone = false
		}
		if s.last != nil {
			cs.LastState.Terminated = s.last
		}
		if !cs.Ready {
			allReady = false
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	switch {
	case allDone && allOK:
		st.Phase = core.PodSucceeded
	case allDone:
		st.Phase = core.PodFailed
	case anyRunning:
		st.Phase = core.PodRunning
	}
	st.StartTime = started
	ready := core.ConditionFalse
	if allReady && st.Phase == core.PodRunning {
		ready = core.ConditionTrue
	}
	st.Conditions = []core.PodCondition{{Type: "ContainersReady", Status: ready}, {Type: "Ready", Status: ready}}
	changed := w.status == nil || !core.JSONEqual(w.status, &st)
	w.status = &st
	w.mu.Unlock()
	if changed {
		a.markDirty()
	}
}

// report returns the pod's status for the node report.
func (w *podWorker) report() (core.PodReport, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pod == nil || w.status == nil {
		return core.PodReport{}, false
	}
	return core.PodReport{Namespace: w.namespace, Name: w.name, UID: w.uid, Status: *w.status}, true
}

// teardown stops and removes everything the pod had on this node.
func (w *podWorker) teardown(pod *core.Pod) error {
	a := w.a
	ctx := a.ctx
	grace := 10 * time.Second
	if pod != nil {
		grace = time.Duration(pod.Spec.GracePeriod()) * time.Second
	}
	ctrs, err := a.client.Containers(ctx, fmt.Sprintf(`labels.%q==%q`, labelPodUID, w.uid))
	if err != nil {
		return err
	}
	if len(ctrs) > 0 && pod != nil {
		w.event("", core.EventNormal, "Killing", "Stopping the pod's containers (grace period %s)", grace)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(ctrs))
	for i, c := range ctrs {
		wg.Add(1)
		go func() { // containers of a pod stop together, each with the full grace
			defer wg.Done()
			errs[i] = removeContainer(context.WithoutCancel(ctx), c, grace)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if w.netnsPath != "" {
		if a.Network != nil {
			// Finish the network teardown even if the agent is stopping:
			// a half-removed attachment leaks an address and NAT rules.
			nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			err := a.Network.Teardown(nctx, w.uid, w.name, w.namespace, w.netnsPath)
			cancel()
			if err != nil {
				return err
			}
		}
		if err := removeNetNS(w.netnsPath); err != nil {
			return err
		}
	}
	os.RemoveAll(w.podDir())
	os.RemoveAll(w.logDir())
	return nil
}
