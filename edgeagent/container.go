package edgeagent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/backoff"
)

// ctrState is what the worker knows of one container beyond the runtime.
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
	exitSeen     time.Time                      // the exit last recorded as an event
	exit         *core.ContainerStateTerminated // how that exit is reported
	// record holds labels of a start still to be written to the runtime
	// (after the pod's status went out: on a busy node that write waits
	// behind other containers' creation, and the pod is running already).
	record map[string]string
	// init marks an init container; sidecar, one with restartPolicy
	// Always (sidecar.go). passed: the init sequence went on past this
	// sidecar (it started); retired: the pod's containers are done, so it
	// is stopped and stays so. All for the worker goroutine only.
	init, sidecar   bool
	passed, retired bool
	// hook is the postStart hook of the current start while it runs;
	// hookFailed, the failure it reported, for the exit it caused.
	hook       *hookRun
	hookFailed string
}

// startCheck is when a worker looks again at a container it started; an
// exit before then wakes it at once (the runtime's event stream).
const startCheck = time.Second

// maxBackoff caps the restart backoff (1s, 2s, 4s, ... 60s); a container
// that ran longer than this starts again from no delay.
const maxBackoff = 60 * time.Second

func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return time.Second
	}
	return min(2*d, maxBackoff)
}

func shouldRestart(policy core.RestartPolicy, exitCode int32) bool {
	return policy == core.RestartAlways || (policy == core.RestartOnFailure && exitCode != 0)
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

// syncContainer moves one container a step: create it, start its task,
// restart it after an exit (with backoff), or record that it runs.
func (w *podWorker) syncContainer(pod *core.Pod, c *core.Container, st *ctrState, netReady func() error) time.Duration {
	a := w.a
	ctx := a.ctx
	now := a.Now()
	id := containerID(pod, c.Name)
	info, err := a.rt.Container(ctx, id)
	if core.ErrorCode(err) == core.ENOTFOUND {
		if now.Before(st.retryAt) {
			return st.retryAt.Sub(now)
		}
		created, err := w.createContainer(pod, c, st, id)
		if err != nil {
			st.backoff = nextBackoff(st.backoff)
			delay := st.backoff
			var pe *pullError
			if errors.As(err, &pe) {
				delay = backoff.Jitter(delay) // a fleet must not retry its registry in lockstep
			}
			st.retryAt = now.Add(delay)
			return delay
		}
		st.backoff, st.retryAt = 0, time.Time{}
		// Just created: its labels are ours and it has no task. Asking the
		// runtime again would cost two round trips per container on the
		// busiest moment of a node, twenty pods starting at once.
		st.restarts, st.created = 0, created
		return w.noTask(pod, c, st, id, nil, netReady)
	}
	if err != nil {
		return 2 * time.Second // the runtime is restarting; look again soon
	}
	labels := info.Labels
	if st.record != nil { // a start not recorded yet is the latest one
		labels = maps.Clone(labels)
		maps.Copy(labels, st.record)
	}
	st.restarts = atoi32(labels[labelRestarts])
	if st.created.IsZero() {
		st.created = info.CreatedAt
		if img, err := a.rt.Image(ctx, info.Image); err == nil {
			st.imageID = img.ID
		}
	}
	startedAt := parseTime(labels[labelStartedAt])
	task, err := a.rt.Task(ctx, id)
	switch {
	case core.ErrorCode(err) == core.ENOTFOUND:
		return w.noTask(pod, c, st, id, startedAt, netReady)
	case err != nil:
		return 2 * time.Second
	}
	switch task.State {
	case core.TaskStopped:
		return w.stopped(pod, c, st, id, startedAt, task, netReady)
	case core.TaskCreated:
		// A start interrupted by an agent crash: start again, so that the
		// start is recorded (labels, restart count, event).
		if err := a.rt.DeleteTask(ctx, id); err != nil {
			return time.Second
		}
		return w.noTask(pod, c, st, id, startedAt, netReady)
	}
	st.waiting, st.terminated = nil, nil
	st.running = &core.ContainerStateRunning{StartedAt: startedAt}
	if startedAt != nil && now.Sub(startedAt.Time) > maxBackoff {
		st.backoff = 0 // it ran long enough: the next crash restarts at once
	}
	if readyWithoutProbe(c, st) {
		st.ready = true
	}
	return a.Resync
}

// noTask handles a container without a task: never started, or its task
// was deleted (a restart in progress, or a node reboot).
func (w *podWorker) noTask(pod *core.Pod, c *core.Container, st *ctrState, id string, startedAt *core.Time, netReady func() error) time.Duration {
	if startedAt != nil && !shouldRestart(restartPolicy(pod, st), -1) {
		// It ran before the node rebooted; its exit status is lost.
		st.running, st.waiting = nil, nil
		st.terminated = &core.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown",
			Message: "the container's task was lost (node reboot?)", StartedAt: startedAt}
		return w.a.Resync
	}
	if now := w.a.Now(); now.Before(st.retryAt) {
		return st.retryAt.Sub(now) // a failed start backs off
	}
	d, _ := w.startTask(pod, c, st, id, startedAt != nil, netReady)
	return d
}

