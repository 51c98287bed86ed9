package preflight

import (
	"context"
)

// AgentConfig is what the agent's checks look at: its flags.
type AgentConfig struct {
	DataDir    string
	Containerd string // socket
	// ContainerdRoot is containerd's image and snapshot store (default
	// /var/lib/containerd), unless ContainerdRootOf finds it.
	ContainerdRoot string
	// ContainerdRootOf asks the running containerd where its store is
	// (optional; when it fails, ContainerdRoot is checked).
	ContainerdRootOf func(ctx context.Context) (string, error)
	CNIBinDir        string
	// CgroupParent is where the agent makes its containers' cgroups, such
	// as /edge/NODE.
	CgroupParent string
	// RuntimeVersion asks containerd at Containerd for its version.
	RuntimeVersion func(ctx context.Context) (string, error)
	MinFree        int64 // default MinFree
}

// Agent returns the checks of a worker node, in the order edgeagent check
// prints them.
func Agent(h Host, c AgentConfig) []Check {
	h = h.withDefaults()
	if c.ContainerdRoot == "" {
		c.ContainerdRoot = "/var/lib/containerd"
	}
	if c.MinFree == 0 {
		c.MinFree = MinFree
	}
	var cs []Check
	for _, name := range CgroupControllers {
		cs = append(cs, Check{"cgroup " + name, func(context.Context) Result { return h.CgroupController(name) }})
	}
	cs = append(cs,
		Check{"cgroup delegation", func(context.Context) Result { return h.CgroupDelegation(c.CgroupParent, CgroupControllers) }},
		Check{"overlayfs", func(context.Context) Result { return h.Overlayfs() }})
	for _, m := range KernelModules {
		cs = append(cs, Check{"module " + m.Name, func(context.Context) Result { return h.Module(m.Name, m.Option) }})
	}
	return append(cs,
		Check{"iptables", h.Iptables},
		Check{"containerd", func(ctx context.Context) Result { return h.Containerd(ctx, c.Containerd, c.RuntimeVersion) }},
		Check{"runc", h.Runc},
		Check{"cni plugins", func(context.Context) Result { return CNI(c.CNIBinDir, CNIPlugins) }},
		Check{"clock", func(context.Context) Result { return h.Clock() }},
		Check{"data dir", func(context.Context) Result { return h.Writable(c.DataDir) }},
		Check{"disk data dir", func(context.Context) Result { return DiskFree(c.DataDir, c.MinFree) }},
		Check{"disk containerd root", func(ctx context.Context) Result {
			root := c.ContainerdRoot
			if c.ContainerdRootOf != nil {
				if r, err := c.ContainerdRootOf(ctx); err == nil {
					root = r
				}
			}
			return DiskFree(root, c.MinFree)
		}},
	)
}

// MasterConfig is what the master's checks look at: its flags.
type MasterConfig struct {
	DataDir  string
	APIAddr  string
	MQTTAddr string // "": an external broker, no port of ours
	// Program is the master's process name: a port it holds already is
	// not a conflict (default "edgemaster").
	Program string
	// SQLite opens a scratch database in a directory, writes and reads it.
	SQLite  func(dir string) error
	MinFree int64 // default MinFree
}

// Master returns the checks of the master's machine.
func Master(h Host, c MasterConfig) []Check {
	h = h.withDefaults()
	if c.MinFree == 0 {
		c.MinFree = MinFree
	}
	if c.Program == "" {
		c.Program = "edgemaster"
	}
	cs := []Check{
		{"clock", func(context.Context) Result { return h.Clock() }},
		{"data dir", func(context.Context) Result { return h.Writable(c.DataDir) }},
		{"disk data dir", func(context.Context) Result { return DiskFree(c.DataDir, c.MinFree) }},
		{"port api", func(context.Context) Result { return h.Port("--api-addr", c.APIAddr, c.Program) }},
	}
	if c.MQTTAddr != "" {
		cs = append(cs, Check{"port mqtt", func(context.Context) Result { return h.Port("--mqtt-addr", c.MQTTAddr, c.Program) }})
	}
	return append(cs, Check{"sqlite", func(context.Context) Result { return SQLite(c.DataDir, c.SQLite) }})
}
