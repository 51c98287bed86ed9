package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/images"
	"github.com/edgeorch/edge/sqlite"
)

// startImageMaster serves the API with an image store; it returns an
// edgectl config and the store.
func startImageMaster(t *testing.T) (string, *sqlite.DB, *images.Store) {
	t.Helper()
	dir := t.TempDir()
	pki, err := api.LoadOrCreatePKI(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	db := sqlite.NewDB(filepath.Join(dir, "state.db"))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.CreateToken(context.Background(), &core.Token{ID: "admin", Kind: core.TokenAdmin, Hash: api.HashSecret("admin-secret")}); err != nil {
		t.Fatal(err)
	}
	store, err := images.OpenStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	reg := &images.Registry{Store: store}
	if err := reg.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	srv := &api.Server{Addr: "127.0.0.1:0", PKI: pki, Store: db, Tokens: db, Version: "test", Now: time.Now,
		Registry: reg, Images: &images.Service{Store: store}}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cfg := &api.Config{Server: "https://" + srv.Address(), Token: "admin-secret",
		CertificateAuthorityData: base64.StdEncoding.EncodeToString(pki.CAPEM)}
	path := filepath.Join(dir, "admin.conf")
	writeFile(t, path, string(cfg.Marshal()))
	return path, db, store
}

func testArchive(t *testing.T, name string) []byte {
	t.Helper()
	spec := &images.ImageSpec{Name: name, Architecture: "amd64", Cmd: []string{"/bin/sh"},
		Files: []images.File{{Path: "/bin", Dir: true, Mode: 0o755}, {Path: "/bin/busybox", Mode: 0o755, Data: []byte(name)}}}
	var buf bytes.Buffer
	if err := images.WriteOCIArchive(&buf, spec); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// untar unpacks an archive into dir (an OCI layout directory).
func untar(t *testing.T, b []byte, dir string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, h.Name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		data, _ := io.ReadAll(tr)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestImage(t *testing.T) {
	cfg, db, store := startImageMaster(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "app.tar")
	writeFile(t, file, string(testArchive(t, "edge.local/app:1")))

	t.Run("ImportFile", func(t *testing.T) {
		out, stderr, err := run("--config", cfg, "image", "import", file)
		if err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		if !strings.Contains(out, "imported edge.local/app:1 sha256:") || !strings.Contains(out, "1 images, 3 new blobs") {
			t.Fatalf("stdout %q", out)
		}
		// Not a terminal: plain progress lines.
		if !strings.Contains(stderr, "importing app.tar: sent") || !strings.Contains(stderr, "(100%)") {
			t.Fatalf("stderr %q", stderr)
		}
		if tg, err := store.Tag("edge.local/app", "1"); err != nil || !tg.Pinned {
			t.Fatalf("stored: %+v %v", tg, err)
		}
	})
	t.Run("ImportDir", func(t *testing.T) {
		layout := filepath.Join(dir, "layout")
		untar(t, testArchive(t, "edge.local/dir:2"), layout)
		out := mustRun(t, "--config", cfg, "image", "import", layout)
		if !strings.Contains(out, "imported edge.local/dir:2") {
			t.Fatalf("stdout %q", out)
		}
	})
	t.Run("ImportBad", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.tar")
		b := testArchive(t, "edge.local/bad:1")
		writeFile(t, bad, string(b[:len(b)/2]))
		_, _, err := run("--config", cfg, "image", "import", bad)
		if err == nil || !strings.Contains(api.ErrorString(err), "image archive: truncated") {
			t.Fatalf("truncated archive: %v", err)
		}
		if _, err := store.Tag("edge.local/bad", "1"); err == nil {
			t.Fatal("a truncated archive was imported")
		}
		// Refused at its first entry, with megabytes still to come: the
		// answer still reaches the client.
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "../evil", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20)
		tw.WriteHeader(&tar.Header{Name: "big", Mode: 0o644, Size: int64(len(big)), Typeflag: tar.TypeReg})
		tw.Write(big)
		tw.Close()
		writeFile(t, bad, buf.String())
		_, _, err = run("--config", cfg, "image", "import", bad)
		if err == nil || !strings.Contains(api.ErrorString(err), `"../evil" climbs out of the archive`) {
			t.Fatalf("path traversal: %v", err)
		}
	})
	t.Run("List", func(t *testing.T) {
		// A node that reports holding app:1.
		if err := db.Update(context.Background(), func(tx core.Tx) error {
			return tx.Create(&core.Node{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindNode}, Metadata: core.ObjectMeta{Name: "pi1", Labels: map[string]string{"zone": "a"}},
				Status: core.NodeStatus{Images: []core.NodeImage{{Names: []string{"edge.local/app:1"}}}}})
		}); err != nil {
			t.Fatal(err)
		}
		out := mustRun(t, "--config", cfg, "image", "ls")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "REFERENCE") || !strings.Contains(lines[1], "edge.local/app:1") ||
			!strings.Contains(lines[1], "true") || !strings.HasSuffix(lines[1], "pi1") || !strings.HasSuffix(lines[2], "<none>") {
			t.Fatalf("image ls:\n%s", out)
		}
		var list struct {
			Items []core.ImageInfo `json:"items"`
		}
		if err := json.Unmarshal([]byte(mustRun(t, "--config", cfg, "image", "ls", "-o", "json")), &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 2 || list.Items[0].Size == 0 || !strings.HasPrefix(list.Items[0].Digest, "sha256:") {
			t.Fatalf("json %+v", list.Items)
		}
	})
	t.Run("Prefetch", func(t *testing.T) {
		_, _, err := run("--config", cfg, "image", "prefetch", "edge.local/new:1", "-l", "zone=a", "--timeout", "300ms", "--poll", "50ms")
		if err == nil || !strings.Contains(err.Error(), "1 of 1 nodes do not hold edge.local/new:1 yet: pi1 (Ready=Unknown)") {
			t.Fatalf("not fetched: %v", err)
		}
		o, _ := db.Get(context.Background(), core.Key{Kind: core.KindNode, Name: "pi1"})
		if l := o.(*core.Node).PrefetchList(); strings.Join(l, ",") != "edge.local/new:1" {
			t.Fatalf("prefetch list %v", l)
		}
		out := mustRun(t, "--config", cfg, "image", "prefetch", "edge.local/app:1")
		if !strings.Contains(out, "pi1: holds edge.local/app:1") || !strings.Contains(out, "on all 1 nodes") {
			t.Fatalf("held already: %q", out)
		}
		if _, _, err := run("--config", cfg, "image", "prefetch", "x:1", "-l", "zone=none"); err == nil || !strings.Contains(api.ErrorString(err), "no node matches") {
			t.Fatalf("no node: %v", err)
		}
	})
	t.Run("Remove", func(t *testing.T) {
		out := mustRun(t, "--config", cfg, "image", "rm", "edge.local/app:1")
		if !strings.Contains(out, "image edge.local/app:1 removed") {
			t.Fatalf("rm: %q", out)
		}
		if _, _, err := run("--config", cfg, "image", "rm", "edge.local/app:1"); err == nil || !strings.Contains(api.ErrorString(err), "not stored") {
			t.Fatalf("rm twice: %v", err)
		}
		if out := mustRun(t, "--config", cfg, "image", "ls"); strings.Contains(out, "app:1") {
			t.Fatalf("still listed:\n%s", out)
		}
	})
}
