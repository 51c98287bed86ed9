package edgeagent

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/edgeorch/edge/core"
)

// spec builds the OCI spec containerd would get for cfg (without the
// image's part).
func spec(t *testing.T, cfg *core.ContainerConfig, swap bool) *oci.Spec {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "edge")
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: cfg.ID}, containerSpecOpts(cfg, "/edge/pi/"+cfg.ID, swap)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The memory limit caps swap too, where the host can account swap: the
// container cannot grow past its limit into swap. Where it cannot, no swap
// limit is set, or runc would fail to start the container.
func TestSpecMemoryAndSwap(t *testing.T) {
	cfg := &core.ContainerConfig{ID: "web.app.1", Resources: core.ContainerResources{MemoryLimit: 32 << 20,
		CPUQuota: 25000, CPUPeriod: cpuPeriod, CPUShares: 102, PidsLimit: 512}}
	s := spec(t, cfg, true)
	r := s.Linux.Resources
	if r.Memory == nil || *r.Memory.Limit != 32<<20 || r.Memory.Swap == nil || *r.Memory.Swap != 32<<20 {
		t.Fatalf("memory %+v", r.Memory)
	}
	if *r.CPU.Quota != 25000 || *r.CPU.Period != cpuPeriod || *r.CPU.Shares != 102 || *r.Pids.Limit != 512 {
		t.Fatalf("cpu %+v pids %+v", r.CPU, r.Pids)
	}
	if s.Linux.CgroupsPath != "/edge/pi/web.app.1" {
		t.Fatalf("cgroup %q", s.Linux.CgroupsPath)
	}
	if r := spec(t, cfg, false).Linux.Resources; *r.Memory.Limit != 32<<20 || r.Memory.Swap != nil {
		t.Fatalf("without swap accounting: memory %+v", r.Memory)
	}
	cfg.Resources.MemoryLimit = 0
	if r := spec(t, cfg, true).Linux.Resources; r.Memory != nil && (r.Memory.Limit != nil || r.Memory.Swap != nil) {
		t.Fatalf("no limit, yet memory %+v", r.Memory)
	}
}

// Namespaces, hostname, mounts, environment and privileges.
func TestSpecPodSettings(t *testing.T) {
	cfg := &core.ContainerConfig{ID: "web.app.1", NetNSPath: "/run/edge/pi/netns/uid", Hostname: "web",
		Env: []string{"MODE=edge"}, WorkingDir: "/srv",
		Mounts: []core.Mount{{Source: "/data/pods/uid/hosts", Destination: "/etc/hosts", ReadOnly: true}, {Source: "/srv/cache", Destination: "/cache"}}}
	s := spec(t, cfg, false)
	var netns *specs.LinuxNamespace
	for i, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			netns = &s.Linux.Namespaces[i]
		}
	}
	if netns == nil || netns.Path != cfg.NetNSPath || s.Hostname != "web" {
		t.Fatalf("network namespace %+v, hostname %q", netns, s.Hostname)
	}
	if !slices.Contains(s.Process.Env, "MODE=edge") || s.Process.Cwd != "/srv" {
		t.Fatalf("process %+v", s.Process)
	}
	var got []string
	for _, m := range s.Mounts {
		if m.Type == "bind" {
			got = append(got, m.Source+":"+m.Destination+":"+strings.Join(m.Options, ","))
		}
	}
	want := []string{"/data/pods/uid/hosts:/etc/hosts:rbind,rprivate,ro", "/srv/cache:/cache:rbind,rprivate,rw"}
	if !slices.Equal(got, want) {
		t.Fatalf("bind mounts %v, want %v", got, want)
	}
	if s.Process.Capabilities != nil && slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") {
		t.Fatal("an unprivileged container has CAP_SYS_ADMIN")
	}
	if d := s.Linux.Resources.Devices; len(d) == 0 || d[0].Allow {
		t.Fatalf("an unprivileged container's device rules %+v", d)
	}

	cfg.HostNetwork, cfg.NetNSPath, cfg.Hostname, cfg.Privileged = true, "", "", true
	s = spec(t, cfg, false)
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			t.Fatalf("hostNetwork container has its own network namespace %+v", ns)
		}
	}
	// Its capabilities are the agent's own (none when a test runs as an
	// ordinary user), so check the device rule: every device allowed.
	if d := s.Linux.Resources.Devices; len(d) == 0 || !d[0].Allow || d[0].Access != "rwm" || d[0].Type != "" {
		t.Fatalf("a privileged container's device rules %+v", d)
	}
}

