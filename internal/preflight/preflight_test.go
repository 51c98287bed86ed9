package preflight

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var ctx = context.Background()

var now2025 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// fakeHost is a Host over the fake tree at dir (proc, sys, boot,
// lib/modules), as root, with no programs.
func fakeHost(dir, release string) Host {
	return Host{Proc: filepath.Join(dir, "proc"), Sys: filepath.Join(dir, "sys"), Boot: filepath.Join(dir, "boot"),
		Modules: filepath.Join(dir, "lib", "modules"), Release: release, Root: true,
		Now: func() time.Time { return now2025 }, Path: []string{}}
}

func piHost() Host { return fakeHost("testdata/pi4-v1-nomemory", "6.6.31+rpt-rpi-v8") }
func v2Host() Host { return fakeHost("testdata/v2-nomemory", "6.1.0-28-amd64") }

// tree writes files (path -> content) under a new temporary directory and
// returns it. Content "DIR" makes a directory.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if content == "DIR" {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func want(t *testing.T, r Result, status Status, substrings ...string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %s, want %s: %+v", r.Status, status, r)
	}
	for _, s := range substrings {
		if !strings.Contains(r.Detail+" | fix: "+r.Fix, s) {
			t.Fatalf("result %+v does not say %q", r, s)
		}
	}
}

const procCgroupsV1 = `#subsys_name	hierarchy	num_cgroups	enabled
cpuset	3	1	1
cpu	1	1	1
cpuacct	2	1	1
memory	4	66	1
pids	8	1	1
`

const mountsV1 = `cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
`

// A Raspberry Pi 4 on cgroup v1 whose kernel disabled the memory
// controller (enabled 0): the fix names the words for cmdline.txt.
func TestCgroupController_PiV1MemoryDisabled(t *testing.T) {
	h := piHost()
	want(t, h.CgroupController("memory"), Fail, "cgroup v1", "enabled 0",
		"Raspberry Pi 4 Model B Rev 1.4", `"cgroup_enable=memory cgroup_memory=1"`, "testdata/pi4-v1-nomemory/boot/firmware/cmdline.txt", "reboot")
	want(t, h.CgroupController("cpu"), Pass, "cgroup v1", "mounted at /sys/fs/cgroup/cpu,cpuacct")
	want(t, h.CgroupController("pids"), Pass, "mounted at /sys/fs/cgroup/pids")
}

func TestCgroupController_PiVariants(t *testing.T) {
	cgroups := strings.Replace(procCgroupsV1, "memory	4	66	1", "memory	0	66	0", 1)
	t.Run("OlderPiOS", func(t *testing.T) { // /boot/cmdline.txt, model in /sys/firmware
		dir := tree(t, map[string]string{"proc/cgroups": cgroups, "sys/firmware/devicetree/base/model": "Raspberry Pi 3 Model B Plus Rev 1.3\x00",
			"boot/cmdline.txt": "console=tty1 root=/dev/mmcblk0p2 rootwait"})
		want(t, fakeHost(dir, "").CgroupController("memory"), Fail, "Raspberry Pi 3", filepath.Join(dir, "boot/cmdline.txt"), "cgroup_enable=memory cgroup_memory=1")
	})
	t.Run("CpusetDisabledToo", func(t *testing.T) {
		dir := tree(t, map[string]string{"proc/cgroups": strings.Replace(cgroups, "cpuset	3	1	1", "cpuset	0	1	0", 1),
			"proc/device-tree/model": "Raspberry Pi Zero 2 W Rev 1.0\x00", "boot/firmware/cmdline.txt": "root=/dev/mmcblk0p2"})
		want(t, fakeHost(dir, "").CgroupController("memory"), Fail, `"cgroup_enable=cpuset cgroup_enable=memory cgroup_memory=1"`)
	})
	t.Run("EditedButNotRebooted", func(t *testing.T) {
		dir := tree(t, map[string]string{"proc/cgroups": cgroups, "proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\x00",
			"proc/cmdline": "root=/dev/mmcblk0p2", "boot/firmware/cmdline.txt": "root=/dev/mmcblk0p2 cgroup_enable=memory cgroup_memory=1\n"})
		want(t, fakeHost(dir, "").CgroupController("memory"), Fail, "already has", "booted without it: reboot")
	})
	t.Run("NotAPi", func(t *testing.T) {
		dir := tree(t, map[string]string{"proc/cgroups": cgroups, "proc/device-tree/model": "Pine64 RockPro64\x00"})
		r := fakeHost(dir, "").CgroupController("memory")
		want(t, r, Fail, `add "cgroup_enable=memory cgroup_memory=1" to the kernel command line`, "GRUB_CMDLINE_LINUX")
		if strings.Contains(r.Fix, "cmdline.txt") {
			t.Fatalf("fix for a board that is not a Pi names cmdline.txt: %s", r.Fix)
		}
	})
}

