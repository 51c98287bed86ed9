package edgeagent

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/logrotate"
)

// A container's lifecycle around its process: init containers run to
// completion before the containers (sidecars, sidecar.go, only have to
// start), postStart and preStop hooks, and the termination message it
// leaves behind.

// restartPolicy is the policy a container restarts by: an init container
// of an Always pod restarts only when it fails (it is meant to finish); a
// sidecar always, whatever the pod's, until its pod's work is done.
func restartPolicy(pod *core.Pod, st *ctrState) core.RestartPolicy {
	switch {
	case st.sidecar && st.retired:
		return core.RestartNever
	case st.sidecar:
		return core.RestartAlways
	case st.init && pod.Spec.RestartPolicy == core.RestartAlways:
		return core.RestartOnFailure
	}
	return pod.Spec.RestartPolicy
}

// completed reports whether an init container finished successfully.
func completed(st *ctrState) bool { return st.terminated != nil && st.terminated.ExitCode == 0 }

// syncInit runs the pod's init containers, one after the other, each to
// completion, and reports whether they all completed. A sidecar among them
// only has to start for the next one to; it is kept running meanwhile
// (and after, by syncSidecars). Once a container of the pod exists they
// did (it is only created after them): an agent that restarts then only
// reads back how they ended, and never runs them again.
func (w *podWorker) syncInit(pod *core.Pod, netReady func() error) (initialized bool, next time.Duration) {
	next = w.a.Resync
	if w.initDone || len(pod.Spec.InitContainers) == 0 {
		return true, next
	}
	if !w.initChecked {
		w.initChecked = true
		for _, c := range pod.Spec.Containers {
			if _, err := w.a.rt.Container(w.a.ctx, containerID(pod, c.Name)); err == nil {
				w.observeInit(pod)
				w.initDone = true
				return true, next
			}
		}
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		st := w.state(c.Name)
		st.init, st.sidecar = true, c.IsSidecar()
		if !st.sidecar && completed(st) {
			continue
		}
		// A sidecar started above is recorded before this one's create,
		// as the containers' starts are (sync).
		for _, prev := range pod.Spec.InitContainers[:i] {
			w.recordStart(containerID(pod, prev.Name), w.state(prev.Name))
		}
		if st.sidecar {
			next = min(next, w.syncSidecar(pod, c, st, netReady))
			if !st.passed && !sidecarStarted(c, st) {
				return false, next // the next one waits for it to start
			}
			st.passed = true // later exits restart it, holding nothing back
			continue
		}
		d := w.syncContainer(pod, c, st, netReady)
		if completed(st) {
			w.event(c.Name, core.EventNormal, "Completed", "Init container %s completed", c.Name)
			continue // the next one starts in this pass
		}
		return false, min(d, next)
	}
	w.initDone = true
	return true, next
}

// observeInit reads back how the init containers of an initialized pod
// ended, for its status; one whose container is gone completed. Sidecars
// are left to syncSidecars, which adopts them running.
func (w *podWorker) observeInit(pod *core.Pod) {
	a := w.a
	for _, c := range pod.Spec.InitContainers {
		st := w.state(c.Name)
		st.init = true
		if c.IsSidecar() {
			st.sidecar, st.passed = true, true
			continue
		}
		st.terminated = &core.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}
		id := containerID(pod, c.Name)
		info, err := a.rt.Container(a.ctx, id)
		if err != nil {
			continue
		}
		st.created = info.CreatedAt
		st.restarts = atoi32(info.Labels[labelRestarts])
		if img, err := a.rt.Image(a.ctx, info.Image); err == nil {
			st.imageID = img.ID
		}
		st.terminated.StartedAt = parseTime(info.Labels[labelStartedAt])
		if task, err := a.rt.Task(a.ctx, id); err == nil && task.State == core.TaskStopped && !task.ExitedAt.IsZero() {
			st.terminated.FinishedAt = core.NewTime(task.ExitedAt)
		}
	}
}