// stopped handles a container whose task exited: it records the exit once
// (event, OOM kill), then restarts it per policy after the backoff.
func (w *podWorker) stopped(pod *core.Pod, c *core.Container, st *ctrState, id string, startedAt *core.Time, task core.TaskStatus, netReady func() error) time.Duration {
	a := w.a
	now := a.Now()
	if st.exit == nil || !task.ExitedAt.Equal(st.exitSeen) {
		// A new exit. Its reason is kept: the OOM flag is reported once.
		term := &core.ContainerStateTerminated{ExitCode: task.ExitCode, StartedAt: startedAt, Reason: "Completed"}
		if !task.ExitedAt.IsZero() {
			term.FinishedAt = core.NewTime(task.ExitedAt)
		}
		if term.ExitCode != 0 {
			term.Reason = "Error"
			if w.oomKilled(id) || task.OOMKilled {
				term.Reason = "OOMKilled"
			}
		}
		term.Message = w.terminationMessage(pod, c, term.ExitCode)
		if st.hookFailed != "" { // the kill of a failed postStart hook
			term.Message = strings.TrimSpace(st.hookFailed + "\n" + term.Message)
		}
		st.cancelHook()
		st.exitSeen, st.exit = task.ExitedAt, term
		typ := core.EventNormal
		if term.ExitCode != 0 {
			typ = core.EventWarning
		}
		w.event(c.Name, typ, term.Reason, "Container %s exited with code %d", c.Name, term.ExitCode)
	}
	term := st.exit
	if !shouldRestart(restartPolicy(pod, st), term.ExitCode) {
		st.running, st.waiting, st.terminated, st.ready = nil, nil, term, false
		return a.Resync
	}
	st.last, st.terminated, st.running, st.ready = term, nil, nil, false
	if st.retryAt.IsZero() {
		exited := task.ExitedAt
		if exited.IsZero() {
			exited = now
		}
		if startedAt != nil && exited.Sub(startedAt.Time) > maxBackoff {
			st.backoff = 0 // it ran long enough, even if no sync saw it running that long
		}
		st.retryAt = exited.Add(st.backoff)
	}
	if now.Before(st.retryAt) {
		st.waiting = &core.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off %s restarting failed container %s", st.backoff, c.Name)}
		return st.retryAt.Sub(now)
	}
	if err := a.rt.DeleteTask(a.ctx, id); err != nil {
		return time.Second
	}
	d, ok := w.startTask(pod, c, st, id, true, netReady)
	if ok {
		st.backoff = nextBackoff(st.backoff)
		st.retryAt = time.Time{}
	}
	return d
}