// A cgroup v2 host without memory in cgroup.controllers (booted with
// cgroup_disable=memory).
func TestCgroupController_V2WithoutMemory(t *testing.T) {
	h := v2Host()
	want(t, h.CgroupController("memory"), Fail, "cgroup v2", "disabled on the kernel command line", "cgroup.controllers",
		"remove cgroup_disable=memory from the kernel command line", "update-grub")
	want(t, h.CgroupController("cpu"), Pass, "cgroup v2: cpu in cgroup.controllers")
	want(t, h.CgroupController("pids"), Pass, "cgroup v2: pids")
}

func TestCgroupController_V2(t *testing.T) {
	v2 := func(t *testing.T, controllers, procCgroups string) Host {
		return fakeHost(tree(t, map[string]string{"sys/fs/cgroup/cgroup.controllers": controllers, "proc/cgroups": procCgroups}), "")
	}
	zeroHier := strings.NewReplacer("	3	", "	0	", "	1	1", "	0	1", "	4	", "	0	", "	8	", "	0	").Replace(procCgroupsV1)
	t.Run("OK", func(t *testing.T) {
		want(t, v2(t, "cpuset cpu io memory pids\n", zeroHier).CgroupController("memory"), Pass, "cgroup v2: memory in cgroup.controllers")
	})
	t.Run("KernelWithout", func(t *testing.T) {
		noPids := strings.Replace(zeroHier, "pids	0	1	1\n", "", 1)
		want(t, v2(t, "cpu memory\n", noPids).CgroupController("pids"), Fail, "no pids controller", "CONFIG_CGROUP_PIDS=y")
	})
	t.Run("BoundToV1", func(t *testing.T) {
		want(t, v2(t, "cpu pids\n", procCgroupsV1).CgroupController("memory"), Fail, "bound to a cgroup v1 hierarchy", "systemd.unified_cgroup_hierarchy=1")
	})
	t.Run("NotDelegated", func(t *testing.T) { // a container's own cgroup namespace
		want(t, v2(t, "cpu pids\n", zeroHier).CgroupController("memory"), Fail, "not delegated", "--cgroupns=host")
	})
}

func TestCgroupController_V1(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		h := fakeHost(tree(t, map[string]string{"proc/cgroups": procCgroupsV1, "proc/mounts": mountsV1}), "")
		for _, c := range CgroupControllers {
			want(t, h.CgroupController(c), Pass, "cgroup v1: "+c+" enabled, mounted at /sys/fs/cgroup/"+c)
		}
	})
	t.Run("NotMounted", func(t *testing.T) {
		h := fakeHost(tree(t, map[string]string{"proc/cgroups": procCgroupsV1, "proc/mounts": strings.Replace(mountsV1, "memory", "devices", -1)}), "")
		want(t, h.CgroupController("memory"), Fail, "no cgroup hierarchy mounts it", "mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory")
	})
	t.Run("KernelWithout", func(t *testing.T) {
		h := fakeHost(tree(t, map[string]string{"proc/cgroups": strings.Replace(procCgroupsV1, "pids	8	1	1\n", "", 1), "proc/mounts": mountsV1}), "")
		want(t, h.CgroupController("pids"), Fail, "no pids controller", "CONFIG_CGROUP_PIDS=y")
	})
	t.Run("NoProc", func(t *testing.T) {
		want(t, fakeHost(t.TempDir(), "").CgroupController("memory"), Fail, "cannot read")
	})
}

