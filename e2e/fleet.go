// Package e2e holds the end-to-end harness: a LAN built from network
// namespaces joined by a bridge (itself in a namespace, so no test traffic
// touches the host's interfaces), with a master, workers that each run
// their own containerd, and a gateway for edgectl. `make cluster` starts
// one for people to try; the tests drive the same code. Everything it
// creates is removed by Destroy, also after a failure.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/edgeorch/edge/images"
	"github.com/edgeorch/edge/internal/ctrd"
)

// Fleet is one LAN and what runs on it.
type Fleet struct {
	Prefix string // namespace names start with it
	Dir    string // data dirs, logs and state.json
	Bin    string // directory with edgemaster, edgeagent, edgectl
	Subnet string // first three octets, e.g. "192.168.77"
	// Detach starts processes in their own session, to outlive this one
	// (make cluster); tests leave it false so a dead test kills its fleet.
	Detach bool

	Hosts []*Host
	Procs []*Proc
}

// Host is a network namespace on the LAN.
type Host struct {
	Name  string `json:"name"`
	NS    string `json:"ns"`
	IP    string `json:"ip"`
	Index int    `json:"index"`
	Link  string `json:"link"` // the veth end on the LAN bridge
	// Socket is the host's containerd socket, if it runs one.
	Socket string `json:"socket,omitempty"`
}

// Proc is a process started on a host.
type Proc struct {
	Name string   `json:"name"`
	Host string   `json:"host"`
	PID  int      `json:"pid"`
	Log  string   `json:"log"`
	Args []string `json:"args"`
	cmd  *exec.Cmd
	done chan struct{}
}

func (f *Fleet) lanNS() string { return f.Prefix + "-lan" }

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// NewFleet creates the LAN: a namespace holding bridge br0.
func NewFleet(prefix, dir, bin string) (*Fleet, error) {
	f := &Fleet{Prefix: prefix, Dir: dir, Bin: bin, Subnet: "192.168.77"}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := run("ip", "netns", "add", f.lanNS()); err != nil {
		return nil, err
	}
	for _, c := range [][]string{
		{"ip", "-n", f.lanNS(), "link", "set", "lo", "up"},
		{"ip", "-n", f.lanNS(), "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"},
		{"ip", "-n", f.lanNS(), "link", "set", "br0", "up"},
	} {
		if err := run(c...); err != nil {
			f.Destroy()
			return nil, err
		}
	}
	return f, f.save()
}

