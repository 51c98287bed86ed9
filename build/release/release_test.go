// Package release holds what `make release` ships besides the binaries
// (install.sh, the systemd units, the env file template, the bundled
// containerd's unit and config); its tests run install.sh and the first-boot
// snippets of docs/firstboot against temporary directories standing in for
// a Pi's root filesystem and boot partition (install.sh --root), with
// systemctl, uname and id faked. They need no network, and touch nothing
// outside their temporary directories; TestInstallOnRoot needs root (a
// private mount namespace) and is skipped without it.
package release

import (
	"archive/tar"
	"compress/gzip"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const token = "K10" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + "::abc123.0123456789abcdef"

// shipped are the files of this directory that go into the tarball.
var shipped = []string{"install.sh", "edge.env", "edgemaster.service", "edgeagent.service", "edge-containerd.service", "containerd.toml"}

// tools install.sh and firstboot.sh may use: the test's PATH has these and
// nothing else, so a script that needs more fails here.
var tools = []string{"sh", "cat", "chmod", "cp", "date", "dirname", "grep", "mkdir", "mktemp", "mv", "readlink", "rm",
	"rmdir", "sed", "sleep", "sort", "tail", "tar", "gzip", "touch", "tr", "kill", "umount", "id", "find"}

// shell is one way of running the scripts: dash with the host's tools, or
// busybox's ash with busybox's applets only (as on a minimal image).
type shell struct {
	name string
	path string // a directory holding only the allowed tools
}

func shells(t *testing.T) []shell {
	var out []shell
	host := t.TempDir()
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s not found on this machine", tool)
		}
		if err := os.Symlink(p, filepath.Join(host, tool)); err != nil {
			t.Fatal(err)
		}
	}
	out = append(out, shell{"sh", host})
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Log("busybox not installed (apt-get install busybox-static): testing with sh only")
		return out
	}
	dir := t.TempDir()
	for _, tool := range tools {
		if err := os.Symlink(bb, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return append(out, shell{"busybox", dir})
}

// env is one test's world: a fake bundle, a root directory, fake commands
// and the log of their calls.
type env struct {
	t      *testing.T
	sh     shell
	bundle string // the unpacked release
	root   string // stands in for /
	fake   string // fake systemctl, uname, id
	calls  string // what the fakes were called with, one line each
	extra  []string
}

func newEnv(t *testing.T, sh shell) *env {
	e := &env{t: t, sh: sh, root: t.TempDir(), fake: t.TempDir()}
	e.calls = filepath.Join(t.TempDir(), "calls")
	e.bundle = filepath.Join(t.TempDir(), "edge-v9.9.9-linux-arm64")
	e.makeBundle("1")
	// Fake commands: each records its arguments.
	writeFile(t, filepath.Join(e.fake, "systemctl"), "#!/bin/sh\necho \"systemctl $*\" >>\"$EDGE_TEST_CALLS\"\n", 0o755)
	writeFile(t, filepath.Join(e.fake, "uname"), "#!/bin/sh\necho aarch64\n", 0o755)
	return e
}

// makeBundle writes a release with fake binaries whose content is build.
func (e *env) makeBundle(build string) {
	t := e.t
	for _, f := range shipped {
		copyFile(t, f, filepath.Join(e.bundle, f))
	}
	copyFile(t, "../../docs/firstboot/firstboot.sh", filepath.Join(e.bundle, "firstboot.sh"))
	bins := []string{"edgemaster", "edgeagent", "edgectl", "edge-logdriver", "runtime/containerd",
		"runtime/containerd-shim-runc-v2", "runtime/runc"}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		bins = append(bins, "runtime/cni/"+p)
	}
	for _, b := range bins {
		writeFile(t, filepath.Join(e.bundle, b), "#!/bin/sh\n# build "+build+"\necho \""+filepath.Base(b)+" $*\" >>\"$EDGE_TEST_CALLS\"\n", 0o755)
	}
}