// hookRun is a postStart hook running in the background: the worker must
// not wait for it (a hook may poll for minutes until its server answers).
type hookRun struct {
	cancel context.CancelFunc
	done   bool // under the worker's mu
	err    error
}

// startPostStart runs c's postStart hook, if it has one, after its start.
func (w *podWorker) startPostStart(pod *core.Pod, c *core.Container, st *ctrState, id string) {
	if c.Lifecycle == nil || c.Lifecycle.PostStart == nil {
		return
	}
	h := c.Lifecycle.PostStart
	ctx, cancel := context.WithCancel(w.a.ctx)
	run := &hookRun{cancel: cancel}
	st.hook = run
	w.a.wg.Add(1)
	go func() {
		defer w.a.wg.Done()
		err := w.runHandler(ctx, pod, c, id, h)
		w.mu.Lock()
		run.done, run.err = true, err
		w.mu.Unlock()
		w.kickNow()
	}()
}

// hookPending reports whether c's postStart hook still runs; one that
// ended is acted on: a failure kills the container, which then restarts
// per policy, with the hook's error as its termination message.
func (w *podWorker) hookPending(c *core.Container, st *ctrState, id string) bool {
	run := st.hook
	if run == nil {
		return false
	}
	w.mu.Lock()
	done, err := run.done, run.err
	w.mu.Unlock()
	if !done {
		return true
	}
	run.cancel()
	st.hook = nil
	if err != nil && st.running != nil {
		w.a.Log.Info("postStart hook failed; killing the container", "pod", w.namespace+"/"+w.name, "container", c.Name, "err", err)
		w.event(c.Name, core.EventWarning, "FailedPostStartHook", "PostStartHook failed: %v", err)
		st.hookFailed = "FailedPostStartHook: " + err.Error()
		w.a.rt.Signal(w.a.ctx, id, syscall.SIGKILL)
		return false
	}
	if st.running != nil && readyWithoutProbe(c, st) {
		st.ready = true
	}
	return false
}

// cancelHook stops a postStart hook still running (its container exited,
// or the pod goes).
func (st *ctrState) cancelHook() {
	if st.hook != nil {
		st.hook.cancel()
		st.hook = nil
	}
}