func TestCgroupDelegation(t *testing.T) {
	all := "cpuset cpu io memory pids\n"
	t.Run("V1", func(t *testing.T) {
		want(t, piHost().CgroupDelegation("/edge/pi", CgroupControllers), Pass, "cgroup v1")
	})
	t.Run("RootOnly", func(t *testing.T) { // runc enables them at the root and in what it creates
		h := fakeHost(tree(t, map[string]string{"sys/fs/cgroup/cgroup.controllers": all, "sys/fs/cgroup/cgroup.subtree_control": "cpu\n",
			"sys/fs/cgroup/cgroup.procs": "1\n"}), "")
		want(t, h.CgroupDelegation("/edge/pi", CgroupControllers), Pass, "memory, cpu, pids", "runc enables them", "/edge/pi")
	})
	t.Run("Delegated", func(t *testing.T) {
		h := fakeHost(tree(t, map[string]string{"sys/fs/cgroup/cgroup.controllers": all, "sys/fs/cgroup/cgroup.subtree_control": all,
			"sys/fs/cgroup/edge/cgroup.type": "domain\n", "sys/fs/cgroup/edge/cgroup.subtree_control": "cpu memory pids\n",
			"sys/fs/cgroup/edge/pi/cgroup.type": "domain\n", "sys/fs/cgroup/edge/pi/cgroup.subtree_control": "cpu memory pids\n"}), "")
		r := h.CgroupDelegation("/edge/pi", CgroupControllers)
		want(t, r, Pass, "memory, cpu, pids delegated down to /edge/pi")
		if strings.Contains(r.Detail, "runc") {
			t.Fatalf("%+v: nothing left for runc to enable", r)
		}
	})
	t.Run("EmptyCgroupOnTheWay", func(t *testing.T) {
		h := fakeHost(tree(t, map[string]string{"sys/fs/cgroup/cgroup.controllers": all, "sys/fs/cgroup/cgroup.subtree_control": all,
			"sys/fs/cgroup/edge/cgroup.type": "domain\n", "sys/fs/cgroup/edge/cgroup.subtree_control": "", "sys/fs/cgroup/edge/cgroup.procs": ""}), "")
		want(t, h.CgroupDelegation("/edge/pi", CgroupControllers), Pass)
	})
	t.Run("ProcessesInTheWay", func(t *testing.T) {
		h := fakeHost(tree(t, map[string]string{"sys/fs/cgroup/cgroup.controllers": all, "sys/fs/cgroup/cgroup.subtree_control": all,
			"sys/fs/cgroup/edge/cgroup.type": "domain\n", "sys/fs/cgroup/edge/cgroup.subtree_control": "cpu\n", "sys/fs/cgroup/edge/cgroup.procs": "4242\n"}), "")
		want(t, h.CgroupDelegation("/edge/pi", CgroupControllers), Fail, "/edge has processes", "memory, pids", "Delegate=yes")
	})
	t.Run("NamespaceRootWithProcesses", func(t *testing.T) { // in a container: the root of the view is not the real root
		h := fakeHost(tree(t, map[string]string{"sys/fs/cgroup/cgroup.controllers": "cpu memory pids\n", "sys/fs/cgroup/cgroup.subtree_control": "",
			"sys/fs/cgroup/cgroup.type": "domain\n", "sys/fs/cgroup/cgroup.procs": "1\n7\n"}), "")
		want(t, h.CgroupDelegation("/edge/pi", CgroupControllers), Fail, "/ has processes")
	})
	t.Run("MissingControllerIsNotDelegations", func(t *testing.T) {
		want(t, v2Host().CgroupDelegation("/edge/pi", CgroupControllers), Pass, "cpu, pids")
	})
}