func (e *env) environ() []string {
	return append([]string{"PATH=" + e.fake + ":" + e.sh.path, "EDGE_TEST_CALLS=" + e.calls, "TMPDIR=" + e.t.TempDir()}, e.extra...)
}

// install runs the bundle's install.sh with args and --root.
func (e *env) install(args ...string) (string, error) {
	return e.run(append([]string{filepath.Join(e.bundle, "install.sh")}, append(args, "--root", e.root)...)...)
}

func (e *env) run(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(e.sh.path, "sh"), args...)
	cmd.Env = e.environ()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e *env) mustInstall(args ...string) string {
	e.t.Helper()
	out, err := e.install(args...)
	if err != nil {
		e.t.Fatalf("install.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (e *env) read(p string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, p))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func (e *env) callLog() []string {
	b, _ := os.ReadFile(e.calls)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// files lists the regular files (and symlinks) under the root, relative.
func (e *env) files() []string {
	var out []string
	filepath.WalkDir(e.root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(e.root, p)
			out = append(out, "/"+rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func (e *env) wantEnv(kv ...string) {
	e.t.Helper()
	env := e.read("/etc/edge/edge.env")
	for _, want := range kv {
		if !slices.Contains(strings.Split(env, "\n"), want) {
			e.t.Errorf("edge.env lacks line %q:\n%s", want, env)
		}
	}
}

func (e *env) wantCalls(want ...string) {
	e.t.Helper()
	calls := e.callLog()
	for _, w := range want {
		if !slices.Contains(calls, w) {
			e.t.Errorf("no call %q; calls:\n%s", w, strings.Join(calls, "\n"))
		}
	}
}

var (
	agentFiles = []string{"/etc/edge/containerd.toml", "/etc/edge/edge.env", "/etc/edge/installed-files",
		"/etc/systemd/system/edge-containerd.service", "/etc/systemd/system/edgeagent.service",
		"/usr/local/bin/edge-logdriver", "/usr/local/bin/edgeagent", "/usr/local/bin/edgectl",
		"/usr/local/lib/edge/bin/containerd", "/usr/local/lib/edge/bin/containerd-shim-runc-v2", "/usr/local/lib/edge/bin/runc",
		"/usr/local/lib/edge/cni/bridge", "/usr/local/lib/edge/cni/host-local", "/usr/local/lib/edge/cni/loopback",
		"/usr/local/lib/edge/cni/portmap"}
	masterFiles = []string{"/etc/edge/edge.env", "/etc/edge/installed-files", "/etc/systemd/system/edgemaster.service",
		"/usr/local/bin/edgectl", "/usr/local/bin/edgemaster"}
)

func TestInstall(t *testing.T) {
	for _, sh := range shells(t) {
		t.Run(sh.name, func(t *testing.T) {
			t.Run("Agent", func(t *testing.T) { testAgent(t, sh) })
			t.Run("AgentSystemContainerd", func(t *testing.T) { testAgentSystem(t, sh) })
			t.Run("MasterAndAgent", func(t *testing.T) { testMasterAndAgent(t, sh) })
			t.Run("Refusals", func(t *testing.T) { testRefusals(t, sh) })
			t.Run("Firstboot", func(t *testing.T) { testFirstboot(t, sh) })
		})
	}
}

// systemd itself checks the installed units (syntax, directives, that
// ExecStart is executable), where systemd-analyze is installed.
func TestUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze here")
	}
	if _, err := os.Stat("/usr/lib/systemd/system/sysinit.target"); err != nil {
		t.Skip("no systemd units here")
	}
	e := newEnv(t, shells(t)[0])
	e.mustInstall("master")
	e.mustInstall("agent", "--token", token, "--runtime", "bundled")
	// The root needs systemd's own units (sysinit.target, ...) and modprobe.
	os.MkdirAll(filepath.Join(e.root, "usr/lib/systemd"), 0o755)
	if out, err := exec.Command("cp", "-a", "/usr/lib/systemd/system", filepath.Join(e.root, "usr/lib/systemd/")).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	writeFile(t, filepath.Join(e.root, "sbin/modprobe"), "#!/bin/sh\n", 0o755)
	var units []string
	for _, u := range []string{"edgemaster.service", "edgeagent.service", "edge-containerd.service"} {
		units = append(units, "/etc/systemd/system/"+u)
	}
	out, err := exec.Command(sa, append([]string{"verify", "--root=" + e.root}, units...)...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// An agent on a Pi without containerd: the bundled runtime, its unit, the
// token in the env file; twice is the same as once; an upgrade replaces the
// binaries; --uninstall removes every file.
func testAgent(t *testing.T, sh shell) {
	e := newEnv(t, sh)
	out := e.mustInstall("agent", "--token", token, "--master", "https://10.0.0.1:7443", "--labels", "zone=shed,tier=edge")
	if got := e.files(); !slices.Equal(got, agentFiles) {
		t.Fatalf("installed files:\n%s\nwant:\n%s\n%s", strings.Join(got, "\n"), strings.Join(agentFiles, "\n"), out)
	}
	e.wantEnv("EDGE_TOKEN="+token, "EDGE_MASTER=https://10.0.0.1:7443", "EDGE_LABELS=zone=shed,tier=edge",
		"EDGE_DATA_DIR=/var/lib/edge/agent", "EDGE_CONTAINERD=/run/edge-containerd/containerd.sock",
		"EDGE_CNI_BIN_DIR=/usr/local/lib/edge/cni")
	if fi, _ := os.Stat(filepath.Join(e.root, "etc/edge/edge.env")); fi.Mode().Perm() != 0o600 {
		t.Errorf("edge.env mode %v, want 0600 (it holds the token)", fi.Mode().Perm())
	}
	e.wantCalls("systemctl --root="+e.root+" enable edge-containerd.service", "systemctl --root="+e.root+" enable edgeagent.service")
	for _, c := range e.callLog() {
		if strings.Contains(c, "start") {
			t.Errorf("--root started a unit: %q", c)
		}
	}
	manifest := strings.Fields(e.read("/etc/edge/installed-files"))
	sort.Strings(manifest)
	manifest = append(manifest, "/etc/edge/installed-files") // all but itself
	sort.Strings(manifest)
	if !slices.Equal(manifest, agentFiles) {
		t.Errorf("manifest:\n%s", strings.Join(manifest, "\n"))
	}
	unit := e.read("/etc/systemd/system/edgeagent.service")
	for _, want := range []string{"KillMode=process", "Delegate=yes", "Restart=always", "EnvironmentFile=/etc/edge/edge.env",
		"ExecStart=/usr/local/bin/edgeagent --data-dir=${EDGE_DATA_DIR} --containerd=${EDGE_CONTAINERD} --cni-bin-dir=${EDGE_CNI_BIN_DIR} $EDGE_AGENT_ARGS"} {
		if !strings.Contains(unit, "\n"+want+"\n") {
			t.Errorf("edgeagent.service lacks %q", want)
		}
	}

	// Again, without the flags: same files, same settings, no duplicates.
	env := e.read("/etc/edge/edge.env")
	e.mustInstall("agent")
	if got := e.files(); !slices.Equal(got, agentFiles) {
		t.Errorf("second install: files\n%s", strings.Join(got, "\n"))
	}
	if got := e.read("/etc/edge/edge.env"); got != env {
		t.Errorf("second install changed edge.env:\n%s\nwas:\n%s", got, env)
	}
	if m := e.read("/etc/edge/installed-files"); len(strings.Fields(m)) != len(agentFiles)-1 {
		t.Errorf("manifest grew:\n%s", m)
	}

	// An upgrade: a newer release replaces the binaries, keeps the settings.
	e.makeBundle("2")
	e.mustInstall("agent", "--labels", "zone=house")
	if b := e.read("/usr/local/bin/edgeagent"); !strings.Contains(b, "build 2") {
		t.Errorf("edgeagent not upgraded:\n%s", b)
	}
	e.wantEnv("EDGE_TOKEN="+token, "EDGE_MASTER=https://10.0.0.1:7443", "EDGE_LABELS=zone=house")

	// A user's own setting in the env file survives a reinstall.
	f := filepath.Join(e.root, "etc/edge/edge.env")
	b, _ := os.ReadFile(f)
	os.WriteFile(f, []byte(strings.Replace(string(b), "EDGE_AGENT_ARGS=\n", "EDGE_AGENT_ARGS=--name pi7\n", 1)), 0o600)
	e.mustInstall("agent")
	e.wantEnv("EDGE_AGENT_ARGS=--name pi7")

	os.MkdirAll(filepath.Join(e.root, "var/lib/edge/agent"), 0o700)
	writeFile(t, filepath.Join(e.root, "var/lib/edge/agent/node-password"), "x", 0o600)
	out = e.mustInstall("--uninstall")
	if got := e.files(); !slices.Equal(got, []string{"/var/lib/edge/agent/node-password"}) {
		t.Errorf("left after --uninstall:\n%s\n%s", strings.Join(got, "\n"), out)
	}
	for _, d := range []string{"etc/edge", "usr/local/lib/edge"} {
		if _, err := os.Stat(filepath.Join(e.root, d)); err == nil {
			t.Errorf("/%s left", d)
		}
	}
	e.wantCalls("systemctl --root="+e.root+" disable edgeagent.service", "systemctl --root="+e.root+" disable edge-containerd.service")
	if !strings.Contains(out, "/usr/local/bin/edgeagent --cleanup --data-dir /var/lib/edge/agent") {
		t.Errorf("uninstall does not name the cleanup:\n%s", out)
	}
	for _, c := range e.callLog() {
		if strings.HasPrefix(c, "edgeagent") {
			t.Errorf("ran the agent in --root: %q", c)
		}
	}
	if _, err := e.install("--uninstall"); err == nil {
		t.Error("a second --uninstall succeeded with nothing installed")
	}
	e.mustInstall("agent", "--token", token)
	e.mustInstall("--uninstall", "--purge")
	if got := e.files(); len(got) != 0 {
		t.Errorf("left after --uninstall --purge: %v", got)
	}
}

// With the OS's containerd and CNI plugins, the agent uses them and
// installs none of the bundled runtime.
func testAgentSystem(t *testing.T, sh shell) {
	e := newEnv(t, sh)
	writeFile(t, filepath.Join(e.root, "usr/bin/containerd"), "#!/bin/sh\n", 0o755)
	writeFile(t, filepath.Join(e.root, "usr/lib/cni/bridge"), "#!/bin/sh\n", 0o755)
	e.mustInstall("agent", "--token", token, "--data-dir", "/srv/edge")
	e.wantEnv("EDGE_CONTAINERD=/run/containerd/containerd.sock", "EDGE_CNI_BIN_DIR=/usr/lib/cni", "EDGE_DATA_DIR=/srv/edge")
	for _, f := range e.files() {
		if strings.Contains(f, "/usr/local/lib/edge") || strings.Contains(f, "containerd.") {
			t.Errorf("installed %s with a system containerd", f)
		}
	}
	e.wantCalls("systemctl --root=" + e.root + " enable edgeagent.service")
	if slices.Contains(e.callLog(), "systemctl --root="+e.root+" enable edge-containerd.service") {
		t.Error("enabled edge-containerd.service with a system containerd")
	}
	out := e.mustInstall("--uninstall")
	if got := e.files(); !slices.Equal(got, []string{"/usr/bin/containerd", "/usr/lib/cni/bridge"}) {
		t.Errorf("left after --uninstall: %v", got)
	}
	if !strings.Contains(out, "edgeagent --cleanup --data-dir /srv/edge") {
		t.Errorf("cleanup does not use the data dir:\n%s", out)
	}
}

// A master, then an agent on the same machine: the agent takes the
// master's join token; one env file holds both.
func testMasterAndAgent(t *testing.T, sh shell) {
	e := newEnv(t, sh)
	e.mustInstall("master")
	if got := e.files(); !slices.Equal(got, masterFiles) {
		t.Fatalf("master files: %v", got)
	}
	e.wantCalls("systemctl --root=" + e.root + " enable edgemaster.service")
	unit := e.read("/etc/systemd/system/edgemaster.service")
	for _, want := range []string{"Restart=always", "EnvironmentFile=/etc/edge/edge.env", "ExecStart=/usr/local/bin/edgemaster --data-dir=${EDGE_MASTER_DATA_DIR} $EDGE_MASTER_ARGS"} {
		if !strings.Contains(unit, "\n"+want+"\n") {
			t.Errorf("edgemaster.service lacks %q", want)
		}
	}
	writeFile(t, filepath.Join(e.root, "var/lib/edge/master/join-token"), token+"\n", 0o600)
	out := e.mustInstall("agent")
	e.wantEnv("EDGE_TOKEN="+token, "EDGE_MASTER_DATA_DIR=/var/lib/edge/master")
	want := slices.Clone(agentFiles)
	want = append(want, "/etc/systemd/system/edgemaster.service", "/usr/local/bin/edgemaster", "/var/lib/edge/master/join-token")
	sort.Strings(want)
	if got := e.files(); !slices.Equal(got, want) {
		t.Errorf("files:\n%s\n%s", strings.Join(got, "\n"), out)
	}
	e.mustInstall("--uninstall")
	if got := e.files(); !slices.Equal(got, []string{"/var/lib/edge/master/join-token"}) {
		t.Errorf("left after --uninstall: %v", got)
	}
	e.wantCalls("systemctl --root=" + e.root + " disable edgemaster.service")
}

func testRefusals(t *testing.T, sh shell) {
	e := newEnv(t, sh)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"agent"}, "--token TOKEN is required"},
		{[]string{"agent", "--token", "secret"}, "want K10<ca-hash>::<id>.<secret>"},
		{[]string{"agent", "--token", token, "--master", "10.0.0.1"}, "want https://HOST:7443"},
		{[]string{"agent", "--token", token, "--labels", "a=b c"}, "no spaces"},
		{[]string{"agent", "--token", token, "--runtime", "docker"}, "want auto, bundled or system"},
		{[]string{"cluster"}, "unknown argument: cluster"},
		{[]string{"--uninstall"}, "nothing to uninstall"},
		{nil, "Usage"},
	} {
		out, err := e.install(c.args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("install.sh %q: %v, want an error with %q:\n%s", c.args, err, c.want, out)
		}
	}
	if out, err := e.run(filepath.Join(e.bundle, "install.sh"), "agent", "--token"); err == nil || !strings.Contains(out, "--token needs a value") {
		t.Errorf("--token without a value: %v\n%s", err, out)
	}
	if got := e.files(); len(got) != 0 {
		t.Errorf("a refused install left %v", got)
	}

	// No systemctl: refuse, and say how to do it by hand.
	os.Remove(filepath.Join(e.fake, "systemctl"))
	root := t.TempDir()
	e.root = root
	out, err := e.install("master")
	if err == nil || !strings.Contains(out, "systemctl not found") || !strings.Contains(out, "Install by hand instead") {
		t.Errorf("without systemctl: %v\n%s", err, out)
	}
	if got := e.files(); len(got) != 0 {
		t.Errorf("installed without systemctl: %v", got)
	}

	// Not root, on the machine itself: refuse before anything else (a fake
	// id says uid 1000; nothing is written to / either way). busybox's ash
	// runs its own id, not the fake.
	if sh.name == "busybox" {
		return
	}
	writeFile(t, filepath.Join(e.fake, "id"), "#!/bin/sh\necho 1000\n", 0o755)
	out, err = e.run(filepath.Join(e.bundle, "install.sh"), "master")
	if err == nil || !strings.Contains(out, "run me as root") {
		t.Errorf("as uid 1000: %v\n%s", err, out)
	}
}

// A flashed card's first boot: the release, edge.conf and firstboot.sh on
// the boot partition; Imager's firstrun.sh (with the snippet) or
// cloud-init's user-data runs it; the agent is installed and enabled, the
// token moves off the card, cmdline.txt gets the memory cgroup. Run twice,
// it does nothing the second time.
func testFirstboot(t *testing.T, sh shell) {
	snippet, err := os.ReadFile("../../docs/firstboot/firstrun-snippet.sh")
	if err != nil {
		t.Fatal(err)
	}
	var userData struct {
		Runcmd     [][]string `json:"runcmd"`
		PowerState struct {
			Mode      string `json:"mode"`
			Condition string `json:"condition"`
		} `json:"power_state"`
	}
	b, err := os.ReadFile("../../docs/firstboot/user-data")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "#cloud-config\n") {
		t.Fatal("user-data does not start with #cloud-config")
	}
	if err := yaml.Unmarshal(b, &userData); err != nil || len(userData.Runcmd) != 1 || userData.PowerState.Mode != "reboot" {
		t.Fatalf("user-data: %v %+v", err, userData)
	}

	for _, c := range []struct {
		name string
		boot string   // the boot partition's mount point
		run  []string // the command, as the image runs it
	}{
		{"Imager bookworm", "boot/firmware", []string{"-c", string(snippet)}},
		{"Imager bullseye", "boot", []string{"-c", string(snippet)}},
		{"cloud-init", "boot/firmware", userData.Runcmd[0][1:]},
	} {
		t.Run(c.name, func(t *testing.T) {
			if userData.Runcmd[0][0] != "sh" {
				t.Fatalf("runcmd %q: want sh -c", userData.Runcmd[0])
			}
			e := newEnv(t, sh)
			e.extra = []string{"EDGE_ROOT=" + e.root}
			boot := filepath.Join(e.root, c.boot)
			writeFile(t, filepath.Join(boot, "cmdline.txt"), "console=serial0,115200 root=PARTUUID=1234-02 rootwait\n", 0o644)
			// Written on a laptop: CRLF line ends, quotes.
			writeFile(t, filepath.Join(boot, "edge/edge.conf"), strings.ReplaceAll(
				"EDGE_ROLE=agent\nEDGE_TOKEN=\""+token+"\"\nEDGE_MASTER=https://192.168.1.10:7443\nEDGE_LABELS=zone=barn\n", "\n", "\r\n"), 0o644)
			copyFile(t, "../../docs/firstboot/firstboot.sh", filepath.Join(boot, "edge/firstboot.sh"))
			// A release for each architecture, told apart by their binaries
			// (busybox's ash runs its own uname, not the fake aarch64).
			for _, arch := range []string{"amd64", "arm64", "armv7"} {
				e.makeBundle(arch)
				writeTarball(t, e.bundle, filepath.Join(boot, "edge/edge-v9.9.9-linux-"+arch+".tar.gz"))
			}
			m, _ := e.run("-c", "uname -m")
			arch := map[string]string{"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armv7"}[strings.TrimSpace(m)]

			if out, err := e.run(c.run...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			logb, _ := os.ReadFile(filepath.Join(boot, "edge/firstboot.log"))
			log := string(logb)
			if !strings.Contains(log, "edge firstboot: done") || !strings.Contains(log, "edge-v9.9.9-linux-"+arch+".tar.gz") {
				t.Fatalf("firstboot.log:\n%s", log)
			}
			if b := e.read("/usr/local/bin/edgeagent"); !strings.Contains(b, "build "+arch+"\n") {
				t.Errorf("installed the wrong architecture's agent, want %s:\n%s", arch, b)
			}
			var installed []string
			for _, f := range e.files() {
				if !strings.HasPrefix(f, "/"+c.boot+"/") && f != "/run/edge-firstboot-reboot" {
					installed = append(installed, f)
				}
			}
			if !slices.Equal(installed, agentFiles) {
				t.Errorf("installed:\n%s\nlog:\n%s", strings.Join(installed, "\n"), log)
			}
			e.wantEnv("EDGE_TOKEN="+token, "EDGE_MASTER=https://192.168.1.10:7443", "EDGE_LABELS=zone=barn")
			e.wantCalls("systemctl --root="+e.root+" enable edgeagent.service", "systemctl --root="+e.root+" enable edge-containerd.service")
			if _, err := os.Stat(filepath.Join(boot, "edge/edge.conf")); err == nil {
				t.Error("edge.conf is still on the card")
			}
			if done, _ := os.ReadFile(filepath.Join(boot, "edge/edge.conf.installed")); strings.Contains(string(done), "K10") ||
				!strings.Contains(string(done), "EDGE_LABELS=zone=barn") {
				t.Errorf("edge.conf.installed:\n%s", done)
			}
			cmdline, _ := os.ReadFile(filepath.Join(boot, "cmdline.txt"))
			if string(cmdline) != "console=serial0,115200 root=PARTUUID=1234-02 rootwait cgroup_memory=1 cgroup_enable=memory\n" {
				t.Errorf("cmdline.txt: %q", cmdline)
			}
			if _, err := os.Stat(filepath.Join(e.root, strings.TrimPrefix(strings.Fields(userData.PowerState.Condition)[2], "/"))); err != nil {
				t.Errorf("no reboot flag for cloud-init's power_state condition %q", userData.PowerState.Condition)
			}

			// The next boot: nothing to do, nothing changes.
			before := e.files()
			if out, err := e.run(c.run...); err != nil {
				t.Fatalf("second boot: %v\n%s", err, out)
			}
			if after := e.files(); !slices.Equal(before, after) {
				t.Errorf("second boot changed files:\n%s", strings.Join(after, "\n"))
			}
			if cmdline2, _ := os.ReadFile(filepath.Join(boot, "cmdline.txt")); string(cmdline2) != string(cmdline) {
				t.Errorf("second boot changed cmdline.txt: %q", cmdline2)
			}

			e.extra = nil
			e.mustInstall("--uninstall")
			for _, f := range e.files() {
				if !strings.HasPrefix(f, "/"+c.boot+"/") && f != "/run/edge-firstboot-reboot" {
					t.Errorf("left after --uninstall: %s", f)
				}
			}
		})
	}
}

func writeFile(t *testing.T, name, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(name, mode)
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(src)
	writeFile(t, dst, string(b), fi.Mode().Perm())
}

// writeTarball packs dir as release.sh does: one top directory.
func writeTarball(t *testing.T, dir, name string) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	base := filepath.Dir(dir)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name, _ = filepath.Rel(base, p)
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
}

// release.sh ships what these tests install: the same files of this
// directory, firstboot.sh, and the runtime where install.sh looks for it.
func TestReleaseShipsWhatInstallUses(t *testing.T) {
	b, err := os.ReadFile("../release.sh")
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	want := "cp build/release/{" + strings.Join(shipped, ",") + "} "
	if !strings.Contains(script, want) {
		t.Errorf("release.sh does not copy %q", want)
	}
	for _, s := range []string{"cp docs/firstboot/firstboot.sh", `"$stage/runtime/"`, `"$stage/runtime/cni/"`,
		"main/bridge ipam/host-local meta/portmap main/loopback", "cmd/containerd@", "cmd/containerd-shim-runc-v2@", "opencontainers/runc@"} {
		if !strings.Contains(script, s) {
			t.Errorf("release.sh lacks %q", s)
		}
	}
	for _, f := range shipped {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
}

// install.sh on the machine's own root (no --root), as on a Pi: it runs
// inside a private mount namespace where /etc, /usr/local and /var/lib are
// copy-on-write overlays whose changes land in a temporary directory, /run
// is empty but for /run/systemd/system (systemd "running"), and
// /sys/fs/cgroup is empty (so stopping pods finds none of this machine's).
// systemctl is faked. Root only (as CI runs).
func TestInstallOnRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a mount namespace)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare (util-linux)")
	}
	e := newEnv(t, shells(t)[0])
	dir := t.TempDir()
	// The fake systemctl "starts" the master: it writes a join token.
	writeFile(t, filepath.Join(e.fake, "systemctl"), `#!/bin/sh
echo "systemctl $*" >>"$EDGE_TEST_CALLS"
if [ "$*" = "restart --no-block edgemaster.service" ]; then
	mkdir -p /var/lib/edge/master && echo "`+token+`" >/var/lib/edge/master/join-token
fi
`, 0o755)
	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Skip(err)
	}
	mount, err := exec.LookPath("mount")
	if err != nil {
		t.Skip("no mount")
	}
	setup := `set -eu
# Never on this machine's own mounts.
[ "$(readlink /proc/self/ns/mnt)" != "$PARENT_NS" ] || { echo "not in a new mount namespace"; exit 99; }
"$MOUNT" --make-rprivate /
for d in etc usr/local var/lib; do
	mkdir -p "$DIR/upper/$d" "$DIR/work/$d"
	"$MOUNT" -t overlay overlay -o "lowerdir=/$d,upperdir=$DIR/upper/$d,workdir=$DIR/work/$d" "/$d"
done
"$MOUNT" -t tmpfs tmpfs /run
mkdir -p /run/systemd/system
"$MOUNT" -t tmpfs tmpfs /sys/fs/cgroup
I="$BUNDLE/install.sh"
echo "== master"; sh "$I" master
echo "== agent"; sh "$I" agent --runtime bundled --labels zone=lab
test -f /etc/edge/edge.env && grep '^EDGE_' /etc/edge/edge.env && cat /etc/edge/installed-files
echo "== uninstall"; sh "$I" --uninstall --purge
for d in /etc/edge /usr/local/lib/edge /var/lib/edge; do
	if [ -e "$d" ]; then echo "left: $d"; else echo "gone: $d"; fi
done
`
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", setup)
	cmd.Env = append(e.environ(), "PARENT_NS="+ns, "DIR="+dir, "BUNDLE="+e.bundle, "MOUNT="+mount)
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil {
		if !strings.Contains(out, "== master") {
			t.Skipf("cannot set up the namespace here: %v\n%s", err, out)
		}
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"join token (/var/lib/edge/master/join-token): " + token,
		"using the join token of the master on this machine", "EDGE_TOKEN=" + token, "EDGE_LABELS=zone=lab",
		"EDGE_CONTAINERD=/run/edge-containerd/containerd.sock", "/usr/local/lib/edge/bin/runc",
		"running /usr/local/bin/edgeagent --cleanup --data-dir /var/lib/edge/agent", "removed /var/lib/edge", "uninstalled",
		"gone: /etc/edge", "gone: /usr/local/lib/edge", "gone: /var/lib/edge"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	calls := e.callLog()
	want := []string{
		"systemctl daemon-reload", "systemctl enable edgemaster.service", "systemctl restart --no-block edgemaster.service",
		"systemctl daemon-reload", "systemctl enable edge-containerd.service", "systemctl enable edgeagent.service",
		"systemctl restart --no-block edge-containerd.service", "systemctl restart --no-block edgeagent.service",
		"systemctl stop edgeagent.service", "systemctl disable edgeagent.service",
		"systemctl stop edge-containerd.service", "systemctl disable edge-containerd.service",
		"systemctl stop edgemaster.service", "systemctl disable edgemaster.service",
		"edgeagent --cleanup --data-dir /var/lib/edge/agent", "systemctl daemon-reload"}
	if !slices.Equal(calls, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	// Nothing is left: no file in the overlays' upper layers.
	filepath.WalkDir(filepath.Join(dir, "upper"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("left behind: %s", p)
		}
		return nil
	})
	if t.Failed() {
		t.Log(out)
	}
}
