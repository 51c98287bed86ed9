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

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/edgeorch/edge/internal/ctrd"
)

// testFleet is a Fleet with the test's helpers.
type testFleet struct {
	*Fleet
	t       testing.TB
	master  *Host
	gw      *Host
	workers []*Host
	token   string
}

// newTestFleet builds a LAN with a master, n workers that find it by mDNS,
// and a gateway.
func newTestFleet(t testing.TB, n int, masterArgs ...string) *testFleet {
	t.Helper()
	prefix := fmt.Sprintf("et%d", os.Getpid()%100000)
	f, err := NewFleet(prefix, t.TempDir(), binDir)
	if err != nil {
		t.Fatal(err)
	}
	tf := &testFleet{Fleet: f, t: t}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range f.Procs {
				if strings.Contains(p.Name, "edge") {
					t.Logf("--- %s (tail) ---\n%s", p.Name, p.Tail(3000))
				}
			}
		}
		if err := f.Destroy(); err != nil {
			t.Errorf("destroying the fleet: %v", err)
		}
	})
	must := func(h *Host, err error) *Host {
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	tf.master = must(f.AddHost("master"))
	for i := 1; i <= n; i++ {
		tf.workers = append(tf.workers, must(f.AddHost(fmt.Sprintf("w%d", i))))
	}
	tf.gw = must(f.AddHost("gw"))
	if _, err := f.StartMaster(tf.master, masterArgs...); err != nil {
		t.Fatal(err)
	}
	if tf.token, err = f.JoinToken(tf.master); err != nil {
		t.Fatal(err)
	}
	for _, w := range tf.workers {
		tf.startWorker(w)
	}
	for _, w := range tf.workers {
		tf.waitReady(w.Name)
	}
	return tf
}

func (tf *testFleet) startWorker(w *Host) {
	tf.t.Helper()
	if err := tf.StartContainerd(w); err != nil {
		tf.t.Fatal(err)
	}
	if _, err := tf.StartAgent(w, tf.token, ""); err != nil { // found by mDNS
		tf.t.Fatal(err)
	}
}

func (tf *testFleet) edgectl(args ...string) (string, string, error) {
	return tf.Edgectl(tf.gw, tf.master, args...)
}

