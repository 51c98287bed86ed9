package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

const lifecycleManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: lc}
spec:
  replicas: 1
  selector: {matchLabels: {app: lc}}
  template:
    metadata: {labels: {app: lc}}
    spec:
      terminationGracePeriodSeconds: 10
      initContainers:
      - name: init-a
        image: edge.local/demo:latest
        command: ["/bin/sh", "-c", "echo a >> /work/order"]
        volumeMounts: [{name: work, mountPath: /work}]
      - name: init-b
        image: edge.local/demo:latest
        command: ["/bin/sh", "-c", "echo b >> /work/order; echo b done"]
        volumeMounts: [{name: work, mountPath: /work}]
      containers:
      - name: main
        image: edge.local/demo:latest
        command: ["/bin/sh", "-c", "cat /work/order; trap 'exit 0' TERM; while true; do sleep 1; done"]
        volumeMounts:
        - {name: work, mountPath: /work}
        - {name: hooks, mountPath: /hooks}
        lifecycle:
          preStop:
            exec: {command: ["/bin/sh", "-c", "echo stopping >> /hooks/prestop"]}
      volumes:
      - {name: work, emptyDir: {}}
      - {name: hooks, hostPath: {path: HOOKDIR, type: Directory}}
---
apiVersion: v1
kind: Pod
metadata: {name: lastwords}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: edge.local/demo:latest
    command: ["/bin/sh", "-c", "echo 'database unreachable' > /dev/termination-log; exit 3"]
`

// podObject reads one pod through `edgectl get pod NAME -o json`.
func (c *cluster) podObject(name string) (*core.Pod, error) {
	out, errOut, err := c.edgectl("get", "pod", name, "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, errOut)
	}
	var p core.Pod
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	return &p, nil
}

// Init containers run in order, once (not again after an agent restart),
// before the main container, sharing its emptyDir; a preStop hook runs on
// delete; a container's termination message is in its status.
func TestLifecycle(t *testing.T) {
	needRoot(t)
	c := newCluster(t)
	hooks := t.TempDir()
	c.apply(strings.Replace(lifecycleManifest, "HOOKDIR", hooks, 1))
	pod := c.runningPods(1, "app=lc")[0].Metadata.Name

	check := func(when string) {
		t.Helper()
		if out, err := c.execPod(pod, "cat /work/order"); err != nil || out != "a\nb" {
			t.Fatalf("%s: /work/order %q (%v), want a then b, once each", when, out, err)
		}
	}
	check("running")
	waitFor(t, 30*time.Second, "the main container's log", func() error {
		if out, _, _ := c.edgectl("logs", pod); out != "a\nb\n" {
			return fmt.Errorf("log %q", out)
		}
		return nil
	})
	p, err := c.podObject(pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Status.InitContainerStatuses) != 2 {
		t.Fatalf("init container statuses %+v", p.Status.InitContainerStatuses)
	}
	for _, cs := range p.Status.InitContainerStatuses {
		if term := cs.State.Terminated; term == nil || term.ExitCode != 0 || term.Reason != "Completed" || cs.RestartCount != 0 {
			t.Fatalf("init container %s: %+v", cs.Name, cs)
		}
	}
	if cond := p.Status.Condition("Initialized"); cond == nil || cond.Status != core.ConditionTrue {
		t.Fatalf("conditions %+v", p.Status.Conditions)
	}
	if out, errOut, err := c.edgectl("logs", pod, "-c", "init-b"); err != nil || out != "b done\n" {
		t.Errorf("init-b's log %q (%v %s)", out, err, errOut)
	}

	// A restarted agent adopts the pod without running its init
	// containers again.
	c.agent.stop(syscall.SIGKILL, 5*time.Second)
	c.startAgent()
	c.waitNodeReady(30 * time.Second)
	c.runningPods(1, "app=lc")
	waitFor(t, 30*time.Second, "the restarted agent's report", func() error {
		p, err := c.podObject(pod)
		if err != nil {
			return err
		}
		if len(p.Status.InitContainerStatuses) != 2 || p.Status.InitContainerStatuses[1].State.Terminated == nil {
			return fmt.Errorf("init statuses %+v", p.Status.InitContainerStatuses)
		}
		return nil
	})
	check("after an agent restart")

	// The termination message of a container that exited with 3.
	waitFor(t, 60*time.Second, "lastwords to fail with its message", func() error {
		p, err := c.podObject("lastwords")
		if err != nil {
			return err
		}
		if p.Status.Phase != core.PodFailed || len(p.Status.ContainerStatuses) != 1 {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		term := p.Status.ContainerStatuses[0].State.Terminated
		if term == nil || term.ExitCode != 3 || term.Message != "database unreachable\n" {
			return fmt.Errorf("terminated %+v", term)
		}
		return nil
	})

	// preStop runs on delete, before the container stops.
	c.mustEdgectl("delete", "deployment", "lc")
	waitFor(t, 60*time.Second, "the pod gone", func() error {
		if n := len(c.podsJSON("app=lc")); n != 0 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
	if b, err := os.ReadFile(filepath.Join(hooks, "prestop")); err != nil || string(b) != "stopping\n" {
		t.Fatalf("preStop hook's file: %q %v", b, err)
	}
	c.mustEdgectl("delete", "pod", "lastwords")
	waitFor(t, 30*time.Second, "lastwords gone", func() error {
		if _, err := c.client.Get(context.Background(), core.Key{Kind: core.KindPod, Namespace: "default", Name: "lastwords"}); core.ErrorCode(err) != core.ENOTFOUND {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
}