// runHandler runs a hook's action in container id of pod: exec in the
// container, an HTTP GET or a connection to the pod, or a sleep.
func (w *podWorker) runHandler(ctx context.Context, pod *core.Pod, c *core.Container, id string, h *core.LifecycleHandler) error {
	if h.Sleep != nil {
		t, stop := w.a.timer(time.Duration(h.Sleep.Seconds) * time.Second)
		defer stop()
		select {
		case <-t:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return w.action(ctx, pod, c, id, h.Exec, h.HTTPGet, h.TCPSocket)
}

// preStopMinimum is the least time a container gets between SIGTERM and
// SIGKILL after its preStop hook, however long that took (the kubelet's
// minimum grace period).
const preStopMinimum = 2 * time.Second

// preStop runs container ctr's preStop hook before the pod's containers are
// stopped, within grace, and returns the grace left for SIGTERM to work.
func (w *podWorker) preStop(pod *core.Pod, ctr *core.Container, id string, grace time.Duration) time.Duration {
	a := w.a
	if ctr.Lifecycle == nil || ctr.Lifecycle.PreStop == nil || grace <= 0 {
		return grace
	}
	if st, err := a.rt.Task(a.ctx, id); err != nil || st.State != core.TaskRunning {
		return grace
	}
	start := a.Now()
	ctx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.runHandler(ctx, pod, ctr, id, ctr.Lifecycle.PreStop) }()
	t, stop := a.timer(grace)
	defer stop()
	select {
	case err := <-done:
		if err != nil {
			w.event(ctr.Name, core.EventWarning, "FailedPreStopHook", "PreStopHook failed: %v", err)
		}
	case <-t:
		cancel()
		<-done
		w.event(ctr.Name, core.EventWarning, "FailedPreStopHook", "PreStopHook did not finish within the grace period (%s)", grace)
	case <-a.ctx.Done():
		cancel()
		<-done
		return grace // the agent stops: the next one stops the container again
	}
	return max(grace-a.Now().Sub(start), preStopMinimum)
}

// findContainer returns pod's container (or init container) named name.
func findContainer(pod *core.Pod, name string) *core.Container {
	var found *core.Container
	pod.Spec.EachContainer(func(c *core.Container, _ bool) {
		if c.Name == name {
			found = c
		}
	})
	return found
}

// Termination messages: the container writes its last words to a file of
// the pod's run directory, bind-mounted at its terminationMessagePath.
const (
	maxMessage     = 4096     // bytes read from the file, as the kubelet
	maxPodMessages = 12 << 10 // for all of a pod's containers: a node reports many pods
	maxLogMessage  = 2048     // bytes of the log's tail for FallbackToLogsOnError
	maxLogMsgLines = 80
)

func (w *podWorker) terminationPath(container string) string {
	return filepath.Join(w.a.RunDir, "pods", w.uid, "termination", container)
}

// terminationMount makes c's (empty) termination message file and returns
// its mount. The container may run as any user: the file is 0666.
func (w *podWorker) terminationMount(c *core.Container) (core.Mount, error) {
	p := w.terminationPath(c.Name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return core.Mount{}, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o666)
	if err != nil {
		return core.Mount{}, err
	}
	f.Close()
	if err := os.Chmod(p, 0o666); err != nil { // past the umask
		return core.Mount{}, err
	}
	return core.Mount{Source: p, Destination: c.MessagePath()}, nil
}

// clearTermination empties c's termination message before a (re)start, so
// that an exit reports what this run wrote. The file is truncated, not
// replaced: the container's bind mount holds its inode. It is made again
// if it is gone: RunDir does not survive a reboot, and an adopted
// container's spec still binds it (its task would not start).
func (w *podWorker) clearTermination(name string) {
	p := w.terminationPath(name)
	err := os.Truncate(p, 0)
	if os.IsNotExist(err) {
		_, err = w.terminationMount(&core.Container{Name: name})
	}
	if err != nil {
		w.a.Log.Warn("clearing a termination message failed", "pod", w.namespace+"/"+w.name, "container", name, "err", err)
	}
}

// terminationMessage returns what c left as its termination message: the
// file's first 4096 bytes or, with FallbackToLogsOnError, when the file is
// empty and the container failed, the last 80 lines of its log (at most
// 2048 bytes). As with the kubelet, a pod's containers share 12 KiB.
func (w *podWorker) terminationMessage(pod *core.Pod, c *core.Container, exitCode int32) string {
	limit := maxMessage
	if n := len(pod.Spec.Containers) + len(pod.Spec.InitContainers); n > 0 {
		limit = min(limit, maxPodMessages/n)
	}
	msg := readHead(w.terminationPath(c.Name), int64(limit))
	if msg == "" && exitCode != 0 && c.TerminationMessagePolicy == core.TerminationMessageFallback {
		msg = logTail(w.logPath(c.Name), maxLogMsgLines, min(limit, maxLogMessage))
	}
	return msg
}

func readHead(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return string(b)
}

// logTail returns the last lines of the log at path (across its rotated
// files), at most limit bytes.
func logTail(path string, lines, limit int) string {
	files, err := logrotate.OpenFiles(path)
	if err != nil || len(files) == 0 {
		return ""
	}
	defer logrotate.CloseAll(files)
	m, err := logrotate.NewMultiFile(files)
	if err != nil {
		return ""
	}
	off := max(m.Size-int64(limit), 0)
	b := make([]byte, m.Size-off)
	if _, err := m.ReadAt(b, off); err != nil && err != io.EOF {
		return ""
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	if n := bytes.Count(b, []byte("\n")); n >= lines {
		for range n - lines + 1 {
			b = b[bytes.IndexByte(b, '\n')+1:]
		}
	}
	return string(b)
}

// propagation maps a mount's mountPropagation to the bind option.
func propagation(mode string) string {
	switch mode {
	case core.PropagationHostToContainer:
		return "rslave"
	case core.PropagationBidirectional:
		return "rshared"
	}
	return "" // rprivate, the default
}
