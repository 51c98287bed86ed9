package preflight

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// CgroupControllers are the controllers the agent limits pods with.
var CgroupControllers = []string{"memory", "cpu", "pids"}

// kernelOption is the kernel configuration a controller needs.
var kernelOption = map[string]string{"memory": "CONFIG_MEMCG", "cpu": "CONFIG_CGROUP_SCHED", "pids": "CONFIG_CGROUP_PIDS", "cpuset": "CONFIG_CPUSETS"}

// cgroupInfo is a line of /proc/cgroups.
type cgroupInfo struct {
	hierarchy int
	enabled   bool
}

// procCgroups reads /proc/cgroups: controller -> its line.
func (h Host) procCgroups() (map[string]cgroupInfo, error) {
	s, err := readString(h.proc("cgroups"))
	if err != nil {
		return nil, err
	}
	out := map[string]cgroupInfo{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || strings.HasPrefix(f[0], "#") {
			continue
		}
		hier, _ := strconv.Atoi(f[1])
		out[f[0]] = cgroupInfo{hierarchy: hier, enabled: f[3] == "1"}
	}
	return out, nil
}

func (h Host) cgroupRoot() string { return h.sys("fs", "cgroup") }

// cgroupV2 says whether /sys/fs/cgroup is the unified (v2) hierarchy.
func (h Host) cgroupV2() bool { return exists(filepath.Join(h.cgroupRoot(), "cgroup.controllers")) }

func (h Host) fileFields(path string) []string {
	s, _ := readString(path)
	return strings.Fields(s)
}

// v1Mount returns where a cgroup v1 hierarchy holding controller is
// mounted ("" if none is).
func (h Host) v1Mount(controller string) string {
	s, _ := readString(h.proc("mounts"))
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != "cgroup" {
			continue
		}
		if slices.Contains(strings.Split(f[3], ","), controller) {
			return f[1]
		}
	}
	return ""
}

// CgroupController checks that a cgroup controller is there for the
// agent's containers: on cgroup v2 listed in /sys/fs/cgroup's
// cgroup.controllers, on v1 enabled in /proc/cgroups and mounted.
func (h Host) CgroupController(name string) Result {
	h = h.withDefaults()
	info, infoErr := h.procCgroups()
	ci, known := info[name]
	if h.cgroupV2() {
		if slices.Contains(h.fileFields(filepath.Join(h.cgroupRoot(), "cgroup.controllers")), name) {
			return pass("cgroup v2: %s in cgroup.controllers", name)
		}
		switch {
		case known && !ci.enabled:
			return fail(h.enableFix(name, info), "cgroup v2: %s is disabled on the kernel command line (not in %s)", name, filepath.Join(h.cgroupRoot(), "cgroup.controllers"))
		case infoErr == nil && !known:
			return fail(builtWithoutFix(name), "cgroup v2: the kernel has no %s controller", name)
		case known && ci.hierarchy != 0:
			return fail(fmt.Sprintf("unmount the cgroup v1 %s hierarchy (umount %s), or boot with systemd.unified_cgroup_hierarchy=1 and without cgroup_no_v1", name, h.v1Mount(name)),
				"cgroup v2: %s is bound to a cgroup v1 hierarchy, so v2 cannot use it", name)
		}
		return fail("run the agent in the host's cgroup namespace (a container needs --cgroupns=host), or delegate the controller to this cgroup",
			"cgroup v2: %s is not in %s (not delegated to this cgroup)", name, filepath.Join(h.cgroupRoot(), "cgroup.controllers"))
	}
	if infoErr != nil {
		return fail("mount procfs at /proc", "cgroup v1: cannot read %s: %v", h.proc("cgroups"), infoErr)
	}
	if !known {
		return fail(builtWithoutFix(name), "cgroup v1: the kernel has no %s controller (not in %s)", name, h.proc("cgroups"))
	}
	if !ci.enabled {
		return fail(h.enableFix(name, info), "cgroup v1: %s is disabled (enabled 0 in %s)", name, h.proc("cgroups"))
	}
	mnt := h.v1Mount(name)
	if mnt == "" {
		dir := "/sys/fs/cgroup/" + name
		return fail(fmt.Sprintf("mount it: mkdir -p %s && mount -t cgroup -o %s cgroup %s (systemd mounts every enabled controller at boot)", dir, name, dir),
			"cgroup v1: %s is enabled but no cgroup hierarchy mounts it", name)
	}
	return pass("cgroup v1: %s enabled, mounted at %s", name, mnt)
}

func builtWithoutFix(name string) string {
	return fmt.Sprintf("use a kernel built with %s=y (Debian's and Raspberry Pi OS's kernels are)", kernelOption[name])
}

