package edgeagent

import (
	"errors"
	"slices"
	"time"

	"github.com/edgeorch/edge/core"
)

// Sidecars (KEP-753, Kubernetes 1.33): init containers with restartPolicy
// Always. One starts in its place in the init sequence and the next init
// container, or the containers, start once it has started (running, its
// startup probe and postStart hook done). It then runs for the pod's life,
// restarted with the usual back-off whenever it exits, whatever the pod's
// restartPolicy; its exits neither fail the pod nor complete it. When a
// Never or OnFailure pod's containers are all done the sidecars are
// stopped, in reverse order, and the pod's phase is the containers'. On
// delete they stop after the containers (teardown).

// sidecarStarted reports whether sidecar c has started: it runs, its
// startup probe succeeded and its postStart hook is done (and did not
// fail).
func sidecarStarted(c *core.Container, st *ctrState) bool {
	return st.running != nil && startedUp(c, st) && st.hook == nil && st.hookFailed == ""
}

// sidecarIndex returns the place of sidecar name among pod's init
// containers, or -1 if it is not one.
func sidecarIndex(pod *core.Pod, name string) int {
	for i := range pod.Spec.InitContainers {
		if c := &pod.Spec.InitContainers[i]; c.Name == name && c.IsSidecar() {
			return i
		}
	}
	return -1
}

// syncSidecar moves a sidecar a step as a container: (re)start, postStart
// hook, probes.
func (w *podWorker) syncSidecar(pod *core.Pod, c *core.Container, st *ctrState, netReady func() error) time.Duration {
	next := w.syncContainer(pod, c, st, netReady)
	if w.hookPending(c, st, containerID(pod, c.Name)) {
		return next // its probes wait for it; it wakes the worker when done
	}
	if d := w.probe(pod, c, st); d > 0 {
		next = min(next, d)
	}
	return next
}

// syncSidecars keeps an initialized pod's sidecars running, or, once its
// containers are done for good, lets them be (retireSidecars stops them).
func (w *podWorker) syncSidecars(pod *core.Pod, netReady func() error) time.Duration {
	next := w.a.Resync
	done := w.workDone(pod)
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if !c.IsSidecar() {
			continue
		}
		st := w.state(c.Name)
		st.init, st.sidecar, st.passed = true, true, true
		if done {
			// Not restarted any more. One still running is only observed
			// (its exit recorded); one that is gone is not made again.
			st.retired = true
			if st.terminated != nil {
				continue
			}
			if _, err := w.a.rt.Container(w.a.ctx, containerID(pod, c.Name)); core.ErrorCode(err) == core.ENOTFOUND {
				st.running, st.waiting, st.ready = nil, nil, false
				st.terminated = &core.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown",
					Message: "the sidecar's container is gone"}
				continue
			}
		}
		next = min(next, w.syncSidecar(pod, c, st, netReady))
	}
	return next
}

// workDone reports whether the pod's containers are all done and will not
// run again (a Never or OnFailure pod: a job), so that its sidecars go.
func (w *podWorker) workDone(pod *core.Pod) bool {
	if pod.Spec.RestartPolicy == core.RestartAlways || len(pod.Spec.Containers) == 0 {
		return false
	}
	for _, c := range pod.Spec.Containers {
		if w.state(c.Name).terminated == nil { // set only once it will not restart
			return false
		}
	}
	return true
}

// retireSidecars stops the running sidecars of a pod whose containers are
// done, in reverse order, each after its preStop hook, sharing the pod's
// grace period (at least 2s each, as the kubelet). Their tasks are kept so
// that the next sync records how they ended. It reports whether there was
// anything to stop.
func (w *podWorker) retireSidecars(pod *core.Pod) bool {
	a := w.a
	grace := time.Duration(pod.Spec.GracePeriod()) * time.Second
	start := a.Now()
	stopped := false
	for i := len(pod.Spec.InitContainers) - 1; i >= 0; i-- {
		c := &pod.Spec.InitContainers[i]
		st := w.state(c.Name)
		if !c.IsSidecar() || st.running == nil {
			continue
		}
		st.retired = true
		st.cancelHook()
		id := containerID(pod, c.Name)
		w.event(c.Name, core.EventNormal, "Killing", "Stopping sidecar %s: the pod's containers are done", c.Name)
		stopped = true
		left := remainingGrace(grace, a.Now().Sub(start))
		left = w.preStop(pod, c, id, left)
		if err := a.signalStop(a.ctx, id, left); errors.Is(err, errClosing) {
			return stopped
		}
	}
	return stopped
}

// remainingGrace is what is left of grace after elapsed, at least the
// kubelet's 2s minimum unless grace was 0 (stop at once).
func remainingGrace(grace, elapsed time.Duration) time.Duration {
	if grace <= 0 {
		return 0
	}
	return max(grace-elapsed, preStopMinimum)
}

// stopOrder returns, for each of a pod's runtime containers, the indexes
// of those it must outlive on delete (the kubelet's termination ordering,
// 1.29+): a sidecar outlives the containers, plain init containers and
// every sidecar declared after it; the others outlive nothing. pod may be
// nil (a pod the agent does not know): the containers' labels tell.
func stopOrder(pod *core.Pod, ctrs []*core.ContainerInfo) [][]int {
	rank := make([]int, len(ctrs)) // -1: not a sidecar
	for i, c := range ctrs {
		rank[i] = -1
		name := c.Labels[labelContainer]
		if pod != nil {
			rank[i] = sidecarIndex(pod, name)
		} else if v, ok := c.Labels[labelSidecar]; ok {
			rank[i] = int(atoi32(v))
		}
	}
	after := make([][]int, len(ctrs))
	for i := range ctrs {
		if rank[i] < 0 {
			continue
		}
		for j := range ctrs {
			if rank[j] < 0 || rank[j] > rank[i] {
				after[i] = append(after[i], j)
			}
		}
		slices.Sort(after[i])
	}
	return after
}
