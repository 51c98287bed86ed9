package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const volumeManifest = `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: vol}
spec:
  replicas: 1
  selector: {matchLabels: {app: vol}}
  template:
    metadata: {labels: {app: vol}}
    spec:
      terminationGracePeriodSeconds: 1
      securityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000}
      containers:
      - name: main
        image: edge.local/demo:latest
        command: ["/bin/sh", "-c", "echo start >> /data/log; trap 'exit 0' TERM; while true; do sleep 1; done"]
        volumeMounts: [{name: data, mountPath: /data}]
      volumes:
      - name: data
        persistentVolumeClaim: {claimName: data}
`

// A claim provisioned on the node at first use keeps its data across pod
// restarts, an agent restart and a container restart while the master is
// down; deleting the claim removes the directory and the volume.
func TestPersistentVolumes(t *testing.T) {
	needRoot(t)
	c := newCluster(t)
	c.apply(volumeManifest)
	c.runningPods(1, "app=vol")

	var claim struct {
		Spec   struct{ VolumeName string } `json:"spec"`
		Status struct{ Phase string }      `json:"status"`
	}
	if err := json.Unmarshal([]byte(c.mustEdgectl("get", "pvc", "data", "-o", "json")), &claim); err != nil {
		t.Fatal(err)
	}
	if claim.Status.Phase != "Bound" || !strings.HasPrefix(claim.Spec.VolumeName, "pvc-") {
		t.Fatalf("claim %+v", claim)
	}
	dir := filepath.Join(c.dir, "agent", "storage", claim.Spec.VolumeName+"_default_data")
	var pv struct {
		Spec struct {
			HostPath struct{ Path string } `json:"hostPath"`
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(c.mustEdgectl("get", "pv", claim.Spec.VolumeName, "-o", "json")), &pv); err != nil {
		t.Fatal(err)
	}
	if pv.Spec.HostPath.Path != dir {
		t.Fatalf("volume path %q, want %q", pv.Spec.HostPath.Path, dir)
	}
	lines := func(n int) func() error {
		return func() error {
			b, err := os.ReadFile(filepath.Join(dir, "log"))
			if got := strings.Count(string(b), "start\n"); err != nil || got != n {
				return fmt.Errorf("%d starts recorded (%v), want %d", got, err, n)
			}
			return nil
		}
	}
	waitFor(t, 10*time.Second, "the first start recorded in the volume", lines(1))
	if fi, err := os.Stat(filepath.Join(dir, "log")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 1000 || fi.Sys().(*syscall.Stat_t).Gid != 2000 {
		t.Fatalf("the file written by uid 1000 with fsGroup 2000: %v %+v", err, fi)
	}
	if out := c.mustEdgectl("get", "pvc"); !strings.Contains(out, "Bound") || !strings.Contains(out, "RWO") {
		t.Errorf("get pvc:\n%s", out)
	}

	// A new pod of the deployment finds the data.
	old := c.runningPods(1, "app=vol")[0].Metadata.Name
	c.mustEdgectl("delete", "pod", old)
	waitFor(t, 60*time.Second, "the replacement pod", func() error {
		for _, p := range c.runningPods(1, "app=vol") {
			if p.Metadata.Name == old {
				return fmt.Errorf("still %s", old)
			}
		}
		return nil
	})
	waitFor(t, 10*time.Second, "the second start recorded", lines(2))

	// The agent restarts; then, with the master down, the container is
	// killed: the agent restarts it from its saved desired state, on the
	// same directory.
	c.agent.stop(syscall.SIGTERM, 10*time.Second)
	c.startAgent()
	c.waitNodeReady(30 * time.Second)
	c.master.stop(syscall.SIGTERM, 10*time.Second)
	tasks := c.ctrd.tasks(t)
	if len(tasks) != 1 {
		t.Fatalf("%d tasks, want 1", len(tasks))
	}
	for id := range tasks {
		if out, err := exec.Command("ctr", "-a", c.ctrd.socket, "-n", "edge", "tasks", "kill", "-s", "KILL", id).CombinedOutput(); err != nil {
			t.Fatalf("ctr tasks kill: %v %s", err, out)
		}
	}
	waitFor(t, 60*time.Second, "the container restarted offline, on the volume", lines(3))
	c.startMaster()
	c.waitNodeReady(30 * time.Second)

	// Deleting the claim while the deployment uses it waits; once the
	// deployment is gone the directory and the volume go.
	c.mustEdgectl("delete", "pvc", "data")
	if out := c.mustEdgectl("get", "pvc", "data"); !strings.Contains(out, "Terminating") {
		t.Fatalf("a claim in use, deleted:\n%s", out)
	}
	c.mustEdgectl("delete", "deployment", "vol")
	waitFor(t, 60*time.Second, "the volume and its directory gone", func() error {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			return fmt.Errorf("directory: %v", err)
		}
		if out, _, err := c.edgectl("get", "pv", "-o", "json"); err != nil || strings.Contains(out, claim.Spec.VolumeName) {
			return fmt.Errorf("volume still listed (%v)", err)
		}
		return nil
	})
}

const statefulManifest = `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 16Mi}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: edge.local/demo:latest
        command: ["/bin/sh", "-c", "hostname >> /data/who; trap 'exit 0' TERM; while true; do sleep 1; done"]
        volumeMounts: [{name: data, mountPath: /data}]
`

// A StatefulSet's pods start in order, each with its own claim; a deleted
// pod comes back under its name to its own data.
func TestStatefulSetVolumes(t *testing.T) {
	needRoot(t)
	c := newCluster(t)
	c.apply(statefulManifest)
	c.runningPods(2, "app=db")
	who := func(pod string) string {
		matches, _ := filepath.Glob(filepath.Join(c.dir, "agent", "storage", "pvc-*_default_data-"+pod))
		if len(matches) != 1 {
			return fmt.Sprintf("%d directories", len(matches))
		}
		b, _ := os.ReadFile(filepath.Join(matches[0], "who"))
		return string(b)
	}
	for _, pod := range []string{"db-0", "db-1"} {
		waitFor(t, 10*time.Second, pod+" writing its name in its own volume", func() error {
			if got := who(pod); got != pod+"\n" {
				return fmt.Errorf("%q", got)
			}
			return nil
		})
	}
	c.mustEdgectl("delete", "pod", "db-0")
	waitFor(t, 60*time.Second, "db-0 back, on its own volume", func() error {
		if got := who("db-0"); got != "db-0\ndb-0\n" {
			return fmt.Errorf("%q", got)
		}
		return nil
	})
	waitFor(t, 30*time.Second, "get sts to show 2/2 ready", func() error {
		if out := c.mustEdgectl("get", "sts"); !strings.Contains(out, "2/2") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	c.mustEdgectl("delete", "sts", "db")
	waitFor(t, 30*time.Second, "the pods gone", func() error {
		if n := len(c.podsJSON("app=db")); n != 0 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
	if got := who("db-1"); got != "db-1\n" {
		t.Errorf("the claims are retained by default; db-1's volume holds %q", got)
	}
}
