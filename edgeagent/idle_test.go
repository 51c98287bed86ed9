package edgeagent

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// fileState is what an idle agent must leave alone: a file's inode (a
// crash-safe rewrite renames a new one in), size, time and content.
type fileState struct {
	ino     uint64
	mtime   time.Time
	content string
}

func dirState(t *testing.T, dirs ...string) map[string]fileState {
	t.Helper()
	m := map[string]fileState{}
	for _, dir := range dirs {
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			var ino uint64
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				ino = st.Ino
			}
			b, _ := os.ReadFile(path)
			m[path] = fileState{ino: ino, mtime: info.ModTime(), content: string(b)}
			return nil
		})
	}
	return m
}

// An idle agent with unchanged state writes no file: over several resync
// periods, with the master sending the same desired and network state
// again (as on every reconnection), nothing under its data or run
// directory is created, rewritten or touched. SD cards wear out.
func TestAgentIdleWritesNothing(t *testing.T) {
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	rt.addImage("busybox")
	dir := t.TempDir()
	a := newTestAgent(t, rt, clk, dir)
	a.Resync = 30 * time.Second
	a.Reporter = &fakeReporter{}
	if err := a.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	host := testPod("host", busybox("app"))
	pod := testPod("web", busybox("app"))
	pod.Spec.HostNetwork = false // its namespace, hosts and hostname files
	ds := desired("h1", host, pod)
	ns := &core.NetworkState{Hash: "n1"}
	a.SetDesired(ds)
	a.SetNetwork(ns)
	waitRunning(t, a, host, 0)
	waitRunning(t, a, pod, 0)
	resync := func() {
		t.Helper()
		clk.Advance(a.Resync)
		next := clk.Now().Add(a.Resync)
		waitUntil(t, "both pods to resync", func() bool { return clk.timersAt(next) >= 2 })
	}
	resync()
	waitUntil(t, "the start's events to be delivered", func() bool {
		q := a.events
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.acked+1 == q.next && len(q.files) == 0 // ack wrote "seq" under q.mu
	})
	before := dirState(t, a.DataDir, a.RunDir)
	if len(before) == 0 {
		t.Fatal("no files to watch")
	}
	for range 5 {
		a.SetDesired(desired("h1", host, pod))
		a.SetNetwork(&core.NetworkState{Hash: "n1"})
		a.ForceReport()
		resync()
	}
	after := dirState(t, a.DataDir, a.RunDir)
	for path, st := range after {
		if b, ok := before[path]; !ok {
			t.Errorf("idle agent made %s", path)
		} else if b != st {
			t.Errorf("idle agent rewrote %s", path)
		}
	}
	for path := range before {
		if _, ok := after[path]; !ok {
			t.Errorf("idle agent removed %s", path)
		}
	}
}
