package preflight

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// KernelModules are the modules (or built-ins) pod networking needs, with
// the kernel option of each.
var KernelModules = []struct{ Name, Option string }{
	{"bridge", "CONFIG_BRIDGE"},
	{"veth", "CONFIG_VETH"},
	{"br_netfilter", "CONFIG_BRIDGE_NETFILTER"},
	{"nf_nat", "CONFIG_NF_NAT"},
}

type moduleState int

const (
	modAbsent moduleState = iota
	modUnknown
	modLoaded
	modBuiltin
	modLoadable
	modNoTree // the kernel takes modules but none are installed for it
)

// kernelConfig reads the running kernel's configuration from
// /proc/config.gz or /boot/config-RELEASE: option -> "y", "m" (missing:
// not set). Nil when neither is there.
func (h Host) kernelConfig() map[string]string {
	var r io.Reader
	if f, err := os.Open(h.proc("config.gz")); err == nil {
		defer f.Close()
		if z, err := gzip.NewReader(f); err == nil {
			r = z
		}
	}
	if r == nil && h.Release != "" {
		f, err := os.Open(filepath.Join(h.Boot, "config-"+h.Release))
		if err != nil {
			return nil
		}
		defer f.Close()
		r = f
	}
	if r == nil {
		return nil
	}
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_") {
			out[k] = v
		}
	}
	return out
}

// modName normalises a module's name or file name: the kernel treats - and
// _ alike, files may be compressed.
func modName(file string) string {
	base := filepath.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// listsModule says whether a modules.builtin or modules.dep file names
// module name.
func listsModule(path, name string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		file, _, _ := strings.Cut(sc.Text(), ":")
		if strings.HasSuffix(strings.TrimSpace(file), ".ko") || strings.Contains(file, ".ko.") {
			if modName(file) == name {
				return true
			}
		}
	}
	return false
}

// module finds out whether a module is loaded, built in or loadable, from
// /proc/modules, /sys/module, modules.builtin and modules.dep under
// /lib/modules/RELEASE, and the kernel's configuration.
func (h Host) module(name, option string, config map[string]string) (moduleState, string) {
	procModules, procErr := readString(h.proc("modules"))
	for _, line := range strings.Split(procModules, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return modLoaded, "loaded"
		}
	}
	if exists(h.sys("module", name)) {
		if exists(h.sys("module", name, "initstate")) {
			return modLoaded, "loaded"
		}
		return modBuiltin, "built into the kernel"
	}
	if name == "br_netfilter" && exists(h.proc("sys", "net", "bridge", "bridge-nf-call-iptables")) {
		return modLoaded, "active (" + h.proc("sys", "net", "bridge") + " exists)"
	}
	dir := filepath.Join(h.Modules, h.Release)
	if h.Release != "" && listsModule(filepath.Join(dir, "modules.builtin"), name) {
		return modBuiltin, "built into the kernel (modules.builtin)"
	}
	v, haveOpt := config[option]
	if v == "y" {
		return modBuiltin, fmt.Sprintf("built into the kernel (%s=y)", option)
	}
	if h.Release != "" && listsModule(filepath.Join(dir, "modules.dep"), name) {
		return modLoadable, "module, not loaded yet: the kernel loads it on first use (or: modprobe " + name + ")"
	}
	if procErr == nil && h.Release != "" && !exists(dir) {
		// A kernel upgraded without a reboot: the running kernel's modules are gone.
		return modNoTree, fmt.Sprintf("not loaded, and %s does not exist (no modules for the running kernel %s)", dir, h.Release)
	}
	if config != nil && (!haveOpt || v == "m") {
		if v == "m" {
			return modAbsent, fmt.Sprintf("%s=m but the module is not installed in %s", option, dir)
		}
		return modAbsent, fmt.Sprintf("the kernel is built without %s", option)
	}
	if procErr != nil && config == nil {
		// No loadable modules and no configuration to read: nothing tells.
		return modUnknown, fmt.Sprintf("cannot tell: the kernel takes no modules (no %s) and its configuration is not readable (%s or %s)",
			h.proc("modules"), h.proc("config.gz"), filepath.Join(h.Boot, "config-"+h.Release))
	}
	return modAbsent, fmt.Sprintf("not loaded, not built in, and not in %s", filepath.Join(dir, "modules.dep"))
}

func moduleFix(name, option, release string, st moduleState) string {
	switch st {
	case modNoTree:
		return fmt.Sprintf("reboot into the installed kernel (or reinstall this one: apt-get install --reinstall linux-image-%s; on a Raspberry Pi the raspberrypi-kernel or linux-image-rpi-* package)", release)
	case modUnknown:
		return fmt.Sprintf("make sure the kernel has %s (modprobe configs exposes /proc/config.gz)", option)
	}
	return fmt.Sprintf("modprobe %s (Debian package kmod); if it is not found, use a kernel built with %s (Debian's and Raspberry Pi OS's kernels are)", name, option)
}

// Module checks that a kernel module is loaded, built in or loadable. A
// loadable module passes with a note: the kernel (or the agent) loads it
// when it is first used.
func (h Host) Module(name, option string) Result {
	h = h.withDefaults()
	return h.moduleResult(name, option, h.kernelConfig())
}

func (h Host) moduleResult(name, option string, config map[string]string) Result {
	st, detail := h.module(name, option, config)
	switch st {
	case modLoaded, modBuiltin, modLoadable:
		return pass("%s", detail)
	case modUnknown:
		return warn(moduleFix(name, option, h.Release, st), "%s", detail)
	}
	return fail(moduleFix(name, option, h.Release, st), "%s", detail)
}

// Overlayfs checks that the kernel can mount overlay filesystems, which
// containerd's default snapshotter needs.
func (h Host) Overlayfs() Result {
	h = h.withDefaults()
	s, _ := readString(h.proc("filesystems"))
	for _, line := range strings.Split(s, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == "overlay" {
			return pass("overlay in %s", h.proc("filesystems"))
		}
	}
	r := h.moduleResult("overlay", "CONFIG_OVERLAY_FS", h.kernelConfig())
	if r.Status == Pass {
		r.Detail = "overlay: " + r.Detail
	}
	return r
}
