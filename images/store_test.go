package images

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeorch/edge/core"
)

func TestStore_Blobs(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("layer"), 100000)
	d := digest.FromBytes(data)
	// Wrong digest, wrong size: refused, nothing visible, nothing left.
	if err := s.Put(digest.FromString("other"), -1, bytes.NewReader(data)); core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("wrong digest: %v", err)
	}
	if err := s.Put(d, int64(len(data))+1, bytes.NewReader(data)); core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("short: %v", err)
	}
	if err := s.Put(d, 10, bytes.NewReader(data)); core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("long: %v", err)
	}
	if _, err := s.Stat(d); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("refused blob visible: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir, "ingest")); len(ents) != 0 {
		t.Fatalf("ingest holds %d files", len(ents))
	}
	if err := s.Put(d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Stat(d); err != nil || n != int64(len(data)) {
		t.Fatalf("Stat: %d %v", n, err)
	}
	if _, err := s.Stat("sha512:abc"); core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("sha512: %v", err)
	}
	// A writer abandoned mid-way (a crash) is cleaned at the next open.
	w, _ := s.Writer(digest.FromString("x"), -1)
	w.Write([]byte("partial"))
	s2, err := OpenStore(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir, "ingest")); len(ents) != 0 {
		t.Fatalf("crashed ingest not cleaned: %d files", len(ents))
	}
	if blobs, size, _ := s2.Usage(); blobs != 1 || size != int64(len(data)) {
		t.Fatalf("Usage: %d blobs %d bytes", blobs, size)
	}
}

func TestStore_Index(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &Store{Dir: dir, Now: func() time.Time { return now }}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	idx := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	d, err := s.PutManifest("docker.io/library/busybox", "latest", "application/vnd.oci.image.index.v1+json", idx)
	if err != nil {
		t.Fatal(err)
	}
	s.PutManifest("docker.io/library/busybox", "1.36", "application/vnd.oci.image.index.v1+json", idx)
	if tg, err := s.Tag("docker.io/library/busybox", "latest"); err != nil || tg.Digest != d || tg.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("Tag: %+v %v", tg, err)
	}
	if tags, _ := s.Tags("docker.io/library/busybox"); strings.Join(tags, ",") != "1.36,latest" {
		t.Fatalf("Tags: %v", tags)
	}
	if _, err := s.Tags("docker.io/library/none"); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatal(err)
	}
	if err := s.SetPinned("docker.io/library/busybox", "latest", true); err != nil {
		t.Fatal(err)
	}
	// Last-used times are written at most every LastUsedWrite.
	st1, _ := os.Stat(s.indexPath())
	now = now.Add(time.Minute)
	s.Touch("docker.io/library/busybox", "latest")
	b, _ := os.ReadFile(s.indexPath())
	if strings.Contains(string(b), "00:01:00") {
		t.Fatal("a pull a minute later rewrote the index")
	}
	now = now.Add(2 * time.Hour)
	s.Touch("docker.io/library/busybox", "latest")
	b, _ = os.ReadFile(s.indexPath())
	if !strings.Contains(string(b), "02:01:00") {
		t.Fatalf("last use two hours later not saved (%v): %s", st1.ModTime(), b)
	}
	// Reopened: all of it is back.
	s2, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	imgs := s2.Images()
	if len(imgs) != 2 || !imgs[1].Pinned || imgs[1].Tag != "latest" || imgs[1].Repo != "docker.io/library/busybox" {
		t.Fatalf("after reopen: %+v", imgs)
	}
	if m, err := s2.Manifest("docker.io/library/busybox", d); err != nil || m.Size != int64(len(idx)) {
		t.Fatalf("Manifest: %+v %v", m, err)
	}
	if _, err := s2.Manifest("docker.io/library/other", d); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("manifest of another repo: %v", err)
	}
}
