package e2e

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkLines runs a check command and returns its exit code, its result
// lines by check name ("STATUS detail", with "\nfix: ..." appended) and
// its whole output.
func runCheck(t *testing.T, bin string, args ...string) (int, map[string]string, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, bin), append([]string{"check"}, args...)...)
	out, err := cmd.Output()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{}
	last := ""
	for _, l := range strings.Split(string(out), "\n") {
		if fix, ok := strings.CutPrefix(l, "      fix: "); ok && last != "" {
			lines[last] += "\nfix: " + fix
			continue
		}
		f := strings.SplitN(l, "  ", 2)
		if len(f) == 2 && (f[0] == "PASS" || f[0] == "WARN" || f[0] == "FAIL") {
			rest := strings.TrimSpace(f[1])
			for _, name := range checkNames {
				if strings.HasPrefix(rest, name+" ") {
					last = name
					lines[name] = f[0] + " " + strings.TrimSpace(strings.TrimPrefix(rest, name))
				}
			}
		}
	}
	return code, lines, string(out)
}

var checkNames = []string{"cgroup memory", "cgroup cpu", "cgroup pids", "cgroup delegation", "overlayfs", "module bridge", "module veth",
	"module br_netfilter", "module nf_nat", "iptables", "containerd", "runc", "cni plugins", "clock", "data dir", "disk data dir",
	"disk containerd root", "port api", "port mqtt", "sqlite"}

// edgeagent check on this machine, without a master or a token: with
// containerd's socket missing only that check fails, with its fix, and the
// exit status says so; against a running containerd every check passes.
func TestPreflight_AgentCheck(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	code, lines, out := runCheck(t, "edgeagent", "--containerd", filepath.Join(dir, "none.sock"), "--data-dir", filepath.Join(dir, "agent"))
	if code != 1 || len(lines) != 17 {
		t.Fatalf("exit %d, %d checks:\n%s", code, len(lines), out)
	}
	for name, l := range lines {
		if (name == "containerd") != strings.HasPrefix(l, "FAIL") {
			t.Errorf("%s: %s", name, l)
		}
	}
	if c := lines["containerd"]; !strings.Contains(c, "no socket at "+filepath.Join(dir, "none.sock")) || !strings.Contains(c, "fix: apt-get install containerd") {
		t.Errorf("containerd: %s", c)
	}
	if !strings.Contains(out, "17 checks: ") || !strings.Contains(out, ", 1 failed\n") {
		t.Errorf("no summary:\n%s", out)
	}
	if t.Failed() {
		t.Log(out)
		return
	}

	ctr := startContainerd(t)
	code, lines, out = runCheck(t, "edgeagent", "--containerd", ctr.socket, "--data-dir", filepath.Join(dir, "agent"))
	if code != 0 || !strings.HasPrefix(lines["containerd"], "PASS containerd ") {
		t.Fatalf("exit %d against a running containerd:\n%s", code, out)
	}
}

// edgemaster check: free ports pass, ports held by a running edgemaster
// pass too (checking a live master), a port another program holds fails
// and names it.
func TestPreflight_MasterCheck(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	api, mqtt := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"--data-dir", filepath.Join(dir, "master"), "--api-addr", api, "--mqtt-addr", mqtt}
	code, lines, out := runCheck(t, "edgemaster", args...)
	if code != 0 || len(lines) != 6 || !strings.HasPrefix(lines["port api"], "PASS "+api+" is free") || !strings.HasPrefix(lines["sqlite"], "PASS") {
		t.Fatalf("exit %d:\n%s", code, out)
	}

	start(t, dir, "edgemaster", append(args, "--no-mdns")...)
	waitFor(t, 20*time.Second, "the master to listen", func() error {
		c, err := net.Dial("tcp", api)
		if err == nil {
			c.Close()
		}
		return err
	})
	code, lines, out = runCheck(t, "edgemaster", args...)
	if code != 0 || !strings.Contains(lines["port api"], "held by a running edgemaster") || !strings.Contains(lines["port mqtt"], "held by a running edgemaster") {
		t.Fatalf("exit %d with the master running:\n%s", code, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, lines, out = runCheck(t, "edgemaster", "--data-dir", filepath.Join(dir, "master"), "--api-addr", ln.Addr().String(), "--mqtt-url", "tcp://127.0.0.1:1883")
	if code != 1 || !strings.Contains(lines["port api"], "is in use by e2e.test") || !strings.Contains(lines["port api"], "fix: stop e2e.test") || lines["port mqtt"] != "" {
		t.Fatalf("exit %d with the API port taken (and an external broker):\n%s", code, out)
	}
}

// The agent runs the same checks at start and reports them as the node's
// PreflightPassed condition, which edgectl describe node shows.
func TestPreflight_NodeCondition(t *testing.T) {
	needRoot(t)
	c := newCluster(t)
	waitFor(t, 30*time.Second, "the PreflightPassed condition", func() error {
		out := c.mustEdgectl("describe", "node", c.node)
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == "PreflightPassed" {
				if !strings.Contains(l, "True") || !strings.Contains(l, "ChecksPassed") || !strings.Contains(l, "17 checks passed") {
					t.Fatalf("condition line %q\n%s", l, out)
				}
				return nil
			}
		}
		return errors.New("not shown yet")
	})
	if out := c.mustEdgectl("get", "node", c.node, "-o", "json"); !strings.Contains(out, `"type": "PreflightPassed"`) && !strings.Contains(out, `"type":"PreflightPassed"`) {
		t.Fatalf("-o json lacks the condition:\n%s", out)
	}
}
