package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/images"
)

// Air-gapped images: a docker save tarball goes to the master with
// `edgectl image import`, with no upstream registry configured; the
// master's /v2/ serves it (skopeo, and containerd pulling through the
// master as a mirror of edge.local); a DaemonSet runs it; it survives a
// master restart and the collector (a 1-byte budget: only pins keep
// anything); a tarball dropped in DATA_DIR/images is imported at start;
// `image rm` frees the blobs no other image shares; the node is told the
// image it holds is pinned.
//
// Agents on this branch still pull from the registries their images name
// (the agent's pulling through the master is another branch's work), so
// the test has containerd pull through the master with ctr, as an agent
// will, before the DaemonSet starts.
func TestImageImportAirgap(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"skopeo", "ctr"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is needed: apt-get install %s", tool, tool)
		}
	}
	c := newCluster(t, "--image-cache-size", "1", "--image-gc-interval", "1s")
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox-static is needed")
	}
	write := func(path, name string, docker bool) {
		spec, err := images.BusyboxImage(name, bb, runtime.GOARCH)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if docker {
			zw := gzip.NewWriter(&buf)
			if err := images.WriteDockerArchive(zw, spec); err != nil {
				t.Fatal(err)
			}
			zw.Close()
		} else if err := images.WriteOCIArchive(&buf, spec); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const ref = "edge.local/airgap:1"
	tarball := filepath.Join(c.dir, "airgap.tar.gz")
	write(tarball, ref, true)

	out, stderr, err := c.edgectl("image", "import", tarball)
	if err != nil || !strings.Contains(out, "imported "+ref+" sha256:") {
		t.Fatalf("image import: %v\n%s%s", err, out, stderr)
	}
	if !strings.Contains(stderr, "(100%)") {
		t.Fatalf("no progress lines: %q", stderr)
	}
	if ls := c.mustEdgectl("image", "ls"); !strings.Contains(ls, ref) || !strings.Contains(ls, "true") {
		t.Fatalf("image ls:\n%s", ls)
	}

	// The master's /v2/ serves it, with the admin token.
	cfg, err := api.LoadConfig(c.config)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := cfg.CAPEM()
	caDir := filepath.Join(c.dir, "ca")
	os.MkdirAll(caDir, 0o755)
	if err := os.WriteFile(filepath.Join(caDir, "ca.crt"), caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	registry := fmt.Sprintf("127.0.0.1:%d", c.apiPort)
	inspect := func(r string) string {
		t.Helper()
		out, err := exec.Command("skopeo", "inspect", "--cert-dir", caDir, "--creds", "admin:"+cfg.Token, "docker://"+registry+"/"+r).CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v\n%s", r, err, out)
		}
		var info struct{ Digest, Architecture string }
		if err := json.Unmarshal(out, &info); err != nil || info.Architecture != runtime.GOARCH {
			t.Fatalf("skopeo inspect %s: %v %s", r, err, out)
		}
		return info.Digest
	}
	dig := inspect(ref)
	if out, err := exec.Command("skopeo", "copy", "--src-cert-dir", caDir, "--src-creds", "admin:"+cfg.Token,
		"docker://"+registry+"/"+ref, "oci:"+filepath.Join(c.dir, "copy")+":x").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}

	// containerd pulls it through the master, as a mirror of edge.local.
	hosts := filepath.Join(c.dir, "hosts", "edge.local")
	os.MkdirAll(hosts, 0o755)
	toml := fmt.Sprintf("server = \"https://edge.local\"\n\n[host.\"https://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n", registry, filepath.Join(caDir, "ca.crt"))
	if err := os.WriteFile(filepath.Join(hosts, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ctr", "-a", c.ctrd.socket, "-n", "edge", "images", "pull", "--hosts-dir", filepath.Join(c.dir, "hosts"),
		"--user", "admin:"+cfg.Token, ref).CombinedOutput(); err != nil {
		t.Fatalf("containerd pulling through the master: %v\n%s", err, out)
	}

	// A DaemonSet runs it.
	c.apply(`apiVersion: apps/v1
kind: DaemonSet
metadata: {name: airgap}
spec:
  selector: {matchLabels: {app: airgap}}
  template:
    metadata: {labels: {app: airgap}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: ` + ref + `
        imagePullPolicy: IfNotPresent
        command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
`)
	waitFor(t, 60*time.Second, "the DaemonSet's pod Running", func() error {
		pods := c.podsJSON("app=airgap")
		if len(pods) != 1 || pods[0].Status.Phase != "Running" {
			return fmt.Errorf("pods %+v", pods)
		}
		return nil
	})
	waitFor(t, 60*time.Second, "image ls to show the node holding it", func() error {
		if ls := c.mustEdgectl("image", "ls"); !strings.Contains(ls, c.node) {
			return fmt.Errorf("%s", ls)
		}
		return nil
	})
	// The node is told it holds a pinned image: its own image GC keeps it.
	waitFor(t, 30*time.Second, "the node's desired state to list the image as pinned", func() error {
		b, err := os.ReadFile(filepath.Join(c.dir, "agent", "desired.json"))
		if err != nil || !strings.Contains(string(b), `"pinned":["`+ref+`"]`) {
			return fmt.Errorf("desired.json: %v", err)
		}
		return nil
	})

	// A restart, with a tarball dropped for the master to import at start
	// (an OCI layout of the same image under another name: the config is
	// the same blob).
	c.master.stop(syscall.SIGTERM, 10*time.Second)
	mdir := filepath.Join(c.dir, "master")
	os.MkdirAll(filepath.Join(mdir, "images"), 0o755)
	write(filepath.Join(mdir, "images", "dropped.tar"), "edge.local/dropped:1", false)
	os.WriteFile(filepath.Join(mdir, "images", "broken.tar"), []byte("not a tarball"), 0o644)
	c.startMaster()
	c.waitNodeReady(30 * time.Second)
	waitFor(t, 30*time.Second, "the dropped tarball imported", func() error {
		if ls := c.mustEdgectl("image", "ls"); !strings.Contains(ls, "edge.local/dropped:1") || !strings.Contains(ls, ref) {
			return fmt.Errorf("%s", ls)
		}
		return nil
	})
	if d := inspect(ref); d != dig {
		t.Fatalf("digest %s after a restart, was %s", d, dig)
	}
	if b, _ := os.ReadFile(c.master.log); !strings.Contains(string(b), "broken.tar") {
		t.Fatal("the broken tarball was not logged")
	}
	blobs := func() int {
		ents, _ := os.ReadDir(filepath.Join(mdir, "content", "blobs", "sha256"))
		return len(ents)
	}
	if n := blobs(); n != 5 {
		t.Fatalf("%d blobs, want 5 (2 manifests, 1 config, 2 layers)", n)
	}
	// Removed: its manifest and layer go at the next collection; the
	// config both images share stays, and the pinned image is whole.
	c.mustEdgectl("image", "rm", "edge.local/dropped:1")
	waitFor(t, 30*time.Second, "the removed image's blobs freed", func() error {
		if n := blobs(); n != 3 {
			return fmt.Errorf("%d blobs", n)
		}
		return nil
	})
	inspect(ref)
	if out, err := exec.Command("skopeo", "copy", "--src-cert-dir", caDir, "--src-creds", "admin:"+cfg.Token,
		"docker://"+registry+"/"+ref, "oci:"+filepath.Join(c.dir, "copy2")+":x").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy after the collection: %v\n%s", err, out)
	}
	// A second import of the same file is no change.
	if out := c.mustEdgectl("image", "import", tarball); !strings.Contains(out, "0 new blobs") {
		t.Fatalf("re-import: %s", out)
	}
}