func TestModule(t *testing.T) {
	t.Run("Pi", func(t *testing.T) {
		h := piHost()
		want(t, h.Module("bridge", "CONFIG_BRIDGE"), Pass, "loaded")
		want(t, h.Module("br_netfilter", "CONFIG_BRIDGE_NETFILTER"), Pass, "loaded")
		want(t, h.Module("veth", "CONFIG_VETH"), Pass, "not loaded yet", "modprobe veth")
		want(t, h.Module("nf_nat", "CONFIG_NF_NAT"), Pass, "not loaded yet")
	})
	t.Run("KernelWithout", func(t *testing.T) {
		h := v2Host()
		want(t, h.Module("br_netfilter", "CONFIG_BRIDGE_NETFILTER"), Fail, "built without CONFIG_BRIDGE_NETFILTER",
			"modprobe br_netfilter", "kmod", "CONFIG_BRIDGE_NETFILTER")
		want(t, h.Module("veth", "CONFIG_VETH"), Pass, "not loaded yet")
	})
	t.Run("BuiltinInSys", func(t *testing.T) { // a /sys/module entry without initstate
		h := fakeHost(tree(t, map[string]string{"sys/module/bridge/parameters": "DIR", "proc/modules": ""}), "6.6")
		want(t, h.Module("bridge", "CONFIG_BRIDGE"), Pass, "built into the kernel")
	})
	t.Run("ModulesBuiltin", func(t *testing.T) {
		h := fakeHost(tree(t, map[string]string{"proc/modules": "", "lib/modules/6.6/modules.builtin": "kernel/drivers/net/veth.ko\n",
			"lib/modules/6.6/modules.dep": ""}), "6.6")
		want(t, h.Module("veth", "CONFIG_VETH"), Pass, "modules.builtin")
	})
	t.Run("ConfigGz", func(t *testing.T) { // a kernel without module support, like this CI host's
		var buf bytes.Buffer
		z := gzip.NewWriter(&buf)
		fmt.Fprint(z, "CONFIG_VETH=y\n# CONFIG_MODULES is not set\n")
		z.Close()
		h := fakeHost(tree(t, map[string]string{"proc/config.gz": buf.String()}), "6.18")
		want(t, h.Module("veth", "CONFIG_VETH"), Pass, "CONFIG_VETH=y")
		want(t, h.Module("nf_nat", "CONFIG_NF_NAT"), Fail, "built without CONFIG_NF_NAT", "modprobe nf_nat")
	})
	t.Run("ConfigModuleNotInstalled", func(t *testing.T) {
		h := fakeHost(tree(t, map[string]string{"proc/modules": "", "boot/config-6.6": "CONFIG_VETH=m\n", "lib/modules/6.6/modules.dep": ""}), "6.6")
		want(t, h.Module("veth", "CONFIG_VETH"), Fail, "CONFIG_VETH=m but the module is not installed")
	})
	t.Run("UpgradedWithoutReboot", func(t *testing.T) {
		h := fakeHost(tree(t, map[string]string{"proc/modules": "", "lib/modules/6.6.40/modules.dep": ""}), "6.6.31")
		want(t, h.Module("veth", "CONFIG_VETH"), Fail, "no modules for the running kernel 6.6.31", "reboot into the installed kernel")
	})
	t.Run("CannotTell", func(t *testing.T) {
		want(t, fakeHost(t.TempDir(), "6.6").Module("veth", "CONFIG_VETH"), Warn, "cannot tell")
	})
}

func TestOverlayfs(t *testing.T) {
	want(t, piHost().Overlayfs(), Pass, "overlay in")
	want(t, v2Host().Overlayfs(), Pass, "overlay: module, not loaded yet")
	h := fakeHost(tree(t, map[string]string{"proc/filesystems": "nodev\tproc\n\text4\n", "proc/modules": "", "lib/modules/6.6/modules.dep": ""}), "6.6")
	want(t, h.Overlayfs(), Fail, "modprobe overlay", "CONFIG_OVERLAY_FS")
}

// fakeExec answers programs from a table: "name args..." -> output, error.
type fakeExec map[string]struct {
	out string
	err error
}

func (f fakeExec) run(_ context.Context, name string, args ...string) ([]byte, error) {
	r, ok := f[strings.Join(append([]string{name}, args...), " ")]
	if !ok {
		return nil, fmt.Errorf("unexpected command %s %v", name, args)
	}
	return []byte(r.out), r.err
}

// withPrograms gives h a bin directory holding the named (fake)
// executables, run through f.
func withPrograms(t *testing.T, h Host, f fakeExec, names ...string) Host {
	files := map[string]string{}
	for _, n := range names {
		files[n] = "#!/bin/false\n"
	}
	h.Path = []string{tree(t, files)}
	h.Exec = f.run
	return h
}