func (tf *testFleet) mustEdgectl(args ...string) string {
	tf.t.Helper()
	out, errOut, err := tf.edgectl(args...)
	if err != nil {
		tf.t.Fatalf("edgectl %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

type nodeJSON struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Unschedulable bool `json:"unschedulable"`
	} `json:"spec"`
	Status struct {
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
		NodeInfo struct {
			Architecture  string `json:"architecture"`
			KernelVersion string `json:"kernelVersion"`
		} `json:"nodeInfo"`
	} `json:"status"`
}

func (tf *testFleet) nodes() map[string]nodeJSON {
	tf.t.Helper()
	out := tf.mustEdgectl("get", "nodes", "-o", "json")
	var list struct {
		Items []nodeJSON `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		tf.t.Fatalf("get nodes -o json: %v\n%s", err, out)
	}
	m := map[string]nodeJSON{}
	for _, n := range list.Items {
		m[n.Metadata.Name] = n
	}
	return m
}

func ready(n nodeJSON) string {
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status
		}
	}
	return ""
}

func (tf *testFleet) waitReady(node string) {
	tf.t.Helper()
	waitFor(tf.t, 60*time.Second, "node "+node+" Ready", func() error {
		n, ok := tf.nodes()[node]
		if !ok {
			return fmt.Errorf("not registered")
		}
		if r := ready(n); r != "True" {
			return fmt.Errorf("Ready=%s", r)
		}
		return nil
	})
}

func (tf *testFleet) pods(selector string) []podJSON {
	tf.t.Helper()
	args := []string{"get", "pods", "-o", "json"}
	if selector != "" {
		args = append(args, "-l", selector)
	}
	out := tf.mustEdgectl(args...)
	var list struct {
		Items []podJSON `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		tf.t.Fatalf("get pods -o json: %v\n%s", err, out)
	}
	return list.Items
}

// placement counts Running, ready, not terminating pods per node.
func placement(pods []podJSON) map[string]int {
	m := map[string]int{}
	for _, p := range pods {
		if p.Metadata.DeletionTimestamp == "" && p.Status.Phase == "Running" && len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].Ready {
			m[p.Spec.NodeName]++
		}
	}
	return m
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func (tf *testFleet) apply(manifest string) {
	tf.t.Helper()
	path := fmt.Sprintf("%s/m%d.yaml", tf.Dir, time.Now().UnixNano())
	os.WriteFile(path, []byte(manifest), 0o644)
	tf.mustEdgectl("apply", "-f", path)
}

const fleetWeb = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: %s
        command: ["/bin/sh", "-c", "trap 'exit 0' TERM; echo up; while true; do sleep 1; done"]
        resources:
          requests: {cpu: 50m, memory: 16Mi}
          limits: {memory: 32Mi, cpu: 250m}
`

const fleetDS = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: collector}
spec:
  selector: {matchLabels: {app: collector}}
  template:
    metadata: {labels: {app: collector}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: edge.local/demo:latest
        command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
        resources: {limits: {memory: 16Mi, cpu: 50m}}
`

// waitPlacement waits until the Running web pods are placed as want says
// (nil: any placement) with total n, and no web pod is terminating.
func (tf *testFleet) waitPlacement(what string, timeout time.Duration, n int, ok func(map[string]int) bool) map[string]int {
	tf.t.Helper()
	var got map[string]int
	waitFor(tf.t, timeout, what, func() error {
		pods := tf.pods("app=web")
		got = placement(pods)
		if total(got) != n || (ok != nil && !ok(got)) {
			return fmt.Errorf("placement %v", got)
		}
		return nil
	})
	return got
}

// settled waits until exactly n web pods exist: none terminating, all Running.
func (tf *testFleet) settled(n int) {
	tf.t.Helper()
	waitFor(tf.t, 90*time.Second, fmt.Sprintf("exactly %d web pods, none terminating", n), func() error {
		pods := tf.pods("app=web")
		if len(pods) != n || total(placement(pods)) != n {
			names := []string{}
			for _, p := range pods {
				names = append(names, fmt.Sprintf("%s@%s(%s,del=%v)", p.Metadata.Name, p.Spec.NodeName, p.Status.Phase, p.Metadata.DeletionTimestamp != ""))
			}
			return fmt.Errorf("%d pods: %v", len(pods), names)
		}
		return nil
	})
}

// webContainers counts web containers in a worker's containerd.
func (tf *testFleet) containers(h *Host, prefix string) int {
	tf.t.Helper()
	c, err := dialContainerd(h.Socket, 5*time.Second)
	if err != nil {
		tf.t.Fatal(err)
	}
	defer c.Close()
	ctrs, err := c.Containers(namespaces.WithNamespace(context.Background(), "edge"))
	if err != nil {
		tf.t.Fatal(err)
	}
	n := 0
	for _, ctr := range ctrs {
		if strings.HasPrefix(ctr.ID(), prefix) {
			n++
		}
	}
	return n
}

// tasks returns the running tasks of containers whose id starts with prefix.
func (tf *testFleet) tasks(h *Host, prefix string) map[string]uint32 {
	tf.t.Helper()
	c, err := dialContainerd(h.Socket, 5*time.Second)
	if err != nil {
		tf.t.Fatal(err)
	}
	defer c.Close()
	ctx := namespaces.WithNamespace(context.Background(), "edge")
	ctrs, err := c.Containers(ctx)
	if err != nil {
		tf.t.Fatal(err)
	}
	out := map[string]uint32{}
	for _, ctr := range ctrs {
		if !strings.HasPrefix(ctr.ID(), prefix) {
			continue
		}
		if task, err := ctr.Task(ctx, nil); err == nil {
			if st, err := task.Status(ctx); err == nil && st.Status == "running" {
				out[ctr.ID()] = task.Pid()
			}
		}
	}
	return out
}

func TestFleet(t *testing.T) {
	needRoot(t)
	tf := newTestFleet(t, 3)
	w1, w2, w3 := tf.workers[0], tf.workers[1], tf.workers[2]
	var w4 *Host
	t.Run("Discovery", func(t *testing.T) {
		tf.t = t
		out := tf.mustEdgectl("discover", "--wait", "2s")
		if !strings.Contains(out, "https://"+tf.master.IP+":7443") {
			t.Fatalf("edgectl discover from the gateway:\n%s", out)
		}
		for _, w := range tf.workers {
			n := tf.nodes()[w.Name]
			if n.Metadata.Labels["kubernetes.io/arch"] == "" || n.Status.NodeInfo.KernelVersion == "" {
				t.Fatalf("node %s facts: %+v", w.Name, n)
			}
		}
	})
	t.Run("RogueMaster", func(t *testing.T) {
		tf.t = t
		// A second master with its own CA advertises on the same LAN.
		rogue, err := tf.AddHost("rogue")
		if err != nil {
			t.Fatal(err)
		}
		rp, err := tf.StartMaster(rogue)
		if err != nil {
			t.Fatal(err)
		}
		defer rp.Stop(syscall.SIGTERM, 5*time.Second)
		out := tf.mustEdgectl("discover", "--wait", "2s")
		if !strings.Contains(out, "https://"+rogue.IP+":7443") || !strings.Contains(out, "https://"+tf.master.IP+":7443") {
			t.Fatalf("discover should list both masters:\n%s", out)
		}
		// With only the rogue master up, an agent holding the real master's
		// token refuses it and keeps looking.
		real := tf.Proc(tf.master.Name + "-edgemaster")
		real.Stop(syscall.SIGTERM, 10*time.Second)
		w5, err := tf.AddHost("w5")
		if err != nil {
			t.Fatal(err)
		}
		w5.Socket = filepath.Join(tf.Dir, "w5-no-containerd.sock") // joining needs no containerd
		agent, err := tf.StartAgent(w5, tf.token, "")
		if err != nil {
			t.Fatal(err)
		}
		defer agent.Stop(syscall.SIGTERM, 5*time.Second)
		waitFor(t, 20*time.Second, "the agent to refuse the rogue master", func() error {
			if !strings.Contains(agent.Tail(20000), "ignoring a master whose CA does not match the join token") {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		if out, _, _ := tf.Edgectl(tf.gw, rogue, "get", "nodes"); strings.Contains(out, "w5") {
			t.Fatalf("the agent joined the rogue master:\n%s", out)
		}
		// The real master returns: the agent finds it and joins.
		if _, err := tf.StartMaster(tf.master); err != nil {
			t.Fatal(err)
		}
		tf.waitReady("w5")
		agent.Stop(syscall.SIGTERM, 5*time.Second)
		tf.mustEdgectl("delete", "node", "w5")
		for _, w := range tf.workers {
			tf.waitReady(w.Name)
		}
	})
	t.Run("Spread", func(t *testing.T) {
		tf.t = t
		tf.apply(fmt.Sprintf(fleetWeb, DemoImage))
		tf.waitPlacement("6 replicas spread 2/2/2", 60*time.Second, 6, func(m map[string]int) bool {
			return m[w1.Name] == 2 && m[w2.Name] == 2 && m[w3.Name] == 2
		})
	})
	t.Run("DaemonSet", func(t *testing.T) {
		tf.t = t
		tf.apply(fleetDS)
		dsOn := func() map[string]int { return placement(tf.pods("app=collector")) }
		waitFor(t, 60*time.Second, "a collector on each of 3 nodes", func() error {
			if m := dsOn(); len(m) != 3 || total(m) != 3 {
				return fmt.Errorf("%v", m)
			}
			return nil
		})
		h, err := tf.AddHost("w4")
		if err != nil {
			t.Fatal(err)
		}
		w4 = h
		tf.workers = append(tf.workers, w4)
		tf.startWorker(w4)
		tf.waitReady(w4.Name)
		waitFor(t, 60*time.Second, "a collector on the new node too", func() error {
			if m := dsOn(); m[w4.Name] != 1 || total(m) != 4 {
				return fmt.Errorf("%v", m)
			}
			return nil
		})
	})
	t.Run("Drain", func(t *testing.T) {
		tf.t = t
		out := tf.mustEdgectl("drain", w3.Name)
		if !strings.Contains(out, "node/"+w3.Name+" drained") {
			t.Fatalf("drain: %s", out)
		}
		tf.waitPlacement("web replicas off the drained node", 60*time.Second, 6, func(m map[string]int) bool { return m[w3.Name] == 0 })
		if m := placement(tf.pods("app=collector")); m[w3.Name] != 1 {
			t.Fatalf("the DaemonSet pod must stay on a drained node: %v", m)
		}
		if n := tf.nodes()[w3.Name]; !n.Spec.Unschedulable {
			t.Fatal("drained node is schedulable")
		}
		tf.mustEdgectl("uncordon", w3.Name)
		// Back to 2 per node for what follows.
		tf.mustEdgectl("delete", "deployment", "web")
		waitFor(t, 60*time.Second, "web gone", func() error {
			if n := len(tf.pods("app=web")); n != 0 {
				return fmt.Errorf("%d pods", n)
			}
			return nil
		})
		tf.apply(fmt.Sprintf(fleetWeb, DemoImage))
		tf.settled(6)
	})
	t.Run("NodeKilled", func(t *testing.T) {
		tf.t = t
		start := time.Now()
		tf.Proc(w1.Name+"-edgeagent").Stop(syscall.SIGKILL, time.Second)
		tf.Proc(w1.Name+"-containerd").Stop(syscall.SIGKILL, time.Second)
		got := tf.waitPlacement("the killed node's replicas to run elsewhere", 60*time.Second, 6, func(m map[string]int) bool { return m[w1.Name] == 0 })
		t.Logf("replaced in %s: %v", time.Since(start).Round(100*time.Millisecond), got)
		// The node comes back: its old replicas are stopped, never doubled.
		if err := tf.RestartContainerd(w1); err != nil {
			t.Fatal(err)
		}
		if _, err := tf.StartAgent(w1, tf.token, ""); err != nil {
			t.Fatal(err)
		}
		tf.waitReady(w1.Name)
		tf.settled(6)
		waitFor(t, 30*time.Second, "w1's stale web containers to go", func() error {
			if n := tf.containers(w1, "web-"); n != 0 {
				return fmt.Errorf("%d web containers on w1", n)
			}
			return nil
		})
	})
	t.Run("LinkCut", func(t *testing.T) {
		tf.t = t
		before := placement(tf.pods("app=web"))[w2.Name]
		if before == 0 {
			tf.apply(strings.Replace(fmt.Sprintf(fleetWeb, DemoImage), "replicas: 6", "replicas: 7", 1))
			tf.waitPlacement("a replica on w2", 60*time.Second, 7, func(m map[string]int) bool { return m[w2.Name] > 0 })
			tf.apply(fmt.Sprintf(fleetWeb, DemoImage))
			tf.settled(6)
		}
		start := time.Now()
		if err := tf.LinkDown(w2); err != nil {
			t.Fatal(err)
		}
		got := tf.waitPlacement("w2's replicas to run elsewhere", 60*time.Second, 6, func(m map[string]int) bool { return m[w2.Name] == 0 })
		t.Logf("replaced in %s: %v", time.Since(start).Round(100*time.Millisecond), got)
		if n := tf.containers(w2, "web-"); n == 0 {
			t.Fatal("the cut-off node should still run its replicas (it cannot know yet)")
		}
		if err := tf.LinkUp(w2); err != nil {
			t.Fatal(err)
		}
		tf.waitReady(w2.Name)
		tf.settled(6)
		waitFor(t, 30*time.Second, "w2's replaced replicas to stop", func() error {
			if n := tf.containers(w2, "web-"); n != placement(tf.pods("app=web"))[w2.Name] {
				return fmt.Errorf("%d web containers on w2", n)
			}
			return nil
		})
	})
	t.Run("MasterDown", func(t *testing.T) {
		tf.t = t
		down := 60 * time.Second
		if v := os.Getenv("EDGE_E2E_MASTER_DOWN"); v != "" {
			down, _ = time.ParseDuration(v)
		}
		pods := tf.pods("app=web")
		master := tf.Proc(tf.master.Name + "-edgemaster")
		master.Stop(syscall.SIGTERM, 10*time.Second)
		start := time.Now()
		running := map[*Host]map[string]uint32{}
		for _, w := range tf.workers {
			running[w] = tf.tasks(w, "")
		}
		// A container killed while the master is away is restarted by its agent.
		var victim *Host
		var victimID string
		for _, w := range tf.workers {
			for id, pid := range tf.tasks(w, "web-") {
				victim, victimID = w, id
				syscall.Kill(int(pid), syscall.SIGKILL)
				break
			}
			if victim != nil {
				break
			}
		}
		if victim == nil {
			t.Fatal("no web task found")
		}
		old := running[victim][victimID]
		waitFor(t, 30*time.Second, "the killed container to restart without the master", func() error {
			if pid := tf.tasks(victim, "")[victimID]; pid == 0 || pid == old {
				return fmt.Errorf("pid %d", pid)
			}
			return nil
		})
		// A worker that reboots while the master is away brings its pods back
		// from its own saved state.
		reboot := w3
		want := len(running[reboot])
		tf.Proc(reboot.Name+"-edgeagent").Stop(syscall.SIGKILL, time.Second)
		tf.Proc(reboot.Name+"-containerd").Stop(syscall.SIGKILL, time.Second)
		killCgroup(reboot.Name)
		exec := func(args ...string) { run(args...) }
		exec("pkill", "-9", "-f", "containerd-shim-runc-v2 .*-address "+reboot.Socket)
		ctrd.UnmountUnder("/run/edge/" + reboot.Name) // /run does not survive a reboot
		os.RemoveAll("/run/edge/" + reboot.Name)
		if err := tf.RestartContainerd(reboot); err != nil {
			t.Fatal(err)
		}
		if _, err := tf.StartAgent(reboot, tf.token, ""); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "the rebooted worker to run its pods again, master still down", func() error {
			if n := len(tf.tasks(reboot, "")); n != want {
				return fmt.Errorf("%d of %d tasks", n, want)
			}
			return nil
		})
		if rest := down - time.Since(start); rest > 0 {
			time.Sleep(rest) // the master stays away for the whole period
		}
		if _, err := tf.StartMaster(tf.master); err != nil {
			t.Fatal(err)
		}
		for _, w := range tf.workers {
			tf.waitReady(w.Name)
		}
		// What the master reports comes to match what runs, once the agents
		// have reconnected and reported; no replica moved meanwhile.
		names := map[string]bool{}
		for _, p := range pods {
			names[p.Metadata.Name] = true
		}
		waitFor(t, 60*time.Second, "the master's view to match containerd's", func() error {
			after := tf.pods("app=web")
			if len(after) != len(pods) {
				return fmt.Errorf("%d pods, want %d", len(after), len(pods))
			}
			for _, p := range after {
				if !names[p.Metadata.Name] {
					return fmt.Errorf("pod %s was created while the master was away: replicas moved", p.Metadata.Name)
				}
				h := tf.Host(p.Spec.NodeName)
				cs := p.Status.ContainerStatuses
				if len(cs) == 0 || p.Status.Phase != "Running" {
					return fmt.Errorf("%s: phase %s", p.Metadata.Name, p.Status.Phase)
				}
				id := strings.TrimPrefix(cs[0].ContainerID, "containerd://")
				if tf.tasks(h, "")[id] == 0 {
					return fmt.Errorf("master says %s runs on %s as %s, containerd has no such task", p.Metadata.Name, h.Name, id)
				}
				if id == victimID && cs[0].RestartCount < 1 {
					return fmt.Errorf("the restart of %s while the master was down is not reported (yet)", p.Metadata.Name)
				}
			}
			return nil
		})
		// What happened meanwhile was queued on the worker and delivered in
		// order: the exit, then the restart, stamped with when they happened.
		victimPod := strings.SplitN(victimID, ".main.", 2)[0]
		waitFor(t, 30*time.Second, "the offline exit and restart as events", func() error {
			out := tf.mustEdgectl("get", "events", "-o", "json")
			var list struct {
				Items []struct {
					InvolvedObject  struct{ Name string } `json:"involvedObject"`
					Reason, Message string
					LastTimestamp   time.Time `json:"lastTimestamp"`
				} `json:"items"`
			}
			if err := json.Unmarshal([]byte(out), &list); err != nil {
				return err
			}
			var seq []string
			for _, e := range list.Items {
				if e.InvolvedObject.Name == victimPod && e.LastTimestamp.After(start.Add(-time.Second)) && e.LastTimestamp.Before(start.Add(down)) {
					seq = append(seq, e.Reason+": "+e.Message)
				}
			}
			joined := strings.Join(seq, " | ")
			if !strings.Contains(joined, "Error: Container main exited with code 137 | Started: Restarted container main (restart 1)") {
				return fmt.Errorf("events of %s during the outage: %s", victimPod, joined)
			}
			return nil
		})
		if out := tf.mustEdgectl("describe", "pod", victimPod); !strings.Contains(out, "exited with code 137") {
			t.Fatalf("describe pod shows no offline events:\n%s", out)
		}
	})
	t.Run("RollingUpdate", func(t *testing.T) {
		tf.t = t
		for _, w := range tf.workers {
			if err := tf.ImportImage(w, "edge.local/demo:v2"); err != nil {
				t.Fatal(err)
			}
		}
		tf.settled(6)
		tf.apply(fmt.Sprintf(fleetWeb, "edge.local/demo:v2"))
		minReady := 6
		deadline := time.Now().Add(120 * time.Second)
		for {
			pods := tf.pods("app=web")
			ready, updated := 0, 0
			for _, p := range pods {
				cs := p.Status.ContainerStatuses
				if p.Metadata.DeletionTimestamp == "" && p.Status.Phase == "Running" && len(cs) > 0 && cs[0].Ready {
					ready++
				}
			}
			minReady = min(minReady, ready)
			out := tf.mustEdgectl("get", "deployment", "web", "-o", "json")
			var d struct {
				Status struct {
					Replicas, UpdatedReplicas, ReadyReplicas int
				} `json:"status"`
			}
			json.Unmarshal([]byte(out), &d)
			updated = d.Status.UpdatedReplicas
			if updated == 6 && d.Status.Replicas == 6 && d.Status.ReadyReplicas == 6 && len(pods) == 6 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rollout did not finish: %s", out)
			}
			time.Sleep(30 * time.Millisecond)
		}
		if minReady < 5 {
			t.Fatalf("only %d replicas were Running at one point; maxUnavailable 25%% allows 1 down", minReady)
		}
		status := tf.mustEdgectl("rollout", "status", "deployment/web", "--timeout", "30s")
		if !strings.Contains(status, `deployment "web" successfully rolled out`) {
			t.Fatalf("rollout status: %s", status)
		}
		// Undo returns to the previous template.
		if out := tf.mustEdgectl("rollout", "undo", "deployment/web"); !strings.Contains(out, "rolled back to revision 1") {
			t.Fatalf("rollout undo: %s", out)
		}
		tf.mustEdgectl("rollout", "status", "deployment/web", "--timeout", "60s")
		waitFor(t, 60*time.Second, "all replicas back on the first image", func() error {
			out := tf.mustEdgectl("get", "deployment", "web", "-o", "wide")
			if !strings.Contains(out, "edge.local/demo:latest") || !strings.Contains(out, "6/6") {
				return fmt.Errorf("%s", out)
			}
			pods := tf.pods("app=web")
			if len(pods) != 6 {
				return fmt.Errorf("%d pods", len(pods))
			}
			return nil
		})
		if out := tf.mustEdgectl("rollout", "history", "deployment/web"); !strings.Contains(out, "edge.local/demo:v2") {
			t.Fatalf("rollout history: %s", out)
		}
	})
}
