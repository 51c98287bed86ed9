// Package e2e drives the real binaries against a private containerd: the
// master with its embedded broker and SQLite, an agent, edgectl. Every test
// removes what it created (containers, namespaces, CNI rules, bridges,
// cgroups, temp dirs), also on failure.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/ctrd"
)

var binDir string

// notRoot is why every test here skips when not run as root.
var notRoot string

// needRoot skips tb, saying why, when the tests cannot run here.
func needRoot(tb testing.TB) {
	tb.Helper()
	if notRoot != "" {
		tb.Skip(notRoot)
	}
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		notRoot = "e2e needs root (containerd, cgroups, network namespaces): run make test as root"
		os.Exit(m.Run())
	}
	// EDGE_E2E_BIN names a directory of binaries built beforehand (make
	// test-cgroup2 builds on the host and runs the tests in a VM).
	if dir := os.Getenv("EDGE_E2E_BIN"); dir != "" {
		binDir = dir
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "edge-e2e-bin")
	if err != nil {
		panic(err)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "../cmd/edgemaster", "../cmd/edgeagent", "../cmd/edgectl", "../cmd/edge-logdriver")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Println("e2e: build failed:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitFor polls cond until it returns nil or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	timeout = slow(timeout)
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// proc is a running binary with its output in a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t testing.TB, dir, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, filepath.Base(name)+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, strings.Fields(name)[0])
	if _, err := os.Stat(bin); err != nil {
		bin = name
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("E2E_DUMP") != "" && strings.HasPrefix(name, "edge") {
			p.stop(syscall.SIGQUIT, 5*time.Second) // a goroutine dump for the log
		}
		p.stop(syscall.SIGTERM, 10*time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if max := 6000 * (1 + 20*len(os.Getenv("E2E_DUMP"))); len(b) > max {
				b = b[len(b)-max:]
			}
			t.Logf("--- %s log (tail) ---\n%s", name, b)
		}
	})
	return p
}

func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(slow(grace)):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// containerdEnv is a private containerd: its own root, state and socket.
type containerdEnv struct {
	dir    string
	socket string
	proc   *proc
	client *containerd.Client
}

func startContainerd(t testing.TB) *containerdEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "edge-ctrd")
	if err != nil {
		t.Fatal(err)
	}
	config, socket, err := ctrd.WriteConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := &containerdEnv{dir: dir, socket: socket}
	e.proc = start(t, dir, "containerd", "--config", config)
	// Registered after the process, so it runs first: containers are removed
	// while containerd still answers, then it stops containerd itself.
	t.Cleanup(func() { e.cleanup(t) })
	if e.client, err = dialContainerd(e.socket, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	return e
}

// cleanup removes every container this containerd ran, stops it and
// unmounts and deletes its directories.
func (e *containerdEnv) cleanup(t testing.TB) {
	ctx := namespaces.WithNamespace(context.Background(), "edge")
	if e.client != nil {
		if ctrs, err := e.client.Containers(ctx); err == nil {
			for _, c := range ctrs {
				if task, err := c.Task(ctx, nil); err == nil {
					task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll)
					task.Delete(ctx, containerd.WithProcessKill)
				}
				c.Delete(ctx, containerd.WithSnapshotCleanup)
			}
		}
		e.client.Close()
	}
	if e.proc != nil {
		e.proc.stop(syscall.SIGTERM, 10*time.Second)
	}
	ctrd.UnmountUnder(e.dir)
	os.RemoveAll(e.dir)
}

// importDemoImage imports the demo image into the edge namespace, so no
// registry is involved.
func (e *containerdEnv) importDemoImage(t testing.TB, name string) {
	t.Helper()
	if err := importAs(e.client, name); err != nil {
		t.Fatal(err)
	}
}

// cluster is one master and one agent.
type cluster struct {
	t          testing.TB // the running (sub)test, for assertions
	root       testing.TB // the test that owns the processes
	dir        string
	master     *proc
	agent      *proc
	ctrd       *containerdEnv
	node       string
	bridge     string
	podCIDR    string
	client     *api.Client
	config     string
	masterArgs []string // extra flags for edgemaster
	agentExtra []string // extra flags for edgeagent
	apiURL     string
	token      string
	apiPort    int // kept across master restarts, as a real master's are
	mqttPort   int
	bins       string // directory of edgemaster and edgeagent, when not binDir's
}

