package edgeagent

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/edgeorch/edge/core"
)

// nodeLabels returns the well-known labels plus the user's.
func (a *Agent) nodeLabels() map[string]string {
	l := map[string]string{
		core.LabelArch:     runtime.GOARCH,
		core.LabelOS:       runtime.GOOS,
		core.LabelHostname: a.Name,
	}
	for k, v := range a.Labels {
		l[k] = v
	}
	return l
}

// nodeStatus gathers the facts the scheduler and users need.
func (a *Agent) nodeStatus() (core.NodeStatus, error) {
	var uts unix.Utsname
	unix.Uname(&uts)
	kernel := string(bytes.TrimRight(uts.Release[:], "\x00"))
	mem := memTotal()
	capacity := core.ResourceList{
		"cpu":    core.FormatMilliCPU(int64(runtime.NumCPU()) * 1000),
		"memory": core.FormatBytes(mem),
		"pods":   "110",
	}
	if a.VolumeDir != "" {
		if err := os.MkdirAll(a.VolumeDir, 0o755); err != nil {
			return core.NodeStatus{}, fmt.Errorf("volume directory: %w", err)
		}
		if n := a.volumeCapacity(); n > 0 {
			capacity[core.ResourceStorage] = core.FormatBytes(n)
		}
	}
	reserved := a.SystemReserved
	if reserved == nil {
		reserved = defaultReserved(mem)
	}
	allocatable, err := allocatable(capacity, reserved)
	if err != nil {
		return core.NodeStatus{}, err
	}
	st := core.NodeStatus{
		Capacity:    capacity,
		Allocatable: allocatable,
		NodeInfo: core.NodeSystemInfo{
			KernelVersion:           kernel,
			OSImage:                 osImage(),
			ContainerRuntimeVersion: "containerd",
			KubeletVersion:          a.Version,
			OperatingSystem:         runtime.GOOS,
			Architecture:            runtime.GOARCH,
			MachineID:               strings.TrimSpace(readFile("/etc/machine-id")),
		},
		Addresses: []core.NodeAddress{{Type: "Hostname", Address: a.Name}},
	}
	ip := a.NodeIP
	if ip == "" {
		ip = hostIP()
	}
	a.hostIP.Store(ip)
	st.Addresses = withInternalIP(st.Addresses, ip)
	return st, nil
}

// withInternalIP returns addrs with ip as the InternalIP ("" for none).
func withInternalIP(addrs []core.NodeAddress, ip string) []core.NodeAddress {
	var out []core.NodeAddress
	if ip != "" {
		out = append(out, core.NodeAddress{Type: "InternalIP", Address: ip})
	}
	for _, a := range addrs {
		if a.Type != "InternalIP" {
			out = append(out, a)
		}
	}
	return out
}

// refreshHostIP looks at the node's address again (a Pi that renewed its
// DHCP lease, a cable moved to another port): other nodes route this
// node's pods via it and LoadBalancer rules open on it, so a change goes
// out in the next report and to the service proxy.
func (a *Agent) refreshHostIP() {
	if a.NodeIP != "" {
		return
	}
	ip := hostIP()
	if ip == "" || ip == a.HostIP() {
		return
	}
	a.Log.Info("the node's address changed", "was", a.HostIP(), "now", ip)
	a.hostIP.Store(ip)
	a.mu.Lock()
	a.node.Addresses = withInternalIP(a.node.Addresses, ip)
	a.mu.Unlock()
	a.markDirty()
}

// defaultReserved keeps 100m of CPU and a quarter of the memory, at most
// 256Mi, from pods. The OS (systemd, journald, sshd, avahi), containerd,
// a shim per container and the agent take 150-250 MB on a Pi; GKE reserves
// 255Mi on its smallest machines. A fixed 256Mi would take half of a Pi
// Zero 2's 512 MB, hence the quarter: ~110Mi there, ~230Mi on a 1 GB Pi,
// 256Mi from 2 GB up.
func defaultReserved(memTotal int64) core.ResourceList {
	mem := min(memTotal/4, 256<<20) &^ (1<<20 - 1) // whole MiB
	return core.ResourceList{"cpu": "100m", "memory": core.FormatBytes(mem)}
}

// allocatable is capacity less reserved, never below zero.
func allocatable(capacity, reserved core.ResourceList) (core.ResourceList, error) {
	out := core.ResourceList{}
	for k, v := range capacity {
		out[k] = v
	}
	for k, q := range reserved {
		c, ok := capacity[k]
		if !ok {
			return nil, fmt.Errorf("system reserved: %q is not a resource of this node (cpu, memory, pods)", k)
		}
		value, format := core.Quantity.Value, core.FormatBytes
		switch k {
		case "cpu":
			value, format = core.Quantity.MilliValue, core.FormatMilliCPU
		case "pods":
			format = func(n int64) core.Quantity { return core.Quantity(strconv.FormatInt(n, 10)) }
		}
		r, err := value(q)
		if err == nil && r < 0 {
			err = fmt.Errorf("quantity %q is negative", string(q))
		}
		if err != nil {
			return nil, fmt.Errorf("system reserved %s: %v", k, err)
		}
		have, err := value(c)
		if err != nil {
			return nil, fmt.Errorf("capacity %s: %v", k, err)
		}
		out[k] = format(max(have-r, 0))
	}
	return out, nil
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func osImage() string {
	for _, line := range strings.Split(readFile("/etc/os-release"), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

// hostIP returns the first global unicast IPv4 address of an interface
// that is not a bridge (the pod bridge holds the pod subnet's gateway),
// the node's InternalIP.
func hostIP() string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return ""
	}
	var bridged string // a LAN bridge (br0 holding eth0) if nothing else
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		if _, err := os.Stat("/sys/class/net/" + ifc.Name + "/bridge"); err == nil {
			if bridged == "" {
				bridged = firstIPv4(ifc)
			}
			continue
		}
		if ip := firstIPv4(ifc); ip != "" {
			return ip
		}
	}
	return bridged
}

// firstIPv4 returns the interface's first global unicast IPv4 address.
func firstIPv4(ifc net.Interface) string {
	addrs, err := ifc.Addrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
			return ipn.IP.String()
		}
	}
	return ""
}

// HostIP returns the node's InternalIP ("" if it has none).
func (a *Agent) HostIP() string {
	ip, _ := a.hostIP.Load().(string)
	return ip
}