func TestIptables(t *testing.T) {
	nft := fakeExec{"iptables -V": {out: "iptables v1.8.9 (nf_tables)\n"}, "iptables -t nat -S": {out: "-P PREROUTING ACCEPT\n"}}
	t.Run("Missing", func(t *testing.T) {
		want(t, withPrograms(t, piHost(), nft).Iptables(ctx), Fail, "iptables not found", "apt-get install iptables")
	})
	t.Run("NftWorks", func(t *testing.T) {
		want(t, withPrograms(t, piHost(), nft, "iptables").Iptables(ctx), Pass, "iptables v1.8.9 (nf_tables)", "nat table readable")
	})
	t.Run("NftBroken", func(t *testing.T) {
		f := fakeExec{"iptables -V": nft["iptables -V"], "iptables -t nat -S": {out: "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Invalid argument\n", err: errors.New("exit status 4")}}
		want(t, withPrograms(t, piHost(), f, "iptables").Iptables(ctx), Fail, "Could not fetch rule set",
			"update-alternatives --set iptables /usr/sbin/iptables-legacy", "package iptables")
	})
	t.Run("LegacyBroken", func(t *testing.T) {
		f := fakeExec{"iptables -V": {out: "iptables v1.8.9 (legacy)\n"}, "iptables -t nat -S": {out: "can't initialize iptables table `nat': Table does not exist\n", err: errors.New("exit status 3")}}
		want(t, withPrograms(t, piHost(), f, "iptables").Iptables(ctx), Fail, "Table does not exist", "/usr/sbin/iptables-nft")
	})
	t.Run("BothBackends", func(t *testing.T) {
		f := fakeExec{"iptables -V": nft["iptables -V"], "iptables -t nat -S": {out: "# Warning: iptables-legacy tables present, use iptables-legacy to see them\n-P PREROUTING ACCEPT\n"}}
		want(t, withPrograms(t, piHost(), f, "iptables").Iptables(ctx), Warn, "legacy backend too", "update-alternatives")
	})
	t.Run("NotRoot", func(t *testing.T) { // -V only: listing a table needs root
		h := piHost()
		h.Root = false
		r := withPrograms(t, h, fakeExec{"iptables -V": nft["iptables -V"]}, "iptables").Iptables(ctx)
		want(t, r, Warn, "nf_tables", "needs root")
		if !r.NeedsRoot {
			t.Fatal("NeedsRoot not set")
		}
	})
}

func TestRunc(t *testing.T) {
	f := fakeExec{"runc --version": {out: "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\n"}}
	want(t, withPrograms(t, piHost(), f, "runc").Runc(ctx), Pass, "runc version 1.1.5+ds1")
	want(t, withPrograms(t, piHost(), f).Runc(ctx), Fail, "runc not found", "apt-get install runc")
}

func TestCNI(t *testing.T) {
	dir := tree(t, map[string]string{"bridge": "x", "host-local": "x", "portmap": "x", "loopback": "x"})
	want(t, CNI(dir, CNIPlugins), Pass, "bridge, host-local, portmap, loopback in "+dir)
	os.Remove(filepath.Join(dir, "portmap"))
	os.Chmod(filepath.Join(dir, "loopback"), 0o644)
	want(t, CNI(dir, CNIPlugins), Fail, "missing from "+dir+": portmap, loopback", "apt-get install containernetworking-plugins", "--cni-bin-dir")
}

func TestContainerd(t *testing.T) {
	h := piHost()
	version := func(context.Context) (string, error) { return "containerd 1.6.20", nil }
	t.Run("NoSocket", func(t *testing.T) {
		want(t, h.Containerd(ctx, filepath.Join(t.TempDir(), "containerd.sock"), version), Fail, "no socket at",
			"apt-get install containerd", "systemctl enable --now containerd", "--containerd")
	})
	t.Run("NotASocket", func(t *testing.T) {
		f := filepath.Join(tree(t, map[string]string{"sock": ""}), "sock")
		want(t, h.Containerd(ctx, f, version), Fail, "is not a socket")
	})
	sock := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Run("Answers", func(t *testing.T) {
		want(t, h.Containerd(ctx, sock, version), Pass, "containerd 1.6.20 at "+sock)
	})
	t.Run("DoesNotAnswer", func(t *testing.T) {
		broken := func(context.Context) (string, error) { return "", errors.New("context deadline exceeded") }
		want(t, h.Containerd(ctx, sock, broken), Fail, "does not answer: context deadline exceeded", "journalctl -u containerd")
	})
	t.Run("NotRoot", func(t *testing.T) {
		h := h
		h.Root = false
		denied := func(context.Context) (string, error) {
			return "", errors.New("dial unix " + sock + ": connect: permission denied")
		}
		r := h.Containerd(ctx, sock, denied)
		want(t, r, Warn, "needs root")
		if !r.NeedsRoot {
			t.Fatal("NeedsRoot not set")
		}
	})
}