// createContainer gets the container's image and creates the container.
func (w *podWorker) createContainer(pod *core.Pod, c *core.Container, st *ctrState, id string) (time.Time, error) {
	a := w.a
	ctx := a.ctx
	if st.waiting == nil {
		st.waiting = &core.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	// A pull runs in this goroutine, as long as it takes (a large image on
	// a slow link); the pod's deletion ends it (terminate).
	pctx, cancel := context.WithCancel(ctx)
	w.mu.Lock()
	w.pullCancel = cancel
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.pullCancel = nil
		w.mu.Unlock()
		cancel()
	}()
	if w.isTerminating() {
		cancel()
	}
	// Progress goes in the container's waiting message, in the pod's
	// status (the runtime calls this every few seconds at most, from one
	// goroutine, and never once PullImage has returned).
	progress := func(p core.PullProgress) {
		w.mu.Lock()
		st.waiting = &core.ContainerStateWaiting{Reason: "ContainerCreating", Message: pullMessage(c.Image, p)}
		w.mu.Unlock()
		w.updateStatus(pod)
	}
	img, err := a.ensureImage(pctx, c.Image, c.ImagePullPolicy, progress)
	if err != nil {
		reason := "ErrImagePull"
		var pe *pullError
		if errors.As(err, &pe) {
			reason = pe.reason
		} else {
			err = &pullError{reason: reason, msg: err.Error()}
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
		return time.Time{}, err
	}
	st.pullFailures = 0
	st.imageID = img.ID
	cfg, err := w.containerConfig(pod, c, img.Name)
	if err != nil {
		if st.waiting.Reason != "CreateContainerConfigError" {
			w.event(c.Name, core.EventWarning, "Failed", "Error: %v", err)
		}
		st.waiting = &core.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
		return time.Time{}, err
	}
	if err := a.rt.CreateContainer(ctx, cfg); err != nil {
		st.waiting = &core.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		return time.Time{}, err
	}
	return a.Now(), nil
}

// startTask starts a container's process; restart counts it as a restart.
// ok is false if it did not start.
func (w *podWorker) startTask(pod *core.Pod, c *core.Container, st *ctrState, id string, restart bool, netReady func() error) (next time.Duration, ok bool) {
	a := w.a
	if err := netReady(); err != nil {
		st.waiting = &core.ContainerStateWaiting{Reason: "NetworkNotReady", Message: err.Error()}
		return 2 * time.Second, false
	}
	w.clearTermination(c.Name)
	if err := a.rt.StartTask(a.ctx, id, w.logPath(c.Name)); err != nil {
		st.running = nil
		st.waiting = &core.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
		st.backoff = nextBackoff(st.backoff)
		st.retryAt = a.Now().Add(st.backoff)
		return st.backoff, false
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
	st.record = labels
	st.waiting, st.terminated = nil, nil
	st.running = &core.ContainerStateRunning{StartedAt: now}
	st.probes = probeState{}
	st.hookFailed = ""
	w.startPostStart(pod, c, st, id)
	st.ready = readyWithoutProbe(c, st)
	// The next exit is a new one, whatever its time says.
	st.exit = nil
	return startCheck, true
}

// oomKilled reports (once) whether the kernel OOM-killed container id.
func (w *podWorker) oomKilled(id string) bool {
	w.a.mu.Lock()
	defer w.a.mu.Unlock()
	ok := w.a.ooms[id]
	delete(w.a.ooms, id)
	return ok
}

type pullError struct{ reason, msg string }

func (e *pullError) Error() string { return e.msg }

// ensureImage returns the image for ref, pulling it per policy. An image
// already present is never pulled for IfNotPresent; for Always a failed
// pull falls back to the local copy, so a node on a dead link keeps
// starting its pods.
//
// A pull has no deadline: a large image on a slow link may take hours, a
// link that stalls is the runtime's to notice, and the caller cancels ctx
// when nothing wants the image any more. progress may be nil.
func (a *Agent) ensureImage(ctx context.Context, ref string, policy core.PullPolicy, progress func(core.PullProgress)) (core.ContainerImage, error) {
	name := core.NormalizeImage(ref)
	img, err := a.rt.Image(ctx, name)
	present := err == nil
	if present {
		a.imageSeen(name) // imported by hand since the last listing, perhaps
	}
	if err != nil && core.ErrorCode(err) != core.ENOTFOUND {
		return img, err
	}
	if present && policy != core.PullAlways {
		return img, nil
	}
	if !present && policy == core.PullNever {
		return img, &pullError{reason: "ErrImageNeverPull", msg: fmt.Sprintf("image %q is not present and imagePullPolicy is Never", ref)}
	}
	pulled, perr := a.rt.PullImage(ctx, name, progress)
	if perr == nil {
		a.imagesChanged()
		return pulled, nil
	}
	if present {
		a.Log.Warn("pull failed; using the local copy", "image", ref, "err", perr)
		return img, nil
	}
	return img, &pullError{reason: "ErrImagePull", msg: fmt.Sprintf("pull %q: %v", ref, core.ErrorMessage(perr))}
}

// recordStart writes a started container's labels (start time, restarts,
// pod address): what a restarted agent reads back when it adopts it.
func (w *podWorker) recordStart(id string, st *ctrState) {
	if st.record == nil {
		return
	}
	if err := w.a.rt.SetLabels(w.a.ctx, id, st.record); err != nil {
		w.a.Log.Warn("recording container start failed; retrying", "container", id, "err", err)
		return
	}
	st.record = nil
}
