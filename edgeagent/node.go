package edgeagent

import (
	"bufio"
	"bytes"
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
func (a *Agent) nodeStatus() core.NodeStatus {
	var uts unix.Utsname
	unix.Uname(&uts)
	kernel := string(bytes.TrimRight(uts.Release[:], "\x00"))
	mem := memTotal()
	capacity := core.ResourceList{
		"cpu":    core.FormatMilliCPU(int64(runtime.NumCPU()) * 1000),
		"memory": core.FormatBytes(mem),
		"pods":   "110",
	}
	st := core.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
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
	if ip := hostIP(); ip != "" {
		a.hostIP = ip
		st.Addresses = append([]core.NodeAddress{{Type: "InternalIP", Address: ip}}, st.Addresses...)
	}
	return st
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

// hostIP returns the first global unicast IPv4 address, the node's
// InternalIP.
func hostIP() string {
	addrs, err := net.InterfaceAddrs()
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