func TestClock(t *testing.T) {
	h := piHost()
	want(t, h.Clock(), Pass, "2025-06-01")
	h.Now = func() time.Time { return time.Unix(42, 0) } // a Pi without an RTC before NTP
	want(t, h.Clock(), Fail, "1970-01-01", "not valid yet", "timedatectl set-ntp true", "systemd-timesyncd")
}

func TestDiskFree(t *testing.T) {
	dir := t.TempDir()
	want(t, DiskFree(dir, 1), Pass, "free for "+dir)
	want(t, DiskFree(filepath.Join(dir, "a", "b"), 1), Pass, "not made yet; on the filesystem of "+dir)
	want(t, DiskFree(dir, 1<<62), Fail, "need 4294967296.0 GiB", "df -h "+dir, "holding "+dir)
}

func TestWritable(t *testing.T) {
	h := piHost()
	dir := t.TempDir()
	want(t, h.Writable(dir), Pass, dir+" is writable")
	want(t, h.Writable(filepath.Join(dir, "master")), Pass, "does not exist yet; "+dir+" is writable")
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("the probe left %v", entries)
	}
	f := filepath.Join(tree(t, map[string]string{"file": "x"}), "file")
	want(t, h.Writable(filepath.Join(f, "master")), Fail, "is not a directory", "--data-dir")
	if os.Geteuid() != 0 {
		ro := t.TempDir()
		os.Chmod(ro, 0o555)
		h.Root = false
		want(t, h.Writable(ro), Warn, "needs root")
	}
}

func TestPort(t *testing.T) {
	h := piHost()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	port := ln.Addr().(*net.TCPAddr).Port
	t.Run("InUse", func(t *testing.T) {
		want(t, h.Port("--api-addr", addr, "edgemaster"), Fail, addr+" is in use by another program", "--api-addr")
	})
	t.Run("HeldByEdgemaster", func(t *testing.T) { // found through /proc/net/tcp and the process's fds
		dir := tree(t, map[string]string{
			"proc/net/tcp": "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
				fmt.Sprintf("   0: 0100007F:%04X 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 98765 1 0000000000000000 100 0 0 10 0\n", port),
			"proc/4242/comm": "edgemaster\n", "proc/4242/fd": "DIR"})
		os.Symlink("socket:[98765]", filepath.Join(dir, "proc/4242/fd/7"))
		h := fakeHost(dir, "")
		want(t, h.Port("--api-addr", addr, "edgemaster"), Pass, "held by a running edgemaster (pid 4242)")
		want(t, h.Port("--api-addr", addr, "other"), Fail, "in use by edgemaster (pid 4242)", "stop edgemaster (pid 4242)")
	})
	t.Run("RealProc", func(t *testing.T) { // this test process holds it
		h := Host{Root: true}
		comm := strings.TrimSpace(readOr("/proc/self/comm"))
		want(t, h.Port("--api-addr", addr, comm), Pass, fmt.Sprintf("held by a running %s (pid %d)", comm, os.Getpid()))
	})
	ln.Close()
	t.Run("Free", func(t *testing.T) {
		want(t, h.Port("--api-addr", addr, "edgemaster"), Pass, addr+" is free")
	})
	t.Run("NotOurAddress", func(t *testing.T) {
		want(t, h.Port("--mqtt-addr", "192.0.2.1:8883", "edgemaster"), Fail, "no interface has that address", "--mqtt-addr")
	})
}