// bin is the path of the cluster's edgemaster or edgeagent.
func (c *cluster) bin(name string) string {
	if c.bins != "" {
		return filepath.Join(c.bins, name)
	}
	return name
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newCluster(t testing.TB, masterArgs ...string) *cluster {
	t.Helper()
	return newClusterAgentArgs(t, nil, masterArgs...)
}

// newClusterAgentArgs is newCluster with extra flags for the agent.
func newClusterAgentArgs(t testing.TB, agentArgs []string, masterArgs ...string) *cluster {
	t.Helper()
	// One node: its pods have nowhere to move when it is lost, and the
	// tests restart its agent (adoption, offline restarts), which must not
	// race the 5s default grace however long a restart takes (make
	// test-cgroup2 runs them under an emulated CPU). The fleet tests
	// cover node loss.
	if !slices.Contains(masterArgs, "--node-lost-grace") {
		masterArgs = append(masterArgs, "--node-lost-grace", "10m")
	}
	dir := t.TempDir()
	suffix := fmt.Sprintf("%d", os.Getpid()%10000)
	c := &cluster{t: t, root: t, dir: dir, node: "e2e-" + suffix, bridge: "edge-e2e" + suffix, podCIDR: "10.99.7.0/24",
		masterArgs: masterArgs, agentExtra: agentArgs}
	c.ctrd = startContainerd(t)
	c.ctrd.importDemoImage(t, "edge.local/demo:latest")
	c.startMaster()
	// Registered before the agent starts, so it runs after the agent has
	// stopped: a running agent would make its directories again.
	t.Cleanup(c.cleanupHost)
	c.startAgent()
	c.waitNodeReady(30 * time.Second)
	return c
}

// waitNodeReady waits until the agent's node is Ready.
func (c *cluster) waitNodeReady(timeout time.Duration) {
	c.t.Helper()
	waitFor(c.t, timeout, "node to be Ready", func() error {
		o, err := c.client.Get(context.Background(), core.Key{Kind: core.KindNode, Name: c.node})
		if err != nil {
			return err
		}
		if r := o.(*core.Node).Ready(); r != core.ConditionTrue {
			return fmt.Errorf("node Ready=%s", r)
		}
		return nil
	})
}

func (c *cluster) startMaster() {
	t := c.t
	mdir := filepath.Join(c.dir, "master")
	if c.apiPort == 0 {
		c.apiPort, c.mqttPort = freePort(t), freePort(t)
	}
	args := append([]string{"--data-dir", mdir, "--api-addr", fmt.Sprintf("127.0.0.1:%d", c.apiPort),
		"--mqtt-addr", fmt.Sprintf("127.0.0.1:%d", c.mqttPort), "--no-mdns"}, c.masterArgs...)
	c.master = start(c.root, c.dir, c.bin("edgemaster"), args...) // owned by the test, not a subtest that restarts it
	c.config = filepath.Join(mdir, "admin.conf")
	waitFor(t, 20*time.Second, "admin.conf", func() error {
		cfg, err := api.LoadConfig(c.config)
		if err != nil {
			return err
		}
		caPEM, _ := cfg.CAPEM()
		tlsConfig, err := api.CATLS(caPEM)
		if err != nil {
			return err
		}
		c.apiURL = cfg.Server
		c.client = api.NewClient(cfg.Server, cfg.Token, tlsConfig)
		_, err = c.client.Version(context.Background())
		return err
	})
	b, err := os.ReadFile(filepath.Join(mdir, "join-token"))
	if err != nil {
		t.Fatal(err)
	}
	c.token = strings.TrimSpace(string(b))
}

func (c *cluster) startAgent() {
	c.agent = start(c.root, c.dir, c.bin("edgeagent"), c.agentArgs()...)
}

func (c *cluster) agentArgs() []string {
	args := []string{"--master", c.apiURL, "--token", c.token, "--name", c.node,
		"--data-dir", filepath.Join(c.dir, "agent"), "--containerd", c.ctrd.socket,
		"--bridge", c.bridge, "--pod-cidr", c.podCIDR, "--labels", "e2e=yes",
		// This agent runs in the host's own network namespace: it must not
		// program the host's iptables, routes or DNS. The fleet's agents,
		// each in its namespace, test services.
		"--disable-proxy"}
	args = append(args, c.agentExtra...)
	// EDGE_E2E_AGENT_ARGS adds flags, for experiments (--cni-bin-dir /none).
	return append(args, strings.Fields(os.Getenv("EDGE_E2E_AGENT_ARGS"))...)
}

// cleanupHost removes what the agent created on the host outside its data
// dir: the bridge, CNI NAT chains, netns mounts and cgroups.
func (c *cluster) cleanupHost() {
	// The containerd cleanup (registered earlier, so it runs later) removes
	// containers; anything the agent left must go too.
	exec.Command("ip", "link", "del", c.bridge).Run()
	runDir := "/run/edge/" + c.node
	ctrd.UnmountUnder(runDir)
	os.RemoveAll(runDir)
	// A failed test may leave its pods running (this runs before the
	// containerd cleanup): kill them, or their cgroups cannot go.
	killCgroup(c.node)
	removeCgroup(c.node) // every hierarchy, the hybrid "unified" one too
	removeCNIChains(c.podCIDR)
}

// removeCNIChains deletes NAT rules and chains the bridge plugin made for
// pods of cidr (normally gone with CNI DEL; this catches a failed test).
func removeCNIChains(cidr string) {
	_, ipnet, err := net.ParseCIDR(cidr)
	if err != nil {
		return
	}
	out, err := exec.Command("iptables", "-t", "nat", "-L", "POSTROUTING", "-n", "--line-numbers").Output()
	if err != nil {
		return
	}
	var nums []string
	chains := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[1], "CNI-") {
			if ip := net.ParseIP(f[4]); ip != nil && ipnet.Contains(ip) {
				nums = append([]string{f[0]}, nums...) // delete from the bottom up
				chains[f[1]] = true
			}
		}
	}
	for _, n := range nums {
		exec.Command("iptables", "-t", "nat", "-D", "POSTROUTING", n).Run()
	}
	for ch := range chains {
		exec.Command("iptables", "-t", "nat", "-F", ch).Run()
		exec.Command("iptables", "-t", "nat", "-X", ch).Run()
	}
}

