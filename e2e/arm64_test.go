package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeorch/edge/images"
)

// TestArm64Node puts an arm64 node in the namespace cluster beside an
// amd64 one: the real arm64 edgeagent (cross-built as `make cross` builds
// it) runs under qemu-aarch64-static, joins by mDNS, reports
// kubernetes.io/arch=arm64, pulls its platform of a multi-arch image
// through the master and runs Debian's arm64 busybox in it (the kernel
// runs arm64 container binaries through the binfmt_misc handler this test
// registers for qemu-aarch64-static). A nodeSelector on the arch label
// places pods on the matching node only.
func TestArm64Node(t *testing.T) {
	needRoot(t)
	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		t.Skip("qemu-aarch64-static is missing, so no arm64 node can run here: apt-get install qemu-user-static")
	}
	armBusybox := arm64Busybox(t)
	amdBusybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox-static is needed for the amd64 half of the image: apt-get install busybox-static")
	}
	armBin := arm64Binaries(t)
	enableArm64Binfmt(t, qemu) // before the fleet: its cleanup runs after the fleet's

	tf := newTestFleet(t, 0)
	w1, err := tf.AddHost("w1")
	if err != nil {
		t.Fatal(err)
	}
	a1, err := tf.AddHost("a1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tf.StartContainerd(w1); err != nil {
		t.Fatal(err)
	}
	if err := tf.StartEmptyContainerd(a1); err != nil {
		t.Fatal(err)
	}
	// The arm64 agent is the cross-built binary, run by QEMU's user-mode
	// emulator (nsenter execs qemu, qemu the agent). It is given the
	// master's URL: mDNS cannot work under qemu-user, whose setsockopt
	// does not emulate MCAST_JOIN_GROUP at IPPROTO_IP ("Unsupported
	// setsockopt level=0 optname=42" with -d unimp, ENOPROTOOPT to the
	// program), which zeroconf joins the mDNS group with (through
	// x/net/ipv4). An arm64 kernel implements it: a Pi finds the master.
	// The amd64 agent finds it by mDNS.
	start := time.Now()
	if _, err := tf.StartAgent(w1, tf.token, ""); err != nil {
		t.Fatal(err)
	}
	armArgs := append([]string{filepath.Join(armBin, "edgeagent")}, tf.AgentArgs(a1, tf.token, "https://"+tf.master.IP+":7443")...)
	if _, err := tf.Start(a1, a1.Name+"-edgeagent", qemu, armArgs...); err != nil {
		t.Fatal(err)
	}
	readyAt := map[string]time.Duration{}
	waitFor(t, 180*time.Second, "both nodes Ready", func() error {
		nodes := tf.nodes()
		for _, h := range []*Host{w1, a1} {
			if _, done := readyAt[h.Name]; !done && ready(nodes[h.Name]) == "True" {
				readyAt[h.Name] = time.Since(start)
			}
		}
		if len(readyAt) < 2 {
			return fmt.Errorf("ready so far: %v", readyAt)
		}
		return nil
	})
	t.Logf("agent start to node Ready: amd64 (native) %s, arm64 (qemu-user) %s",
		readyAt["w1"].Round(10*time.Millisecond), readyAt["a1"].Round(10*time.Millisecond))

	t.Run("NodeReportsArm64", func(t *testing.T) {
		tf.t = t
		nodes := tf.nodes()
		for name, arch := range map[string]string{"w1": "amd64", "a1": "arm64"} {
			n := nodes[name]
			if n.Metadata.Labels["kubernetes.io/arch"] != arch || n.Status.NodeInfo.Architecture != arch || n.Metadata.Labels["kubernetes.io/os"] != "linux" {
				t.Fatalf("node %s: labels %v, nodeInfo.architecture %q; want arch %s", name, n.Metadata.Labels, n.Status.NodeInfo.Architecture, arch)
			}
		}
	})

	// One multi-arch image, imported once into the master's registry.
	const image = "edge.local/multiarch:1"
	archive := filepath.Join(tf.Dir, "multiarch.tar")
	plats := writeMultiArch(t, archive, image, map[string]string{"amd64": amdBusybox, "arm64": armBusybox})

	t.Run("MultiArchImage", func(t *testing.T) {
		tf.t = t
		if out := tf.mustEdgectl("image", "import", archive); !strings.Contains(out, image) {
			t.Fatalf("image import: %s", out)
		}
		tf.apply(fmt.Sprintf(archDS, image))
		pulled := time.Now()
		logs := map[string]string{}
		waitFor(t, 180*time.Second, "an archname pod Running on each node, its uname in its log", func() error {
			pods := tf.pods("app=archname")
			for _, p := range pods {
				if p.Status.Phase != "Running" || logs[p.Spec.NodeName] != "" {
					continue
				}
				out, _, err := tf.edgectl("logs", p.Metadata.Name)
				if err == nil && strings.Contains(out, "arch=") {
					logs[p.Spec.NodeName] = strings.TrimSpace(out)
					t.Logf("%s on %s Running, logged %q, %s after the DaemonSet", p.Metadata.Name, p.Spec.NodeName, logs[p.Spec.NodeName], time.Since(pulled).Round(10*time.Millisecond))
				}
			}
			if len(logs) < 2 {
				return fmt.Errorf("%d pods, logs so far %v", len(pods), logs)
			}
			return nil
		})
		if logs["w1"] != "arch=x86_64" || logs["a1"] != "arch=aarch64" {
			t.Fatalf("uname -m per node: %v; want x86_64 on w1, aarch64 on a1", logs)
		}
		// Each node holds the index and its own platform's manifest and
		// layer, and nothing of the other platform.
		for _, n := range []struct {
			h           *Host
			mine, other string
		}{{w1, "amd64", "arm64"}, {a1, "arm64", "amd64"}} {
			target, have := nodeContent(t, n.h, image, plats)
			if target != plats["index"].manifest {
				t.Fatalf("%s: image %s targets %s, want the index %s", n.h.Name, image, target, plats["index"].manifest)
			}
			if !have[plats[n.mine].manifest] || !have[plats[n.mine].layer] {
				t.Fatalf("%s lacks its %s manifest or layer: %v", n.h.Name, n.mine, have)
			}
			if have[plats[n.other].layer] {
				t.Fatalf("%s pulled the %s layer too", n.h.Name, n.other)
			}
		}
		tf.mustEdgectl("delete", "daemonset", "archname")
	})

	t.Run("NodeSelectorOnArch", func(t *testing.T) {
		tf.t = t
		tf.apply(fmt.Sprintf(archDeploy, "armonly", "arm64", image) + "---\n" + fmt.Sprintf(archDeploy, "amdonly", "amd64", image))
		for app, node := range map[string]string{"armonly": "a1", "amdonly": "w1"} {
			waitFor(t, 180*time.Second, app+": 2 pods Running on "+node, func() error {
				pods := tf.pods("app=" + app)
				got := placement(pods)
				if len(pods) != 2 || got[node] != 2 {
					return fmt.Errorf("%d pods, placement %v", len(pods), got)
				}
				return nil
			})
		}
		tf.mustEdgectl("delete", "deployment", "armonly")
		tf.mustEdgectl("delete", "deployment", "amdonly")
	})

	rss := func(h *Host) string {
		if p := tf.Proc(h.Name + "-edgeagent"); p != nil {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
					return strings.TrimSpace(v)
				}
			}
		}
		return "?"
	}
	t.Logf("agent RSS at the end: amd64 %s, arm64 under qemu-user %s (qemu's translation cache included)", rss(w1), rss(a1))

	// What went wrong under emulation, if anything: the agent's warnings
	// and errors, and QEMU's own complaints (it writes them to the same
	// stderr).
	if p := tf.Proc(a1.Name + "-edgeagent"); p != nil {
		b, _ := os.ReadFile(p.Log)
		var odd []string
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" && !strings.Contains(l, "level=INFO") && !strings.Contains(l, "level=DEBUG") {
				odd = append(odd, l)
			}
		}
		t.Logf("arm64 agent: %d log lines not INFO\n%s", len(odd), strings.Join(odd, "\n"))
	}
}