func TestSQLite(t *testing.T) {
	dir := t.TempDir()
	var got string
	ok := func(d string) error { got = d; return nil }
	want(t, SQLite(dir, ok), Pass, dir)
	if got != dir {
		t.Fatalf("opened in %s", got)
	}
	SQLite(filepath.Join(dir, "missing"), ok)
	if got != os.TempDir() {
		t.Fatalf("a data dir not made yet: opened in %s", got)
	}
	want(t, SQLite(dir, func(string) error { return errors.New("disk I/O error") }), Fail, "disk I/O error", "--data-dir")
}

func TestPrint(t *testing.T) {
	rs := Run(ctx, []Check{
		{"clock", func(context.Context) Result { return pass("2025-06-01") }},
		{"cgroup memory", func(context.Context) Result { return fail("add it\nto cmdline.txt", "disabled") }},
		{"iptables", func(context.Context) Result { return needsRoot("iptables v1.8.9") }},
	})
	var b bytes.Buffer
	if n := Print(&b, rs); n != 1 {
		t.Fatalf("Print says %d failed", n)
	}
	wantOut := `PASS  clock          2025-06-01
FAIL  cgroup memory  disabled
      fix: add it to cmdline.txt
WARN  iptables       iptables v1.8.9 (needs root)
3 checks: 1 passed, 1 warning, 1 failed
not root: run as root to check iptables
`
	if b.String() != wantOut {
		t.Fatalf("printed\n%s\nwant\n%s", b.String(), wantOut)
	}
	if f := Failed(rs); len(f) != 1 || f[0].Name != "cgroup memory" {
		t.Fatalf("Failed = %+v", f)
	}
}

// The agent's whole table on the Pi with the memory cgroup disabled:
// that check fails, every other passes.
func TestAgent_PiWithMemoryDisabled(t *testing.T) {
	f := fakeExec{"iptables -V": {out: "iptables v1.8.9 (nf_tables)\n"}, "iptables -t nat -S": {out: "-P PREROUTING ACCEPT\n"},
		"runc --version": {out: "runc version 1.1.5\n"}}
	h := withPrograms(t, piHost(), f, "iptables", "runc")
	sock := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := t.TempDir()
	cs := Agent(h, AgentConfig{DataDir: data, Containerd: sock, ContainerdRoot: data, CgroupParent: "/edge/pi",
		CNIBinDir: tree(t, map[string]string{"bridge": "", "host-local": "", "portmap": "", "loopback": ""}), MinFree: 1,
		RuntimeVersion: func(context.Context) (string, error) { return "containerd 1.6.20", nil }})
	rs := Run(ctx, cs)
	var names []string
	for _, r := range rs {
		names = append(names, r.Name)
		if (r.Status == Fail) != (r.Name == "cgroup memory") {
			t.Errorf("%s: %s %s (fix: %s)", r.Name, r.Status, r.Detail, r.Fix)
		}
	}
	wantNames := "cgroup memory,cgroup cpu,cgroup pids,cgroup delegation,overlayfs,module bridge,module veth,module br_netfilter,module nf_nat," +
		"iptables,containerd,runc,cni plugins,clock,data dir,disk data dir,disk containerd root"
	if got := strings.Join(names, ","); got != wantNames {
		t.Fatalf("checks %s\nwant %s", got, wantNames)
	}
}

func TestMaster(t *testing.T) {
	h := piHost()
	dir := t.TempDir()
	names := func(cs []Check) string {
		var n []string
		for _, c := range cs {
			n = append(n, c.Name)
		}
		return strings.Join(n, ",")
	}
	cfg := MasterConfig{DataDir: dir, APIAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", MinFree: 1, SQLite: func(string) error { return nil }}
	cs := Master(h, cfg)
	if got := names(cs); got != "clock,data dir,disk data dir,port api,port mqtt,sqlite" {
		t.Fatalf("checks %s", got)
	}
	for _, r := range Run(ctx, cs) {
		if r.Status != Pass {
			t.Errorf("%s: %s %s", r.Name, r.Status, r.Detail)
		}
	}
	cfg.MQTTAddr = "" // an external broker
	if got := names(Master(h, cfg)); got != "clock,data dir,disk data dir,port api,sqlite" {
		t.Fatalf("checks with an external broker %s", got)
	}
}
