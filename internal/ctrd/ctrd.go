// Package ctrd sets up private containerd daemons, each with its own root,
// state and socket below one directory: the agent's runtime tests and the
// e2e fleet (make cluster) run one per node, beside any system containerd.
package ctrd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// WriteConfig writes the config of a private containerd keeping everything
// under dir (created if needed), and returns its path and the socket that
// containerd will listen on. The CRI and unusable snapshotters are off.
func WriteConfig(dir string) (config, socket string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	socket = filepath.Join(dir, "containerd.sock")
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), socket, socket+".ttrpc")
	config = filepath.Join(dir, "config.toml")
	return config, socket, os.WriteFile(config, []byte(conf), 0o644)
}

// UnmountUnder lazily unmounts everything mounted below dir (and dir),
// deepest first: what a stopped containerd leaves of its snapshots.
func UnmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var mps []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			mps = append(mps, f[1])
		}
	}
	for i := len(mps) - 1; i >= 0; i-- {
		syscall.Unmount(mps[i], syscall.MNT_DETACH)
	}
}