// edgectl runs the CLI against the cluster.
func (c *cluster) edgectl(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(filepath.Join(binDir, "edgectl"), append([]string{"--config", c.config}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func (c *cluster) mustEdgectl(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.edgectl(args...)
	if err != nil {
		c.t.Fatalf("edgectl %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func (c *cluster) apply(manifest string) string {
	c.t.Helper()
	path := filepath.Join(c.dir, fmt.Sprintf("m%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return c.mustEdgectl("apply", "-f", path)
}

// podsJSON lists pods through `edgectl get pods -o json`, the contract's shape.
func (c *cluster) podsJSON(selector string) []podJSON {
	c.t.Helper()
	args := []string{"get", "pods", "-o", "json"}
	if selector != "" {
		args = append(args, "-l", selector)
	}
	out := c.mustEdgectl(args...)
	var list struct {
		Items []podJSON `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		c.t.Fatalf("edgectl get pods -o json: %v\n%s", err, out)
	}
	return list.Items
}

type podJSON struct {
	Metadata struct {
		Name              string            `json:"name"`
		Labels            map[string]string `json:"labels"`
		DeletionTimestamp string            `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase             string `json:"phase"`
		PodIP             string `json:"podIP"`
		ContainerStatuses []struct {
			Name         string `json:"name"`
			RestartCount int    `json:"restartCount"`
			Ready        bool   `json:"ready"`
			ContainerID  string `json:"containerID"`
			State        struct {
				Waiting *struct {
					Reason  string `json:"reason"`
					Message string `json:"message"`
				} `json:"waiting"`
				Terminated *struct {
					Reason   string `json:"reason"`
					ExitCode int    `json:"exitCode"`
				} `json:"terminated"`
			} `json:"state"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

// tasks returns the running tasks in namespace edge: container id -> pid.
func (e *containerdEnv) tasks(t testing.TB) map[string]uint32 {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "edge")
	ctrs, err := e.client.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint32{}
	for _, c := range ctrs {
		task, err := c.Task(ctx, nil)
		if err != nil {
			continue
		}
		st, err := task.Status(ctx)
		if err == nil && st.Status == containerd.Running {
			out[c.ID()] = task.Pid()
		}
	}
	return out
}

// containerIDs lists the containers in namespace edge.
func (e *containerdEnv) containerIDs(t testing.TB) []string {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "edge")
	ctrs, err := e.client.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range ctrs {
		ids = append(ids, c.ID())
	}
	return ids
}

func (e *containerdEnv) containerCount(t testing.TB) int {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "edge")
	ctrs, err := e.client.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return len(ctrs)
}

// cgroupFile reads a file of a container's cgroup: on cgroup v1 file v1
// in the hierarchy of controller, on v2 file v2 of the unified hierarchy.
func (e *containerdEnv) cgroupFile(t testing.TB, id, controller, v1, v2 string) string {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "edge")
	c, err := e.client.LoadContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	path := spec.Linux.CgroupsPath
	f := filepath.Join("/sys/fs/cgroup", controller, path, v1)
	if fileExists("/sys/fs/cgroup/cgroup.controllers") {
		f = filepath.Join("/sys/fs/cgroup", path, v2)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatalf("cgroup of %s (cgroupsPath %s): %v", id, path, err)
	}
	return strings.TrimSpace(string(b))
}
