package preflight

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// firstLine returns the first non-empty line of out.
func firstLine(out []byte) string {
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// Iptables checks that iptables runs and that its backend (nf_tables or
// legacy) works on this kernel, by listing the nat table (read-only): the
// service proxy and CNI's portmap write there.
func (h Host) Iptables(ctx context.Context) Result {
	h = h.withDefaults()
	if _, err := h.lookPath("iptables"); err != nil {
		return fail("apt-get install iptables", "iptables not found (looked in %s)", strings.Join(h.Path, ":"))
	}
	out, err := h.Exec(ctx, "iptables", "-V")
	version := firstLine(out)
	if err != nil {
		return fail("apt-get install --reinstall iptables", "iptables -V: %v %s", err, version)
	}
	backend, other := "legacy", "nft"
	if strings.Contains(version, "nf_tables") {
		backend, other = "nf_tables", "legacy"
	}
	switchFix := fmt.Sprintf("switch the backend: update-alternatives --set iptables /usr/sbin/iptables-%s (and ip6tables); package iptables", other)
	if !h.Root {
		return needsRoot("%s; listing the nat table", version)
	}
	out, err = h.Exec(ctx, "iptables", "-t", "nat", "-S")
	if err != nil {
		return fail(switchFix, "%s: iptables -t nat -S: %v: %s", version, err, firstLine(out))
	}
	if strings.Contains(string(out), "iptables-legacy tables present") {
		return warn("keep every tool on one backend: see iptables-legacy-save, and switch with update-alternatives --config iptables",
			"%s works, but rules exist in the legacy backend too (another tool uses iptables-legacy): the two sets both apply", version)
	}
	return pass("%s: nat table readable (%s backend)", version, backend)
}

// Runc checks that runc, which containerd starts containers with, is
// installed.
func (h Host) Runc(ctx context.Context) Result {
	h = h.withDefaults()
	p, err := h.lookPath("runc")
	if err != nil {
		return fail("apt-get install runc", "runc not found (looked in %s)", strings.Join(h.Path, ":"))
	}
	out, err := h.Exec(ctx, "runc", "--version")
	if err != nil {
		return fail("apt-get install --reinstall runc", "%s --version: %v %s", p, err, firstLine(out))
	}
	return pass("%s: %s", p, firstLine(out))
}

// CNIPlugins are the plugins of the agent's default pod network.
var CNIPlugins = []string{"bridge", "host-local", "portmap", "loopback"}

// CNI checks that the CNI plugins are executables in dir.
func CNI(dir string, plugins []string) Result {
	var missing []string
	for _, p := range plugins {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fail(fmt.Sprintf("apt-get install containernetworking-plugins (puts them in /usr/lib/cni), or pass --cni-bin-dir with the directory that has them"),
			"missing from %s: %s", dir, strings.Join(missing, ", "))
	}
	return pass("%s in %s", strings.Join(plugins, ", "), dir)
}

// Containerd checks that containerd answers at socket; version asks it
// (through the containerd client, with ctx's timeout).
func (h Host) Containerd(ctx context.Context, socket string, version func(ctx context.Context) (string, error)) Result {
	h = h.withDefaults()
	fix := fmt.Sprintf("apt-get install containerd, then systemctl enable --now containerd (see systemctl status containerd, journalctl -u containerd); or pass --containerd with its socket")
	fi, err := os.Stat(socket)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fail(fix, "no socket at %s: containerd is not running there", socket)
	case errors.Is(err, fs.ErrPermission) && !h.Root:
		return needsRoot("cannot reach %s", socket)
	case err != nil:
		return fail(fix, "%s: %v", socket, err)
	case fi.Mode()&fs.ModeSocket == 0:
		return fail(fix, "%s is not a socket", socket)
	}
	v, err := version(ctx)
	if err != nil {
		if !h.Root && strings.Contains(err.Error(), "permission denied") {
			return needsRoot("cannot connect to %s", socket)
		}
		return fail(fix, "containerd at %s does not answer: %v", socket, err)
	}
	return pass("%s at %s", v, socket)
}
