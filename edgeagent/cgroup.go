package edgeagent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// cgroupSupport is what the node's cgroups can enforce, looked at once when
// the runtime starts. Every container's cgroup is PARENT/ID, cgroupfs
// style; runc makes it, and on cgroup v2 enables the controllers it needs
// in each ancestor's cgroup.subtree_control on the way down.
type cgroupSupport struct {
	v2 bool // one unified hierarchy (Raspberry Pi OS, current distributions)
	// memory: the memory controller is there, so a memory limit can be
	// enforced. Raspberry Pi OS has long booted with it off.
	memory bool
	// swap: the kernel accounts swap, so a container's swap can be capped
	// (v1: memory.memsw.*, off without swapaccount=1; v2: memory.swap.max,
	// absent with the memory controller or swap support off). runc fails
	// a container's start on a swap limit it cannot write.
	swap bool
}

// memoryOffHelp says how to turn the memory controller on.
const memoryOffHelp = "the kernel's memory cgroup controller is off " +
	"(on a Raspberry Pi add cgroup_enable=memory cgroup_memory=1 to the kernel command line, /boot/firmware/cmdline.txt, and reboot)"

// probeCgroups looks at the cgroup filesystem mounted at root for
// containers under parent. On v2 it makes parent (as runc would for the
// first container), with memory enabled on the way down: memory.swap.max
// shows only in a cgroup whose parent enables memory, so that is where
// swap support can be seen. It changes nothing on v1.
func probeCgroups(root, parent string) cgroupSupport {
	b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil { // v1 (or hybrid: v1 controllers, an empty v2 beside them)
		mem := filepath.Join(root, "memory")
		return cgroupSupport{
			memory: fileExists(filepath.Join(mem, "memory.limit_in_bytes")),
			swap:   fileExists(filepath.Join(mem, "memory.memsw.limit_in_bytes")),
		}
	}
	s := cgroupSupport{v2: true, memory: slices.Contains(strings.Fields(string(b)), "memory")}
	if s.memory {
		s.swap = enableDown(root, parent, "memory") && fileExists(filepath.Join(root, parent, "memory.swap.max"))
	}
	return s
}

// enableDown makes the cgroup path under root and enables controller for
// the children of root and of each cgroup above path, as runc does.
func enableDown(root, path, controller string) bool {
	dir := root
	for _, elem := range strings.Split(strings.Trim(filepath.Clean("/"+path), "/"), "/") {
		if elem == "" {
			return false
		}
		if err := enableController(dir, controller); err != nil {
			return false
		}
		dir = filepath.Join(dir, elem)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			return false
		}
	}
	return true
}

// enableController enables controller in the children of cgroup dir,
// unless it is already.
func enableController(dir, controller string) error {
	f := filepath.Join(dir, "cgroup.subtree_control")
	b, err := os.ReadFile(f)
	if err != nil {
		return err
	}
	if slices.Contains(strings.Fields(string(b)), controller) {
		return nil
	}
	return os.WriteFile(f, []byte("+"+controller), 0o644)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