// PiModel returns the Raspberry Pi model the device tree names, or "".
func (h Host) PiModel() string {
	h = h.withDefaults()
	for _, p := range []string{h.proc("device-tree", "model"), h.sys("firmware", "devicetree", "base", "model")} {
		if s, err := readString(p); err == nil {
			s = strings.TrimSpace(strings.TrimRight(s, "\x00"))
			if strings.Contains(s, "Raspberry Pi") {
				return s
			}
			return ""
		}
	}
	return ""
}

// cmdlineTxt is a Raspberry Pi's kernel command line file:
// /boot/firmware/cmdline.txt since Raspberry Pi OS bookworm, /boot/cmdline.txt
// before.
func (h Host) cmdlineTxt() string {
	if p := filepath.Join(h.Boot, "firmware", "cmdline.txt"); exists(p) {
		return p
	}
	if p := filepath.Join(h.Boot, "cmdline.txt"); exists(p) {
		return p
	}
	return filepath.Join(h.Boot, "firmware", "cmdline.txt")
}

// enableFix says how to turn on a controller the kernel command line
// disabled. On a Raspberry Pi it names the words for cmdline.txt.
func (h Host) enableFix(name string, info map[string]cgroupInfo) string {
	words := []string{"cgroup_enable=" + name}
	if name == "memory" {
		words = append(words, "cgroup_memory=1")
	}
	if ci, ok := info["cpuset"]; ok && !ci.enabled && name != "cpuset" {
		words = append([]string{"cgroup_enable=cpuset"}, words...)
	}
	running := strings.Fields(readOr(h.proc("cmdline")))
	if model := h.PiModel(); model != "" {
		file := h.cmdlineTxt()
		inFile := strings.Fields(readOr(file))
		if containsAll(inFile, words) && !containsAll(running, words) {
			return fmt.Sprintf("%s already has %q but the kernel was booted without it: reboot", file, strings.Join(words, " "))
		}
		return fmt.Sprintf("%s: add %q to the end of the single line in %s (/boot/cmdline.txt on Raspberry Pi OS before bookworm), then reboot",
			model, strings.Join(words, " "), file)
	}
	if slices.Contains(running, "cgroup_disable="+name) {
		return fmt.Sprintf("remove cgroup_disable=%s from the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub), then reboot", name)
	}
	return fmt.Sprintf("add %q to the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub), then reboot", strings.Join(words, " "))
}

func readOr(path string) string {
	s, _ := readString(path)
	return s
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// CgroupDelegation checks, on cgroup v2, that the controllers reach parent
// (the agent's cgroup, such as /edge/pi-1): every existing cgroup on the
// way must list them in cgroup.subtree_control, or be able to (the root
// cgroup, or one without processes, which runc enables them in). A cgroup
// with processes of its own cannot hand controllers down ("no internal
// processes"), so runc fails to create the containers' cgroups.
func (h Host) CgroupDelegation(parent string, controllers []string) Result {
	h = h.withDefaults()
	if !h.cgroupV2() {
		return pass("cgroup v1: nothing to delegate")
	}
	root := h.cgroupRoot()
	avail := h.fileFields(filepath.Join(root, "cgroup.controllers"))
	var want []string
	for _, c := range controllers {
		if slices.Contains(avail, c) {
			want = append(want, c) // a missing one is its controller check's failure
		}
	}
	dir := root
	parts := strings.FieldsFunc(parent, func(r rune) bool { return r == '/' })
	created := false
	for i := 0; i <= len(parts); i++ {
		if i > 0 {
			dir = filepath.Join(dir, parts[i-1])
		}
		if !exists(dir) {
			created = true // runc makes the rest, without processes, enabling as it goes
			break
		}
		enabled := h.fileFields(filepath.Join(dir, "cgroup.subtree_control"))
		var missing []string
		for _, c := range want {
			if !slices.Contains(enabled, c) {
				missing = append(missing, c)
			}
		}
		// The real root has no cgroup.type; a cgroup namespace's root (in a
		// container) does, and is bound by the no-internal-processes rule.
		isRoot := !exists(filepath.Join(dir, "cgroup.type"))
		if len(missing) == 0 || isRoot || len(h.fileFields(filepath.Join(dir, "cgroup.procs"))) == 0 {
			continue
		}
		rel := "/" + strings.Join(parts[:i], "/")
		return fail(fmt.Sprintf("move the processes of %s into a child cgroup (or rmdir it if empty so the agent makes it again); under systemd give the unit Delegate=yes", rel),
			"cgroup v2: %s has processes and does not delegate %s (cgroup.subtree_control): containers under %s cannot get them",
			rel, strings.Join(missing, ", "), parent)
	}
	how := "delegated"
	if created {
		how = "delegated (runc enables them where it creates cgroups)"
	}
	return pass("cgroup v2: %s %s down to %s", strings.Join(want, ", "), how, parent)
}
