package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// chaosManifest is three one-replica deployments named after a round: an
// apply is all or nothing, so after a crash either all three exist or none.
const chaosManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: chaos-%[1]d-%[2]s, labels: {chaos: "yes"}}
spec:
  replicas: 1
  selector: {matchLabels: {app: chaos-%[1]d-%[2]s}}
  template:
    metadata: {labels: {app: chaos-%[1]d-%[2]s, chaos: "yes"}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: edge.local/demo:latest
        command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
        resources:
          limits: {memory: 16Mi, cpu: 100m}
          requests: {memory: 4Mi, cpu: 10m}
`

func chaosRound(round int) string {
	var docs []string
	for _, s := range []string{"a", "b", "c"} {
		docs = append(docs, fmt.Sprintf(chaosManifest, round, s))
	}
	return strings.Join(docs, "---\n")
}

// TestChaos kills and restarts the parts of a running cluster in bounded
// loops and checks that nothing is lost, duplicated or left behind.
func TestChaos(t *testing.T) {
	needRoot(t)
	c := newCluster(t)
	t.Run("MasterKilledMidApply", func(t *testing.T) { c.t = t; testKillMasterMidApply(t, c) })
	t.Run("AgentKilledDuringPodCreation", func(t *testing.T) { c.t = t; testKillAgentMidCreate(t, c) })
}

// kill -9 the master while an apply is in flight, ten times: an apply that
// was answered is never lost, an unanswered one is all or nothing, and every
// deployment ends with exactly one pod.
func testKillMasterMidApply(t *testing.T, c *cluster) {
	const rounds = 10
	answered := map[int]bool{}
	for round := 0; round < rounds; round++ {
		path := filepath.Join(c.dir, fmt.Sprintf("chaos-%d.yaml", round))
		os.WriteFile(path, []byte(chaosRound(round)), 0o644)
		cmd := exec.Command(filepath.Join(binDir, "edgectl"), "--config", c.config, "apply", "-f", path)
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		// Anywhere from before the request arrives to after it committed.
		time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
		c.master.cmd.Process.Signal(syscall.SIGKILL)
		<-c.master.done
		answered[round] = <-done == nil
		c.startMaster()
	}
	c.waitNodeReady(60 * time.Second)
	objs, err := c.client.List(context.Background(), core.KindDeployment, "default", "chaos=yes")
	if err != nil {
		t.Fatal(err)
	}
	perRound := map[int]int{}
	for _, o := range objs {
		var round int
		var suffix string
		fmt.Sscanf(strings.ReplaceAll(o.GetMeta().Name, "-", " "), "chaos %d %s", &round, &suffix)
		perRound[round]++
	}
	want := 0
	for round := 0; round < rounds; round++ {
		switch n := perRound[round]; {
		case n != 0 && n != 3:
			t.Fatalf("round %d: %d of its 3 deployments exist: an apply was half-applied", round, n)
		case answered[round] && n != 3:
			t.Fatalf("round %d: edgectl was told the apply succeeded, but its deployments are gone", round)
		}
		want += perRound[round]
	}
	t.Logf("%d of %d applies were answered before the kill; %d deployments exist", len(filter(answered)), rounds, want)
	// Every deployment that exists ends with exactly one running pod: no
	// pod lost, none duplicated by a master killed mid-pass.
	c.runningPods(want, "chaos=yes")
	waitFor(t, 30*time.Second, "one container per pod", func() error {
		if n := len(c.ctrd.tasks(t)); n != want {
			return fmt.Errorf("%d tasks for %d pods", n, want)
		}
		return nil
	})
	for _, o := range objs {
		c.edgectl("delete", "deployment", o.GetMeta().Name)
	}
	waitFor(t, 60*time.Second, "chaos deployments gone", func() error {
		if n := c.ctrd.containerCount(t); n != 0 {
			return fmt.Errorf("%d containers", n)
		}
		return nil
	})
}

func filter(m map[int]bool) []int {
	var out []int
	for k, v := range m {
		if v {
			out = append(out, k)
		}
	}
	return out
}

// kill -9 the agent while it creates a deployment's containers, three
// times: after it restarts, every pod has exactly one container and no
// container belongs to no pod.
func testKillAgentMidCreate(t *testing.T, c *cluster) {
	for round, delay := range []time.Duration{0, 150 * time.Millisecond, 400 * time.Millisecond} {
		c.apply(fmt.Sprintf(spineManifest, 5))
		time.Sleep(delay)
		c.agent.cmd.Process.Signal(syscall.SIGKILL)
		<-c.agent.done
		c.startAgent()
		pods := c.runningPods(5, "app=spine")
		want := map[string]bool{}
		for _, p := range pods {
			want[strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")] = true
		}
		waitFor(t, 30*time.Second, "exactly the pods' containers", func() error {
			ids := c.ctrd.containerIDs(t)
			if len(ids) != 5 {
				return fmt.Errorf("round %d: %d containers for 5 pods: %v", round, len(ids), ids)
			}
			for _, id := range ids {
				if !want[id] {
					return fmt.Errorf("round %d: container %s belongs to no running pod", round, id)
				}
			}
			return nil
		})
		c.mustEdgectl("delete", "deployment", "spine")
		waitFor(t, 60*time.Second, "spine to go", func() error {
			if n := c.ctrd.containerCount(t); n != 0 {
				return fmt.Errorf("%d containers", n)
			}
			return nil
		})
	}
}

// flappyManifest's containers fail three times, then run: each pod goes
// through seven status changes in about eight seconds.
const flappyManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: flappy}
spec:
  replicas: 3
  selector: {matchLabels: {app: flappy}}
  template:
    metadata: {labels: {app: flappy}}
    spec:
      terminationGracePeriodSeconds: 1
      volumes: [{name: v, emptyDir: {}}]
      containers:
      - name: main
        image: edge.local/demo:latest
        command: ["/bin/sh", "-c", "n=$(cat /v/n 2>/dev/null || echo 0); echo $((n+1)) > /v/n; if [ $n -ge 3 ]; then trap 'exit 0' TERM; while true; do sleep 1; done; fi; exit 1"]
        volumeMounts: [{name: v, mountPath: /v}]
        resources:
          limits: {memory: 16Mi, cpu: 100m}
          requests: {memory: 4Mi, cpu: 10m}
`

// TestChaosBroker restarts an external broker (mosquitto) twice while pods
// change status: once the pods settle, the master knows every restart.
func TestChaosBroker(t *testing.T) {
	needRoot(t)
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port)), 0o644)
	startBroker := func() *proc {
		p := start(t, dir, bin, "-c", conf)
		waitFor(t, 10*time.Second, "mosquitto", func() error {
			return exec.Command("bash", "-c", fmt.Sprintf("echo > /dev/tcp/127.0.0.1/%d", port)).Run()
		})
		return p
	}
	broker := startBroker()
	c := newCluster(t, "--mqtt-url", fmt.Sprintf("tcp://127.0.0.1:%d", port))
	c.apply(flappyManifest)
	for i := 0; i < 2; i++ {
		time.Sleep(1500 * time.Millisecond) // let some status changes happen with the broker up
		broker.stop(syscall.SIGKILL, time.Second)
		time.Sleep(1500 * time.Millisecond) // and some with it down
		broker = startBroker()
	}
	pods := c.runningPods(3, "app=flappy")
	waitFor(t, 60*time.Second, "every restart known to the master", func() error {
		for _, p := range c.podsJSON("app=flappy") {
			if n := p.Status.ContainerStatuses[0].RestartCount; n != 3 {
				return fmt.Errorf("pod %s: the master knows of %d restarts, the container made 3", p.Metadata.Name, n)
			}
		}
		return nil
	})
	if len(pods) != 3 {
		t.Fatalf("%d pods", len(pods))
	}
	c.mustEdgectl("delete", "deployment", "flappy")
	waitFor(t, 60*time.Second, "flappy to go", func() error {
		if n := c.ctrd.containerCount(t); n != 0 {
			return fmt.Errorf("%d containers", n)
		}
		return nil
	})
}
