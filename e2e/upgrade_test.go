package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// previousRelease is the last commit that landed before this test was
// written (stop 13; its CI passed): what a fleet runs when this build
// comes to replace it. Move it forward when a later one has landed and a
// fleet could be running it.
const previousRelease = "bc68744af7305c199892dfc9ce592d795708da35"

// buildRelease builds edgemaster, edgeagent and edge-logdriver of commit
// into a directory, stamped with version, from the repository's own
// history (git archive: the work tree is not touched).
func buildRelease(t *testing.T, commit, version string) string {
	t.Helper()
	if err := exec.Command("git", "cat-file", "-e", commit+"^{commit}").Run(); err != nil {
		t.Skipf("commit %s is not in this clone (shallow?): git fetch --unshallow to run the upgrade test", commit[:12])
	}
	src, out := filepath.Join(t.TempDir(), "src"), t.TempDir()
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := exec.Command("sh", "-c", `cd "$(git rev-parse --show-toplevel)" && git archive "$1" | tar -x -C "$2"`, "sh", commit, src)
	if b, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v: %s", commit[:12], err, b)
	}
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-X github.com/edgeorch/edge/internal/version.Version="+version,
		"-o", out+"/", "./cmd/edgemaster", "./cmd/edgeagent", "./cmd/edge-logdriver")
	build.Dir = src
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v: %s", commit[:12], err, b)
	}
	return out
}

// An upgrade as a fleet does it: the master first, then the agent, each
// binary replaced and restarted. The pods started by the previous release
// are never touched (same tasks, same pids, no restarts), the old agent
// keeps working against the new master meanwhile, and the master's SQLite
// and the agent's data dir are carried forward.
func TestUpgrade(t *testing.T) {
	needRoot(t)
	// One minor version older than this build's (v0.1.0-dev, unstamped):
	// the skew the master allows.
	old := buildRelease(t, previousRelease, "v0.0.9")
	dir := t.TempDir()
	suffix := fmt.Sprintf("%d", os.Getpid()%10000)
	c := &cluster{t: t, root: t, dir: dir, node: "e2e-up" + suffix, bridge: "edge-up" + suffix, podCIDR: "10.99.8.0/24",
		masterArgs: []string{"--node-lost-grace", "10m"}, bins: old}
	c.ctrd = startContainerd(t)
	c.ctrd.importDemoImage(t, "edge.local/demo:latest")
	c.startMaster()
	t.Cleanup(c.cleanupHost)
	c.startAgent()
	c.waitNodeReady(60 * time.Second)

	c.apply(strings.Replace(spineManifest, "%d", "2", 1))
	c.runningPods(2, "app=spine")
	before := c.waitTasks(2)
	if v := c.nodeVersion(); v != "v0.0.9" {
		t.Fatalf("node reports agent version %q, want the previous release's v0.0.9", v)
	}

	// The master first: stop it, start this build's on the same data dir.
	c.master.stop(syscall.SIGTERM, 10*time.Second)
	c.bins = ""
	c.startMaster()
	c.waitNodeReady(60 * time.Second) // the old agent reconnects to the new master
	c.runningPods(2, "app=spine")
	c.sameTasks(before, "the master's upgrade")

	// Then the agent: its containers outlive it; the new one adopts them.
	c.agent.stop(syscall.SIGTERM, 10*time.Second)
	c.startAgent()
	waitFor(t, 60*time.Second, "the node to report this build's version", func() error {
		if v := c.nodeVersion(); v == "v0.0.9" {
			return fmt.Errorf("still %s", v)
		}
		return nil
	})
	c.waitNodeReady(60 * time.Second)
	pods := c.runningPods(2, "app=spine")
	c.sameTasks(before, "the agent's upgrade")
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount != 0 {
				t.Fatalf("pod %s container %s restarted %d times across the upgrade", p.Metadata.Name, cs.Name, cs.RestartCount)
			}
		}
	}
	// The upgraded cluster still does its job: a scale-up runs.
	c.apply(strings.Replace(spineManifest, "%d", "3", 1))
	c.runningPods(3, "app=spine")
}

// nodeVersion is the agent version the node reports.
func (c *cluster) nodeVersion() string {
	o, err := c.client.Get(context.Background(), core.Key{Kind: core.KindNode, Name: c.node})
	if err != nil {
		return ""
	}
	return o.(*core.Node).Status.NodeInfo.KubeletVersion
}

// sameTasks fails unless every task of before still runs with its pid.
func (c *cluster) sameTasks(before map[string]uint32, after string) {
	c.t.Helper()
	now := c.ctrd.tasks(c.t)
	for id, pid := range before {
		if now[id] != pid {
			c.t.Fatalf("container %s: pid %d before %s, %d after (recreated, not adopted)", id, pid, after, now[id])
		}
	}
	if len(now) != len(before) {
		c.t.Fatalf("%d tasks after %s, want %d", len(now), after, len(before))
	}
}
