package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
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

func TestFleet(t *testing.T) {
	tf := newTestFleet(t, 3)
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
}