const archDS = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: archname}
spec:
  selector: {matchLabels: {app: archname}}
  template:
    metadata: {labels: {app: archname}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: %s
        command: ["/bin/sh", "-c", "echo arch=$(uname -m); trap 'exit 0' TERM; sleep 3600 & wait"]
`

// archDeploy: name, arch, image. One sleeping shell per pod: under
// emulation every process started costs.
const archDeploy = `apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: 2
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      terminationGracePeriodSeconds: 2
      nodeSelector: {kubernetes.io/arch: %[2]s}
      containers:
      - name: main
        image: %[3]s
        command: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
`

// arm64Busybox returns Debian's static arm64 busybox, fetching it first
// (build/arm64-busybox.sh, which make deps-test runs) if it is not cached.
func arm64Busybox(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../build/.cache/arm64/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if fileExists(p) {
		return p
	}
	if out, err := exec.Command("../build/arm64-busybox.sh").CombinedOutput(); err != nil {
		t.Fatalf("no arm64 busybox in %s and fetching it failed (build/arm64-busybox.sh: apt-get download busybox-static:arm64): %v\n%s", p, err, out)
	}
	return p
}

// arm64Binaries returns a directory with the arm64 edgeagent and
// edge-logdriver: EDGE_E2E_ARM64_BIN (make test points it at `make
// cross`'s dist/linux-arm64), else built here with the flags of `make
// cross`.
func arm64Binaries(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("EDGE_E2E_ARM64_BIN"); dir != "" {
		for _, b := range []string{"edgeagent", "edge-logdriver"} {
			if !fileExists(filepath.Join(dir, b)) {
				t.Fatalf("EDGE_E2E_ARM64_BIN=%s has no %s (make cross)", dir, b)
			}
		}
		return dir
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", dir+"/", "../cmd/edgeagent", "../cmd/edge-logdriver")
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the arm64 agent: %v\n%s", err, out)
	}
	return dir
}

const binfmtDir = "/proc/sys/fs/binfmt_misc"

// aarch64Magic and aarch64Mask are the ELF header bytes of a static or
// dynamic arm64 executable (as Debian's qemu-user-static registers them).
const (
	aarch64Magic = `\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00`
	aarch64Mask  = `\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff`
)

// enableArm64Binfmt makes the kernel run arm64 executables with qemu, in
// every mount namespace (containers): binfmt_misc mounted if it is not,
// and, unless an enabled aarch64 handler exists, one registered with the F
// flag (the kernel opens the interpreter now, so a container need not have
// it). The test undoes what it did.
func enableArm64Binfmt(t *testing.T, qemu string) {
	t.Helper()
	if !fileExists(filepath.Join(binfmtDir, "register")) {
		if err := run("mount", "-t", "binfmt_misc", "binfmt_misc", binfmtDir); err != nil {
			t.Fatalf("mounting binfmt_misc (to run arm64 container binaries with qemu): %v", err)
		}
		t.Cleanup(func() {
			if err := run("umount", binfmtDir); err != nil {
				t.Errorf("unmounting binfmt_misc: %v", err)
			}
		})
	}
	ents, _ := os.ReadDir(binfmtDir)
	for _, e := range ents {
		p := filepath.Join(binfmtDir, e.Name())
		if strings.HasPrefix(e.Name(), "edge-e2e-aarch64-") {
			os.WriteFile(p, []byte("-1"), 0o644) // left by a test that was killed
			continue
		}
		if b, err := os.ReadFile(p); err == nil && arm64Handler(string(b)) {
			t.Logf("arm64 binaries run through the enabled binfmt_misc handler %s", e.Name())
			return
		}
	}
	// With P (preserve argv[0]) the kernel passes the program's argv[0] on
	// and qemu must know to expect it: it does when it is run by a name
	// ending in -binfmt-P, as Debian's qemu-user-static registers it.
	// Without P a busybox applet started by its name (busybox sh re-execs
	// /proc/self/exe with argv[0] "sleep") would run as whatever its path
	// says.
	interp, flags := "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "PF"
	if !fileExists(interp) {
		interp, flags = qemu, "F"
	}
	name := fmt.Sprintf("edge-e2e-aarch64-%d", os.Getpid())
	rule := fmt.Sprintf(":%s:M::%s:%s:%s:%s", name, aarch64Magic, aarch64Mask, interp, flags)
	if err := os.WriteFile(filepath.Join(binfmtDir, "register"), []byte(rule), 0o200); err != nil {
		t.Fatalf("registering %s with binfmt_misc: %v", qemu, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(filepath.Join(binfmtDir, name), []byte("-1"), 0o200); err != nil {
			t.Errorf("unregistering binfmt_misc handler %s: %v", name, err)
		}
	})
}

// arm64Handler reports whether a binfmt_misc entry is an enabled handler
// of arm64 ELF executables (its magic is aarch64Magic, shown in hex) that
// serves containers as this test's would: F (the interpreter opened at
// registration, so a container need not have it) and P with a qemu that
// expects it (Debian's registration). Otherwise the test registers its
// own, which the kernel tries first (the newest entry is).
func arm64Handler(entry string) bool {
	var interp, flags string
	for _, l := range strings.Split(entry, "\n") {
		if v, ok := strings.CutPrefix(l, "interpreter "); ok {
			interp = v
		} else if v, ok := strings.CutPrefix(l, "flags: "); ok {
			flags = v
		}
	}
	return strings.HasPrefix(entry, "enabled\n") && strings.Contains(entry, "\nmagic 7f454c460201010000000000000000000200b700") &&
		strings.Contains(flags, "F") && strings.Contains(flags, "P") && strings.HasSuffix(interp, "-binfmt-P")
}

// platformBlobs are the digests of one platform's manifest and layer
// ("index": the index, in manifest).
type platformBlobs struct{ manifest, layer digest.Digest }

// writeMultiArch writes the multi-arch busybox image (arch -> busybox) to
// path and returns the digests of its parts by architecture.
func writeMultiArch(t *testing.T, path, name string, busyboxes map[string]string) map[string]platformBlobs {
	t.Helper()
	var specs []*images.ImageSpec
	for _, arch := range []string{"amd64", "arm64"} {
		spec, err := images.BusyboxImage(name, busyboxes[arch], arch)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, spec)
	}
	var buf bytes.Buffer
	if err := images.WriteOCIIndexArchive(&buf, name, specs...); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	member := func(name string) []byte {
		b, err := exec.Command("tar", "-xOf", path, name).Output()
		if err != nil {
			t.Fatalf("%s of %s: %v", name, path, err)
		}
		return b
	}
	blob := func(d digest.Digest) []byte { return member("blobs/sha256/" + d.Encoded()) }
	var top, idx ocispec.Index
	if err := json.Unmarshal(member("index.json"), &top); err != nil {
		t.Fatal(err)
	}
	m := map[string]platformBlobs{"index": {manifest: top.Manifests[0].Digest}}
	if err := json.Unmarshal(blob(top.Manifests[0].Digest), &idx); err != nil {
		t.Fatal(err)
	}
	for _, d := range idx.Manifests {
		var man ocispec.Manifest
		if err := json.Unmarshal(blob(d.Digest), &man); err != nil {
			t.Fatal(err)
		}
		m[d.Platform.Architecture] = platformBlobs{manifest: d.Digest, layer: man.Layers[0].Digest}
	}
	return m
}

// nodeContent returns the digest the node's image record for ref points
// at, and which of the image's blobs its containerd holds.
func nodeContent(t *testing.T, h *Host, ref string, plats map[string]platformBlobs) (digest.Digest, map[digest.Digest]bool) {
	t.Helper()
	c, err := dialContainerd(h.Socket, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := namespaces.WithNamespace(context.Background(), "edge")
	img, err := c.ImageService().Get(ctx, ref)
	if err != nil {
		t.Fatalf("%s: image %s: %v", h.Name, ref, err)
	}
	have := map[digest.Digest]bool{}
	for _, p := range plats {
		for _, d := range []digest.Digest{p.manifest, p.layer} {
			if d == "" {
				continue
			}
			_, err := c.ContentStore().Info(ctx, d)
			if err != nil && !errdefs.IsNotFound(err) {
				t.Fatal(err)
			}
			have[d] = err == nil
		}
	}
	return img.Target.Digest, have
}