// AddHost plugs a new namespace into the LAN at .<index>.
func (f *Fleet) AddHost(name string) (*Host, error) {
	h := &Host{Name: name, NS: f.Prefix + "-" + name, Index: len(f.Hosts) + 1}
	h.IP = fmt.Sprintf("%s.%d", f.Subnet, h.Index)
	h.Link = fmt.Sprintf("%.8s%db", strings.ReplaceAll(f.Prefix, "-", ""), h.Index)
	inner := fmt.Sprintf("%.8s%da", strings.ReplaceAll(f.Prefix, "-", ""), h.Index)
	f.Hosts = append(f.Hosts, h)
	for _, c := range [][]string{
		{"ip", "netns", "add", h.NS},
		{"ip", "-n", h.NS, "link", "set", "lo", "up"},
		{"ip", "-n", f.lanNS(), "link", "add", h.Link, "type", "veth", "peer", "name", inner, "netns", h.NS},
		{"ip", "-n", f.lanNS(), "link", "set", h.Link, "master", "br0", "up"},
		{"ip", "-n", h.NS, "link", "set", inner, "name", "eth0"},
		{"ip", "-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
		{"ip", "-n", h.NS, "link", "set", "eth0", "up", "multicast", "on"},
		{"ip", "-n", h.NS, "route", "add", "224.0.0.0/4", "dev", "eth0"},
	} {
		if err := run(c...); err != nil {
			return nil, err
		}
	}
	return h, f.save()
}

// Host returns the host called name.
func (f *Fleet) Host(name string) *Host {
	for _, h := range f.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Start runs bin (a path, or a name in f.Bin) in the host's network
// namespace only: the mount namespace stays shared, so the pod namespaces
// an agent mounts are visible to its containerd.
func (f *Fleet) Start(h *Host, name, bin string, args ...string) (*Proc, error) {
	if !strings.Contains(bin, "/") {
		if p := filepath.Join(f.Bin, bin); fileExists(p) {
			bin = p
		} else if p, err := exec.LookPath(bin); err == nil {
			bin = p
		}
	}
	logPath := filepath.Join(f.Dir, name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	full := append([]string{"--net=/run/netns/" + h.NS, "--", bin}, args...)
	cmd := exec.Command("nsenter", full...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if f.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Name: name, Host: h.Name, PID: cmd.Process.Pid, Log: logPath, Args: append([]string{bin}, args...), cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	f.Procs = append(f.Procs, p)
	return p, f.save()
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Proc returns the last process started under name.
func (f *Fleet) Proc(name string) *Proc {
	for i := len(f.Procs) - 1; i >= 0; i-- {
		if f.Procs[i].Name == name {
			return f.Procs[i]
		}
	}
	return nil
}

// Alive reports whether the process still runs.
func (p *Proc) Alive() bool {
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	return syscall.Kill(p.PID, 0) == nil
}

// Stop signals the process and waits up to grace before killing it.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) {
	if !p.Alive() {
		return
	}
	syscall.Kill(p.PID, sig)
	deadline := time.Now().Add(grace)
	for p.Alive() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if p.Alive() {
		syscall.Kill(p.PID, syscall.SIGKILL)
		for i := 0; i < 100 && p.Alive(); i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// ExitCode returns the exit code of a finished process started by this
// Fleet value (-1 otherwise).
func (p *Proc) ExitCode() int {
	if p.cmd == nil || p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Tail returns the last n bytes of the process's log.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// LinkDown cuts a host off the LAN; LinkUp plugs it back.
func (f *Fleet) LinkDown(h *Host) error {
	return run("ip", "-n", f.lanNS(), "link", "set", h.Link, "down")
}
func (f *Fleet) LinkUp(h *Host) error { return run("ip", "-n", f.lanNS(), "link", "set", h.Link, "up") }

// StartContainerd runs a private containerd for host h (own root, state and
// socket) and imports the demo image into namespace edge.
func (f *Fleet) StartContainerd(h *Host) error {
	c, err := f.startContainerd(h)
	if err != nil {
		return err
	}
	defer c.Close()
	return importDemo(c)
}

// StartEmptyContainerd runs a private containerd for h with no image: for
// a node of another architecture than the demo image's, which pulls what
// it runs.
func (f *Fleet) StartEmptyContainerd(h *Host) error {
	c, err := f.startContainerd(h)
	if err != nil {
		return err
	}
	return c.Close()
}

func (f *Fleet) startContainerd(h *Host) (*containerd.Client, error) {
	config, socket, err := ctrd.WriteConfig(filepath.Join(f.Dir, h.Name, "containerd"))
	if err != nil {
		return nil, err
	}
	h.Socket = socket
	if _, err := f.Start(h, h.Name+"-containerd", "containerd", "--config", config); err != nil {
		return nil, err
	}
	return dialContainerd(h.Socket, 20*time.Second)
}

// RestartContainerd starts the host's containerd again with its config.
func (f *Fleet) RestartContainerd(h *Host) error {
	dir := filepath.Join(f.Dir, h.Name, "containerd")
	if _, err := f.Start(h, h.Name+"-containerd", "containerd", "--config", filepath.Join(dir, "config.toml")); err != nil {
		return err
	}
	c, err := dialContainerd(h.Socket, 20*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// slow stretches a deadline by EDGE_TEST_TIMEOUT_SCALE (make test-cgroup2
// sets it: its VM emulates the CPU and runs everything about ten times
// slower). Waits stay waits on conditions: only how long one may take grows.
func slow(d time.Duration) time.Duration {
	if f, err := strconv.ParseFloat(os.Getenv("EDGE_TEST_TIMEOUT_SCALE"), 64); err == nil && f > 1 {
		return time.Duration(float64(d) * f)
	}
	return d
}

func dialContainerd(socket string, timeout time.Duration) (*containerd.Client, error) {
	deadline := time.Now().Add(slow(timeout))
	for {
		c, err := containerd.New(socket, containerd.WithTimeout(time.Second))
		if err == nil {
			if _, err = c.Version(context.Background()); err == nil {
				return c, nil
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("containerd at %s: %w", socket, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// DemoImage is the image every node of a fleet holds.
const DemoImage = "edge.local/demo:latest"

// ImportImage imports the demo image's content under another name on h.
func (f *Fleet) ImportImage(h *Host, name string) error {
	c, err := dialContainerd(h.Socket, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	return importAs(c, name)
}

func importDemo(c *containerd.Client) error { return importAs(c, DemoImage) }

func importAs(c *containerd.Client, name string) error {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return errors.New("busybox-static is needed for the demo image: apt-get install busybox-static")
	}
	spec, err := images.BusyboxImage(name, bb, runtime.GOARCH)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := images.WriteOCIArchive(&buf, spec); err != nil {
		return err
	}
	ctx := namespaces.WithNamespace(context.Background(), "edge")
	imgs, err := c.Import(ctx, &buf)
	if err != nil {
		return err
	}
	for _, img := range imgs {
		if err := containerd.NewImage(c, img).Unpack(ctx, ""); err != nil {
			return err
		}
	}
	return nil
}

// MasterDir is where the master of host h keeps its data.
func (f *Fleet) MasterDir(h *Host) string { return filepath.Join(f.Dir, h.Name, "master") }

// StartMaster runs edgemaster on h, listening on its LAN address.
func (f *Fleet) StartMaster(h *Host, extra ...string) (*Proc, error) {
	args := append([]string{"--data-dir", f.MasterDir(h), "--api-addr", h.IP + ":7443", "--mqtt-addr", h.IP + ":8883"}, extra...)
	p, err := f.Start(h, h.Name+"-edgemaster", "edgemaster", args...)
	if err != nil {
		return nil, err
	}
	// Up means answering: admin.conf alone may be left from a previous start.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if fileExists(filepath.Join(f.MasterDir(h), "admin.conf")) {
			if _, _, err := f.Edgectl(h, h, "version"); err == nil {
				return p, nil
			}
		}
		if !p.Alive() || time.Now().After(deadline) {
			return nil, fmt.Errorf("edgemaster on %s did not start:\n%s", h.Name, p.Tail(2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// JoinToken returns the join token of the master on h.
func (f *Fleet) JoinToken(h *Host) (string, error) {
	b, err := os.ReadFile(filepath.Join(f.MasterDir(h), "join-token"))
	return strings.TrimSpace(string(b)), err
}

// AgentArgs are the flags a worker's agent runs with; master "" finds it
// by mDNS.
func (f *Fleet) AgentArgs(h *Host, token, master string, extra ...string) []string {
	args := []string{"--token", token, "--name", h.Name, "--data-dir", filepath.Join(f.Dir, h.Name, "agent"),
		"--containerd", h.Socket, "--mdns-interface", "eth0"}
	if master != "" {
		args = append(args, "--master", master)
	}
	return append(args, extra...)
}

// StartAgent runs edgeagent on h.
func (f *Fleet) StartAgent(h *Host, token, master string, extra ...string) (*Proc, error) {
	return f.Start(h, h.Name+"-edgeagent", "edgeagent", f.AgentArgs(h, token, master, extra...)...)
}

// Edgectl runs edgectl on host h with the admin config of the master on m.
func (f *Fleet) Edgectl(h, m *Host, args ...string) (stdout, stderr string, err error) {
	full := append([]string{"--net=/run/netns/" + h.NS, "--", filepath.Join(f.Bin, "edgectl"), "--config", filepath.Join(f.MasterDir(m), "admin.conf")}, args...)
	cmd := exec.Command("nsenter", full...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func (f *Fleet) statePath() string { return filepath.Join(f.Dir, "state.json") }

func (f *Fleet) save() error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(f.statePath(), b, 0o644)
}

// LoadFleet reads the state a detached fleet left in dir.
func LoadFleet(dir string) (*Fleet, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	var f Fleet
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// Destroy stops everything and removes every trace: containers (through
// each node's containerd, restarted if it was killed), processes left in
// the nodes' cgroups, shims, pod namespace mounts, the namespaces (with
// their links, bridges and iptables rules), cgroups and runc state. It
// keeps going past errors and returns them all.
func (f *Fleet) Destroy() error {
	var errs []error
	// Agents first, so nothing recreates what is removed below.
	for _, p := range f.Procs {
		if strings.HasSuffix(p.Name, "-edgeagent") || strings.HasSuffix(p.Name, "-sim") {
			p.Stop(syscall.SIGTERM, 5*time.Second)
		}
	}
	for _, h := range f.Hosts {
		if h.Socket == "" || !fileExists(filepath.Join(f.Dir, h.Name, "containerd", "config.toml")) {
			continue // no containerd of ours on this host
		}
		ctrd := f.Proc(h.Name + "-containerd")
		if ctrd == nil || !ctrd.Alive() {
			if err := f.RestartContainerd(h); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, removeContainers(h.Socket))
	}
	for i := len(f.Procs) - 1; i >= 0; i-- {
		f.Procs[i].Stop(syscall.SIGTERM, 10*time.Second)
	}
	for _, h := range f.Hosts {
		killCgroup(h.Name)
		if h.Socket != "" {
			exec.Command("pkill", "-9", "-f", "containerd-shim-runc-v2 .*-address "+h.Socket+"( |$)").Run()
		}
	}
	for _, h := range f.Hosts {
		runDir := "/run/edge/" + h.Name
		ctrd.UnmountUnder(runDir)
		os.RemoveAll(runDir)
		if h.Socket != "" {
			ctrd.UnmountUnder(filepath.Dir(h.Socket))
			os.RemoveAll(filepath.Join(filepath.Dir(h.Socket), "root"))
			os.RemoveAll(filepath.Join(filepath.Dir(h.Socket), "state"))
		}
		if err := run("ip", "netns", "del", h.NS); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
		removeCgroup(h.Name)
	}
	if err := run("ip", "netns", "del", f.lanNS()); err != nil && !strings.Contains(err.Error(), "No such file") {
		errs = append(errs, err)
	}
	os.Remove("/run/edge")
	return errors.Join(errs...)
}

// removeContainers deletes every container in namespace edge.
func removeContainers(socket string) error {
	c, err := dialContainerd(socket, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := namespaces.WithNamespace(context.Background(), "edge")
	ctrs, err := c.Containers(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, ctr := range ctrs {
		if task, err := ctr.Task(ctx, nil); err == nil {
			task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll)
			task.Delete(ctx, containerd.WithProcessKill)
		}
		if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
			errs = append(errs, err)
		}
		os.RemoveAll(filepath.Join("/run/containerd/runc/edge", ctr.ID()))
	}
	return errors.Join(errs...)
}

// cgroupDirs are the cgroup directories of a node's agent (v1 and v2).
func cgroupDirs(node string) []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/edge/" + node)
	if fileExists("/sys/fs/cgroup/cgroup.controllers") {
		dirs = append(dirs, "/sys/fs/cgroup/edge/"+node)
	}
	return dirs
}

// killCgroup kills every process left in a node's cgroups.
func killCgroup(node string) {
	for _, d := range cgroupDirs(node) {
		filepath.Walk(d, func(path string, info os.FileInfo, err error) error {
			if err == nil && info.Name() == "cgroup.procs" {
				b, _ := os.ReadFile(path)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			return nil
		})
	}
}

func removeCgroup(node string) {
	for _, d := range cgroupDirs(node) {
		var sub []string
		filepath.Walk(d, func(path string, info os.FileInfo, err error) error {
			if err == nil && info.IsDir() {
				sub = append(sub, path)
			}
			return nil
		})
		for i := len(sub) - 1; i >= 0; i-- {
			for try := 0; try < 50 && os.Remove(sub[i]) != nil && fileExists(sub[i]); try++ {
				time.Sleep(20 * time.Millisecond) // a killed process leaves its cgroup a moment later
			}
		}
		os.Remove(filepath.Dir(d)) // .../edge, if empty
	}
}
