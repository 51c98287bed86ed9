package edgeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgeorch/edge/core"
)

// podWorker owns one pod: it creates, starts, restarts and finally removes
// the pod's containers, one goroutine per pod so that a slow pull or a long
// grace period never holds up other pods. It reaches containers only
// through the agent's core.Runtime.
type podWorker struct {
	a                    *Agent
	uid, namespace, name string
	claims               []string // the pod's persistentVolumeClaims (set under a.mu)

	mu          sync.Mutex
	pod         *core.Pod
	terminating bool
	finished    bool
	pullCancel  context.CancelFunc // ends the image pull under way, if any
	netnsPath   string
	podIP       string
	ctrs        map[string]*ctrState
	status      *core.PodStatus
	kick        chan struct{}
	quit        chan struct{}
	startOnce   sync.Once
	stopOnce    sync.Once
	// initDone: the init containers completed (worker goroutine only);
	// initChecked: whether the runtime was asked if they had already.
	initDone, initChecked bool
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
	if w.pullCancel != nil {
		w.pullCancel() // it holds the worker; another pod wanting the image pulls (and resumes) on its own
	}
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

func (w *podWorker) isTerminating() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.terminating
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
		// A kick and the agent's stop may be ready at once, and select
		// picks either: a stopping agent must not begin another pass (a
		// second SIGTERM to a container in its grace period).
		if w.a.ctx.Err() != nil {
			return
		}
		next := w.sync()
		if w.isFinished() {
			select {
			case w.a.workerDone <- w.uid:
			case <-w.a.ctx.Done():
			}
			return
		}
		c, stop := w.a.timer(next)
		select {
		case <-w.kick:
		case <-c:
		case <-w.quit:
			stop()
			return
		case <-w.a.ctx.Done():
			stop()
			return
		}
		stop()
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
		if err := w.teardown(pod); errors.Is(err, errClosing) {
			return w.a.Resync // the loop ends with the agent
		} else if err != nil {
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
	// ConfigMap and Secret volumes follow their objects while the pod
	// runs; a missing one keeps containers from starting, with the reason.
	if err := w.syncConfigVolumes(pod); err != nil {
		running := false
		pod.Spec.EachContainer(func(c *core.Container, _ bool) {
			running = running || w.state(c.Name).running != nil
		})
		if !running {
			pod.Spec.EachContainer(func(c *core.Container, _ bool) {
				if st := w.state(c.Name); !completed(st) {
					st.waiting = &core.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
				}
			})
			w.updateStatus(pod)
			return 2 * time.Second
		}
		// Running containers keep the last content, as with the kubelet;
		// probes and restarts go on (a restart then names what is missing).
		next = 2 * time.Second
	}
	// The network is set up while the containers are created: both take a
	// few hundred milliseconds and only starting a task needs the network.
	netReady := func() error { return nil }
	if !pod.Spec.HostNetwork {
		if w.netnsPath == "" {
			w.netnsPath = filepath.Join(w.a.RunDir, "netns", w.uid)
		}
		done := make(chan error, 1)
		go func() { done <- w.setupNetwork(pod) }() // joined below: netReady is always called
		netReady = sync.OnceValue(func() error { return <-done })
	}
	// Init containers first, each to completion; the containers start
	// once they all did.
	initialized, d := w.syncInit(pod, netReady)
	next = min(next, d)
	// A container whose postStart hook runs holds back the creation of
	// the next ones, as in Kubernetes (a sidecar's hook can wait for it).
	hookBlocks := false
	for i := range pod.Spec.Containers {
		if !initialized {
			break
		}
		c := &pod.Spec.Containers[i]
		// A container started above is recorded before this one's create
		// (an image pull can take minutes, and an agent restarting meanwhile
		// would lose its address and restart count).
		for _, prev := range pod.Spec.InitContainers {
			w.recordStart(containerID(pod, prev.Name), w.state(prev.Name))
		}
		for _, prev := range pod.Spec.Containers[:i] {
			w.recordStart(containerID(pod, prev.Name), w.state(prev.Name))
		}
		st := w.state(c.Name)
		if hookBlocks && st.created.IsZero() {
			st.waiting = &core.ContainerStateWaiting{Reason: "ContainerCreating", Message: "waiting for the postStart hooks of the containers before it"}
			continue
		}
		d := w.syncContainer(pod, c, st, netReady)
		next = min(next, d)
		if w.hookPending(c, st, containerID(pod, c.Name)) {
			hookBlocks = true
			continue // its probes wait for it; it wakes the worker when done
		}
		if pd := w.probe(pod, c, st); pd > 0 {
			next = min(next, pd)
		}
	}
	// Sidecars, once the init sequence is past them all, are kept running
	// here, after the containers: whether those are done decides whether
	// a sidecar that exited restarts.
	if initialized {
		next = min(next, w.syncSidecars(pod, netReady))
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
	pod.Spec.EachContainer(func(c *core.Container, _ bool) {
		if st := w.state(c.Name); st.record != nil {
			w.recordStart(containerID(pod, c.Name), st)
			if st.record != nil {
				next = min(next, 2*time.Second)
			}
		}
	})
	// A job's containers are done: its sidecars stop, after the status
	// went out with the pod's phase (stopping them can take their grace
	// period); the next pass records how they ended.
	if initialized && w.workDone(pod) && w.retireSidecars(pod) {
		next = 0
	}
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
	if err := a.createNetNS(w.netnsPath); err != nil {
		return err
	}
	w.mu.Lock()
	if fresh {
		w.podIP = "" // a new namespace (after a reboot) has no network yet
	}
	ip := w.podIP
	w.mu.Unlock()
	if ip == "" && a.Network != nil {
		a.mu.Lock()
		inherited := a.inherited[w.uid]
		a.mu.Unlock()
		if inherited {
			// An earlier agent process may have attached this pod before it
			// recorded the address (killed mid-start), or held a lease that
			// a reboot left on disk (host-local keeps them): release both,
			// as the kubelet does before recreating a sandbox. A pod first
			// seen by this process needs no such call on its start path.
			a.Network.Teardown(a.ctx, w.uid, w.name, w.namespace, w.netnsPath)
		}
		var err error
		if ip, err = a.Network.Setup(a.ctx, w.uid, w.name, w.namespace, w.netnsPath, hostPorts(pod)); err != nil {
			return fmt.Errorf("pod network: %w", err)
		}
		w.mu.Lock()
		w.podIP = ip
		w.mu.Unlock()
	}
	if err := os.MkdirAll(w.podDir(), 0o755); err != nil {
		return err
	}
	// The pod's name, or spec.hostname, and with a subdomain (a headless
	// service) its cluster name too, as the kubelet writes them.
	name := pod.Metadata.Name
	if pod.Spec.Hostname != "" {
		name = pod.Spec.Hostname
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if ip != "" {
		hosts += ip + "\t" + name
		if sub := pod.Spec.Subdomain; sub != "" {
			hosts += "\t" + name + "." + sub + "." + pod.Metadata.Namespace + ".svc." + a.clusterDomain()
		}
		hosts += "\n"
	}
	for _, h := range pod.Spec.HostAliases {
		hosts += h.IP + "\t" + strings.Join(h.Hostnames, " ") + "\n"
	}
	if err := writeIfChanged(filepath.Join(w.podDir(), "hosts"), hosts); err != nil {
		return err
	}
	if resolv, own := a.podResolvConf(pod); own {
		if err := writeIfChanged(filepath.Join(w.podDir(), "resolv.conf"), string(resolv)); err != nil {
			return err
		}
	}
	return writeIfChanged(filepath.Join(w.podDir(), "hostname"), name+"\n")
}

// hostPorts lists the pod's ports published on the node.
func hostPorts(pod *core.Pod) []core.ContainerPort {
	var out []core.ContainerPort
	for _, c := range pod.Spec.ContainersAndSidecars() {
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				out = append(out, p)
			}
		}
	}
	return out
}

func writeIfChanged(path, content string) error {
	if b, err := os.ReadFile(path); err == nil && string(b) == content {
		return nil
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

// updateStatus recomputes the pod's status and flags a report if it changed.
func (w *podWorker) updateStatus(pod *core.Pod) {
	a := w.a
	st := core.PodStatus{Phase: core.PodPending, HostIP: a.HostIP()}
	allDone, allOK, anyRunning, allReady := true, true, false, true
	var started *core.Time
	earliest := func(s *ctrState) {
		if !s.created.IsZero() {
			if t := core.NewTime(s.created); started == nil || t.Before(started.Time) {
				started = t
			}
		}
	}
	w.mu.Lock()
	st.PodIP = w.podIP
	if pod.Spec.HostNetwork {
		st.PodIP = st.HostIP
	}
	initFailed := false
	for _, c := range pod.Spec.InitContainers {
		s := w.ctrs[c.Name]
		if s == nil {
			s = &ctrState{waiting: &core.ContainerStateWaiting{Reason: "PodInitializing"}}
		}
		earliest(s)
		cs := w.containerStatus(pod, &c, s)
		if c.IsSidecar() {
			// Reported as a container: ready per its probe, and its
			// readiness is the pod's. Its exits never fail the pod.
			cs.Started = new(bool)
			*cs.Started = sidecarStarted(&c, s)
			if !cs.Ready {
				allReady = false
			}
			st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
			continue
		}
		cs.Ready = completed(s) // as the kubelet reports a finished init container
		if t := s.terminated; t != nil && t.ExitCode != 0 && !shouldRestart(restartPolicy(pod, s), t.ExitCode) {
			initFailed = true
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}
	for _, c := range pod.Spec.Containers {
		s := w.ctrs[c.Name]
		if s == nil {
			reason := "ContainerCreating"
			if !w.initDone && len(pod.Spec.InitContainers) > 0 {
				reason = "PodInitializing"
			}
			s = &ctrState{waiting: &core.ContainerStateWaiting{Reason: reason}}
		}
		earliest(s)
		cs := w.containerStatus(pod, &c, s)
		cs.Started = new(bool)
		*cs.Started = s.running != nil && startedUp(&c, s)
		switch {
		case s.running != nil:
			anyRunning = true
			allDone = false
		case s.terminated != nil:
			if s.terminated.ExitCode != 0 {
				allOK = false
			}
		default:
			allDone = false
		}
		if !cs.Ready {
			allReady = false
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	initialized := w.initDone || len(pod.Spec.InitContainers) == 0
	switch {
	case initFailed:
		st.Phase = core.PodFailed
	case !initialized:
		st.Phase = core.PodPending
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
	init := core.PodCondition{Type: "Initialized", Status: core.ConditionTrue}
	if !initialized {
		init = core.PodCondition{Type: "Initialized", Status: core.ConditionFalse, Reason: "ContainersNotInitialized",
			Message: fmt.Sprintf("containers with incomplete status: %s", w.incompleteInit(pod))}
	}
	st.Conditions = []core.PodCondition{init, {Type: "ContainersReady", Status: ready}, {Type: "Ready", Status: ready}}
	changed := w.status == nil || !core.JSONEqual(w.status, &st)
	w.status = &st
	w.mu.Unlock()
	if changed {
		a.markDirty()
	}
}

// containerStatus reports one container as the worker knows it; the
// caller holds w.mu.
func (w *podWorker) containerStatus(pod *core.Pod, c *core.Container, s *ctrState) core.ContainerStatus {
	cs := core.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: s.imageID, RestartCount: s.restarts, Ready: s.ready && s.running != nil}
	if !s.created.IsZero() {
		cs.ContainerID = "containerd://" + containerID(pod, c.Name)
	}
	switch {
	case s.running != nil:
		cs.State.Running = s.running
	case s.terminated != nil:
		cs.State.Terminated = s.terminated
	default:
		cs.State.Waiting = s.waiting
		if cs.State.Waiting == nil {
			cs.State.Waiting = &core.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
	}
	if s.last != nil {
		cs.LastState.Terminated = s.last
	}
	return cs
}

// incompleteInit names the init containers that have not completed; the
// caller holds w.mu.
func (w *podWorker) incompleteInit(pod *core.Pod) string {
	var names []string
	for _, c := range pod.Spec.InitContainers {
		if s := w.ctrs[c.Name]; s == nil || (!c.IsSidecar() && !completed(s)) || (c.IsSidecar() && !s.passed) {
			names = append(names, c.Name)
		}
	}
	return "[" + strings.Join(names, " ") + "]"
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
	ctrs, err := a.rt.Containers(ctx, map[string]string{labelPodUID: w.uid})
	if err != nil {
		return err
	}
	w.mu.Lock()
	for _, st := range w.ctrs {
		st.cancelHook() // a postStart hook still running ends here
	}
	w.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(ctrs))
	// Containers of a pod stop together, each with the full grace, but a
	// sidecar waits for those it outlives to stop before its SIGTERM, and
	// then has what is left of the grace (its preStop hook runs at once,
	// as the kubelet's).
	outlives := stopOrder(pod, ctrs)
	stopped := make([]chan struct{}, len(ctrs))
	for i := range stopped {
		stopped[i] = make(chan struct{})
	}
	start := a.Now()
	for i, c := range ctrs {
		grace := containerGrace(pod, c)
		if i == 0 {
			w.event("", core.EventNormal, "Killing", "Stopping the pod's containers (grace period %s)", grace)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			left := grace
			if pod != nil {
				if ctr := findContainer(pod, c.Labels[labelContainer]); ctr != nil {
					left = w.preStop(pod, ctr, c.ID, left) // what is left of it after the hook
				}
			}
			if len(outlives[i]) > 0 {
				if err := w.waitTurn(stopped, outlives[i], grace-a.Now().Sub(start)); err != nil {
					close(stopped[i]) // not stopped: the next agent stops it, in order
					errs[i] = err
					return
				}
				left = min(left, remainingGrace(grace, a.Now().Sub(start)))
			}
			// Once begun, a removal finishes even if the agent is
			// stopping, except for waiting out the grace period.
			err := a.stopTask(context.WithoutCancel(ctx), c.ID, left)
			close(stopped[i])
			if err == nil {
				err = a.rt.RemoveContainer(context.WithoutCancel(ctx), c.ID)
			}
			errs[i] = err
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
		if err := a.removeNetNS(w.netnsPath); err != nil {
			return err
		}
	}
	os.RemoveAll(w.podDir())
	os.RemoveAll(filepath.Join(w.a.RunDir, "pods", w.uid)) // its secrets
	os.RemoveAll(w.logDir())
	return nil
}

// waitTurn waits, at most d, until the containers of indexes have stopped;
// errClosing if the agent stops meanwhile.
func (w *podWorker) waitTurn(stopped []chan struct{}, indexes []int, d time.Duration) error {
	t, stop := w.a.timer(max(d, 0))
	defer stop()
	for _, j := range indexes {
		select {
		case <-stopped[j]:
		case <-t:
			return nil
		case <-w.a.ctx.Done():
			return errClosing
		}
	}
	return nil
}

// containerGrace is the grace period of a pod's container: the pod's, or
// for a pod the agent does not know (adopted, no longer wanted) the one
// recorded on the container when it was created, or 10s.
func containerGrace(pod *core.Pod, c *core.ContainerInfo) time.Duration {
	if pod != nil {
		return time.Duration(pod.Spec.GracePeriod()) * time.Second
	}
	if s, err := strconv.ParseInt(c.Labels[labelGrace], 10, 64); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	return 10 * time.Second
}

// removeContainer stops a container's task and deletes the container.
func (a *Agent) removeContainer(ctx context.Context, id string, grace time.Duration) error {
	if err := a.stopTask(ctx, id, grace); err != nil {
		return err
	}
	return a.rt.RemoveContainer(ctx, id)
}

// postKillWait bounds the wait for a task to die after SIGKILL (a process
// in uninterruptible sleep on a dying SD card can take a while).
const postKillWait = 10 * time.Second

// errClosing ends a grace period early: the agent is stopping.
var errClosing = errors.New("agent stopping")

// stopTask stops a container's task, as the kubelet does: SIGTERM, SIGKILL
// if it is still running after grace, then deletes it. If the agent stops
// during the grace period the task is left running with its SIGTERM, not
// killed early: the next agent adopts it and stops it again.
func (a *Agent) stopTask(ctx context.Context, id string, grace time.Duration) error {
	if err := a.signalStop(ctx, id, grace); err != nil {
		return err
	}
	return a.rt.DeleteTask(ctx, id)
}

// signalStop stops a container's task as stopTask does, but keeps it, so
// that its exit can still be read (a job's sidecars).
func (a *Agent) signalStop(ctx context.Context, id string, grace time.Duration) error {
	st, err := a.rt.Task(ctx, id)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return nil
	}
	if err == nil && st.State != core.TaskStopped {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if exited, err := a.rt.WaitTask(wctx, id); err == nil {
			stopped := false
			if grace > 0 {
				a.rt.Signal(ctx, id, syscall.SIGTERM)
				if stopped, err = a.waitExit(exited, grace); err != nil {
					return err
				}
			}
			if !stopped {
				a.rt.Signal(ctx, id, syscall.SIGKILL)
				a.waitExit(exited, postKillWait)
			}
		}
	}
	return nil
}

// waitExit waits up to d for exited; stopped is true if the task stopped.
func (a *Agent) waitExit(exited <-chan core.TaskStatus, d time.Duration) (stopped bool, err error) {
	c, stop := a.timer(d)
	defer stop()
	select {
	case <-exited:
		return true, nil
	case <-c:
		return false, nil
	case <-a.ctx.Done():
		return false, errClosing
	}
}
