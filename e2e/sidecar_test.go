package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// The sidecar writes a heartbeat into the shared emptyDir; its startup
// probe holds the main container back until the first one is there.
const sidecarManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: sc}
spec:
  replicas: 1
  selector: {matchLabels: {app: sc}}
  template:
    metadata: {labels: {app: sc}}
    spec:
      terminationGracePeriodSeconds: 10
      initContainers:
      - name: beat
        image: edge.local/demo:latest
        restartPolicy: Always
        command: ["/bin/sh", "-c", "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo $i > /shared/heartbeat; sleep 1; done"]
        startupProbe: {exec: {command: [test, -s, /shared/heartbeat]}, periodSeconds: 1, failureThreshold: 30}
        readinessProbe: {exec: {command: [test, -s, /shared/heartbeat]}, periodSeconds: 1}
        volumeMounts: [{name: shared, mountPath: /shared}]
      containers:
      - name: main
        image: edge.local/demo:latest
        command: ["/bin/sh", "-c", "if test -s /shared/heartbeat; then echo heartbeat at start; else echo no heartbeat at start; fi; until test -s /shared/heartbeat; do sleep 1; done; trap 'exit 0' TERM; while true; do sleep 1; done"]
        volumeMounts: [{name: shared, mountPath: /shared}]
      volumes:
      - {name: shared, emptyDir: {}}
`

// A sidecar init container starts before the main container and runs
// beside it, ready, in initContainerStatuses; killed, it is restarted
// while the main container runs on untouched.
func TestSidecar(t *testing.T) {
	needRoot(t)
	c := newCluster(t)
	c.apply(sidecarManifest)
	pod := c.runningPods(1, "app=sc")[0].Metadata.Name

	var p *core.Pod
	statuses := func(p *core.Pod) (beat, main core.ContainerStatus, err error) {
		if len(p.Status.InitContainerStatuses) != 1 || len(p.Status.ContainerStatuses) != 1 {
			return beat, main, fmt.Errorf("statuses: init %+v, containers %+v", p.Status.InitContainerStatuses, p.Status.ContainerStatuses)
		}
		return p.Status.InitContainerStatuses[0], p.Status.ContainerStatuses[0], nil
	}
	waitFor(t, 30*time.Second, "the sidecar running and ready beside main", func() error {
		var err error
		if p, err = c.podObject(pod); err != nil {
			return err
		}
		beat, main, err := statuses(p)
		if err != nil {
			return err
		}
		if beat.Name != "beat" || beat.State.Running == nil || !beat.Ready || beat.Started == nil || !*beat.Started {
			return fmt.Errorf("sidecar %+v", beat)
		}
		if main.State.Running == nil || !main.Ready || main.RestartCount != 0 {
			return fmt.Errorf("main %+v", main)
		}
		if cond := p.Status.Condition("Ready"); cond == nil || cond.Status != core.ConditionTrue {
			return fmt.Errorf("conditions %+v", p.Status.Conditions)
		}
		return nil
	})
	beat, main, _ := statuses(p)
	if out := c.mustEdgectl("get", "pods", "-l", "app=sc"); !strings.Contains(out, " 2/2 ") || !strings.Contains(out, "Running") {
		t.Fatalf("get pods, want READY 2/2 (sidecar counted):\n%s", out)
	}
	// main started after the sidecar's first heartbeat (its startup
	// probe), and sees the sidecar keep writing.
	waitFor(t, 30*time.Second, "main's log", func() error {
		if out, _, _ := c.edgectl("logs", pod); out != "heartbeat at start\n" {
			return fmt.Errorf("log %q", out)
		}
		return nil
	})
	first, err := c.execPod(pod, "cat /shared/heartbeat")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a new heartbeat", func() error {
		if now, err := c.execPod(pod, "cat /shared/heartbeat"); err != nil || now == first {
			return fmt.Errorf("heartbeat %q (%v)", now, err)
		}
		return nil
	})

	_, beatID, _ := strings.Cut(beat.ContainerID, "://")
	_, mainID, _ := strings.Cut(main.ContainerID, "://")
	mainPid := c.ctrd.tasks(t)[mainID]
	if beatID == "" || mainPid == 0 {
		t.Fatalf("sidecar id %q, main pid %d", beatID, mainPid)
	}
	if out, err := exec.Command("ctr", "-a", c.ctrd.socket, "-n", "edge", "tasks", "kill", beatID).CombinedOutput(); err != nil {
		t.Fatalf("ctr tasks kill: %v %s", err, out)
	}
	waitFor(t, 60*time.Second, "the sidecar restarted", func() error {
		p, err := c.podObject(pod)
		if err != nil {
			return err
		}
		beat, main, err := statuses(p)
		if err != nil {
			return err
		}
		if main.RestartCount != 0 || main.State.Running == nil {
			t.Fatalf("main disturbed by the sidecar's exit: %+v", main)
		}
		if beat.RestartCount != 1 || beat.State.Running == nil || !beat.Ready || beat.LastState.Terminated == nil {
			return fmt.Errorf("sidecar %+v", beat)
		}
		return nil
	})
	if pid := c.ctrd.tasks(t)[mainID]; pid != mainPid {
		t.Fatalf("main's process %d, was %d", pid, mainPid)
	}
	if out := c.mustEdgectl("get", "pods", "-l", "app=sc"); !strings.Contains(out, " 2/2 ") {
		t.Fatalf("get pods after the sidecar's restart:\n%s", out)
	}

	c.mustEdgectl("delete", "deployment", "sc")
	waitFor(t, 60*time.Second, "the pod gone", func() error {
		if n := len(c.podsJSON("app=sc")); n != 0 {
			return fmt.Errorf("%d pods", n)
		}
		if n := c.ctrd.containerCount(t); n != 0 {
			return fmt.Errorf("%d containers", n)
		}
		return nil
	})
}
