package edgeagent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// probeCgroups on fake cgroup trees: v1 with and without swap accounting
// (swapaccount=0, Raspberry Pi OS's old default) or the memory controller;
// v2 with memory enabled on the way down to the parent, swap seen there,
// and without the memory controller (cgroup_disable=memory).
func TestProbeCgroups(t *testing.T) {
	write := func(path, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("V1", func(t *testing.T) {
		root := t.TempDir()
		if s := probeCgroups(root, "/edge/pi"); s != (cgroupSupport{}) {
			t.Fatalf("no memory hierarchy: %+v", s)
		}
		write(filepath.Join(root, "memory", "memory.limit_in_bytes"), "")
		if s := probeCgroups(root, "/edge/pi"); s != (cgroupSupport{memory: true}) {
			t.Fatalf("without memsw files: %+v", s)
		}
		write(filepath.Join(root, "memory", "memory.memsw.limit_in_bytes"), "")
		if s := probeCgroups(root, "/edge/pi"); s != (cgroupSupport{memory: true, swap: true}) {
			t.Fatalf("with memsw files: %+v", s)
		}
		if _, err := os.Stat(filepath.Join(root, "memory", "edge")); err == nil {
			t.Fatal("made a cgroup on v1")
		}
	})
	t.Run("V2", func(t *testing.T) {
		root := t.TempDir()
		write(filepath.Join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n")
		write(filepath.Join(root, "cgroup.subtree_control"), "cpu\n")
		// what the kernel shows in a new cgroup: its subtree_control, and
		// (below memory) memory.swap.max
		write(filepath.Join(root, "edge", "cgroup.subtree_control"), "")
		if s := probeCgroups(root, "/edge/pi"); s != (cgroupSupport{v2: true, memory: true}) {
			t.Fatalf("without memory.swap.max: %+v", s)
		}
		for _, f := range []string{filepath.Join(root, "cgroup.subtree_control"), filepath.Join(root, "edge", "cgroup.subtree_control")} {
			if b, _ := os.ReadFile(f); !strings.Contains(string(b), "+memory") {
				t.Fatalf("%s = %q: memory not enabled", f, b)
			}
		}
		if _, err := os.Stat(filepath.Join(root, "edge", "pi")); err != nil {
			t.Fatalf("the parent cgroup was not made: %v", err)
		}
		write(filepath.Join(root, "edge", "pi", "memory.swap.max"), "max\n")
		if s := probeCgroups(root, "/edge/pi"); s != (cgroupSupport{v2: true, memory: true, swap: true}) {
			t.Fatalf("with memory.swap.max: %+v", s)
		}
		off := t.TempDir()
		write(filepath.Join(off, "cgroup.controllers"), "cpuset cpu io pids\n")
		if s := probeCgroups(off, "/edge/pi"); s != (cgroupSupport{v2: true}) {
			t.Fatalf("memory controller off: %+v", s)
		}
	})
}