// Allocatable is capacity less the system reserve, never below zero.
func TestAllocatable(t *testing.T) {
	capacity := core.ResourceList{"cpu": "4", "memory": "1Gi", "pods": "110"}
	for _, tt := range []struct {
		name     string
		reserved core.ResourceList
		want     core.ResourceList
		err      string
	}{
		{"default for 1Gi", defaultReserved(1 << 30), core.ResourceList{"cpu": "3900m", "memory": "768Mi", "pods": "110"}, ""},
		{"none", core.ResourceList{}, capacity, ""},
		{"more than there is", core.ResourceList{"cpu": "8", "memory": "2Gi"}, core.ResourceList{"cpu": "0", "memory": "0", "pods": "110"}, ""},
		{"pods", core.ResourceList{"pods": "10"}, core.ResourceList{"cpu": "4", "memory": "1Gi", "pods": "100"}, ""},
		{"bad quantity", core.ResourceList{"memory": "lots"}, nil, "system reserved memory"},
		{"negative", core.ResourceList{"cpu": "-1"}, nil, "negative"},
		{"unknown resource", core.ResourceList{"gpu": "1"}, nil, `"gpu" is not a resource of this node`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := allocatable(capacity, tt.reserved)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !core.JSONEqual(got, tt.want) {
				t.Fatalf("allocatable %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

// The default reserve fits a small Pi: a quarter of memory up to 256Mi.
func TestDefaultReserved(t *testing.T) {
	for _, tt := range []struct {
		mem  int64
		want core.Quantity
	}{
		{430 << 20, "107Mi"}, // Pi Zero 2 W (512 MB, MemTotal ~430 MiB)
		{910 << 20, "227Mi"}, // Pi 3/4 with 1 GB
		{1 << 30, "256Mi"},
		{8 << 30, "256Mi"},
	} {
		if got := defaultReserved(tt.mem); got["memory"] != tt.want || got["cpu"] != "100m" {
			t.Errorf("defaultReserved(%d MiB) = %v, want memory %s", tt.mem>>20, got, tt.want)
		}
	}
}

// The agent reports Allocatable below Capacity, and refuses a reserve it
// cannot parse.
func TestNodeStatusReserve(t *testing.T) {
	a := &Agent{Name: "pi", SystemReserved: core.ResourceList{"memory": "100Mi", "cpu": "500m"}}
	st, err := a.nodeStatus()
	if err != nil {
		t.Fatal(err)
	}
	capMem, _ := st.Capacity["memory"].Value()
	allocMem, _ := st.Allocatable["memory"].Value()
	capCPU, _ := st.Capacity["cpu"].MilliValue()
	allocCPU, _ := st.Allocatable["cpu"].MilliValue()
	if capMem-allocMem != 100<<20 || capCPU-allocCPU != 500 || st.Allocatable["pods"] != "110" {
		t.Fatalf("capacity %v, allocatable %v", st.Capacity, st.Allocatable)
	}
	a.SystemReserved = core.ResourceList{"memory": "100MB!"}
	if _, err := a.nodeStatus(); err == nil {
		t.Fatal("a bad reserve was accepted")
	}
}

// The pod's security context applies to every container; a container's
// own setting wins.
func TestApplySecurity(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	yes, no := true, false
	pod := &core.PodSpec{HostPID: true, SecurityContext: &core.PodSecurityContext{RunAsUser: i64(1000), RunAsGroup: i64(1000),
		FSGroup: i64(2000), RunAsNonRoot: &yes, SeccompProfile: &core.SeccompProfile{Type: "RuntimeDefault"}}}
	c := &core.Container{Name: "c", SecurityContext: &core.SecurityContext{RunAsUser: i64(1001), AllowPrivilegeEscalation: &no,
		ReadOnlyRootFilesystem: &yes, Capabilities: &core.Capabilities{Add: []string{"net_admin"}, Drop: []string{"ALL"}}}}
	cfg := &core.ContainerConfig{}
	applySecurity(cfg, pod, c)
	if *cfg.UID != 1001 || *cfg.GID != 1000 || !slices.Equal(cfg.AdditionalGIDs, []uint32{2000}) || !cfg.RunAsNonRoot ||
		!cfg.ReadOnlyRoot || !cfg.NoNewPrivileges || !cfg.SeccompDefault || !cfg.HostPID || cfg.HostIPC ||
		!slices.Equal(cfg.CapAdd, []string{"CAP_NET_ADMIN"}) || !slices.Equal(cfg.CapDrop, []string{"ALL"}) || cfg.Privileged {
		t.Fatalf("config %+v", cfg)
	}
}
