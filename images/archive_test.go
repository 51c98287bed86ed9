package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeorch/edge/core"
)

func testSpec(name string, data string) *ImageSpec {
	return &ImageSpec{Name: name, Architecture: "amd64", Cmd: []string{"/bin/sh"},
		Files: []File{{Path: "/bin", Dir: true, Mode: 0o755}, {Path: "/bin/busybox", Mode: 0o755, Data: []byte(data)}, {Path: "/bin/sh", Link: "busybox"}}}
}

func ociArchive(t testing.TB, name, data string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteOCIArchive(&buf, testSpec(name, data)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tarEntry is one entry of a hand-made archive.
type tarEntry struct {
	name string
	data []byte
	typ  byte   // 0: a regular file
	link string // symlink or hard link target
	size int64  // header size if not len(data) (a lying header)
}

func writeTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if e.typ != 0 {
			h.Typeflag, h.Size, h.Linkname = e.typ, 0, e.link
		}
		if e.typ == tar.TypeChar {
			h.Devmajor, h.Devminor = 1, 3
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(e.data)
		}
	}
	tw.Close()
	return buf.Bytes()
}

func readTar(t testing.TB, b []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		e := tarEntry{name: h.Name, data: data}
		if h.Typeflag != tar.TypeReg {
			e.typ, e.link = h.Typeflag, h.Linkname
		}
		out = append(out, e)
	}
}

// dockerSave builds a docker save archive (the legacy format: manifest.json,
// repositories, <id>/layer.tar, <config>.json) of a two-layer image under
// each of repoTags; with a second image sharing the base layer through a
// symlink, as docker writes a layer it saved already.
func dockerSave(t testing.TB, repoTags []string, gzipLayers bool) []byte {
	t.Helper()
	base, baseID, err := buildLayer(testSpec("x", "base-layer").Files)
	if err != nil {
		t.Fatal(err)
	}
	app, appID, err := buildLayer([]File{{Path: "/app", Mode: 0o644, Data: []byte("app layer")}})
	if err != nil {
		t.Fatal(err)
	}
	if !gzipLayers {
		base, app = gunzip(t, base), gunzip(t, app)
	}
	cfg := func(ids ...digest.Digest) []byte {
		b, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
			"config": map[string]any{"Cmd": []string{"/bin/sh"}}, "rootfs": map[string]any{"type": "layers", "diff_ids": ids}})
		return b
	}
	cfg1, cfg2 := cfg(baseID, appID), cfg(baseID)
	c1, c2 := digest.FromBytes(cfg1).Encoded(), digest.FromBytes(cfg2).Encoded()
	man, _ := json.Marshal([]map[string]any{
		{"Config": c1 + ".json", "RepoTags": repoTags, "Layers": []string{"aaaa/layer.tar", "bbbb/layer.tar"}},
		{"Config": c2 + ".json", "RepoTags": []string{"edge.local/base:1"}, "Layers": []string{"cccc/layer.tar"}},
	})
	return writeTar(t, []tarEntry{
		{name: "aaaa/", typ: tar.TypeDir}, {name: "aaaa/VERSION", data: []byte("1.0")}, {name: "aaaa/layer.tar", data: base},
		{name: "bbbb/", typ: tar.TypeDir}, {name: "bbbb/layer.tar", data: app},
		{name: "cccc/", typ: tar.TypeDir}, {name: "cccc/layer.tar", typ: tar.TypeSymlink, link: "../aaaa/layer.tar"},
		{name: c1 + ".json", data: cfg1}, {name: c2 + ".json", data: cfg2},
		{name: "repositories", data: []byte(`{}`)},
		{name: "manifest.json", data: man},
	})
}

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assertEmpty checks a refused import left nothing: no tag, no blob, no
// staging file.
func assertEmpty(t testing.TB, s *Store) {
	t.Helper()
	if imgs := s.Images(); len(imgs) != 0 {
		t.Fatalf("tags left: %+v", imgs)
	}
	if n, _, _ := s.Usage(); n != 0 {
		t.Fatalf("%d blobs left", n)
	}
	if ents, _ := os.ReadDir(s.ingestDir()); len(ents) != 0 {
		t.Fatalf("ingest holds %d entries", len(ents))
	}
}

// serve asks the store's registry for a manifest and each blob it names,
// as containerd would pull.
func serve(t testing.TB, s *Store, repo, tag string) ParsedManifest {
	t.Helper()
	reg := &Registry{Store: s, TagTTL: -1, Log: slog.New(slog.DiscardHandler)}
	if err := reg.Open(); err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	get := func(path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Accept", strings.Join(ManifestMediaTypes, ", "))
		w := httptest.NewRecorder()
		reg.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		return w
	}
	w := get("/v2/" + repo + "/manifests/" + tag)
	p, err := ParseManifest(w.Header().Get("Content-Type"), w.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if IsIndex(p.MediaType) {
		w = get("/v2/" + repo + "/manifests/" + p.Manifests[0].Digest.String())
		if p, err = ParseManifest(w.Header().Get("Content-Type"), w.Body.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range p.Blobs() {
		if w := get("/v2/" + repo + "/blobs/" + b.Digest.String()); digest.FromBytes(w.Body.Bytes()) != b.Digest {
			t.Fatalf("blob %s served with another digest", b.Digest)
		}
	}
	return *p
}

func TestImport_OCI(t *testing.T) {
	for _, tt := range []struct {
		name string
		wrap func([]byte) []byte
	}{{"tar", func(b []byte) []byte { return b }}, {"gzip", gz}} {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			res, err := s.Import(bytes.NewReader(tt.wrap(ociArchive(t, "edge.local/t:v1", "one"))), ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Images) != 1 || res.Images[0].Ref() != "edge.local/t:v1" || res.Blobs != 3 || res.Images[0].MediaType != ocispec.MediaTypeImageManifest {
				t.Fatalf("result %+v", res)
			}
			tg, err := s.Tag("edge.local/t", "v1")
			if err != nil || !tg.Pinned || tg.Digest != res.Images[0].Digest {
				t.Fatalf("tag %+v %v", tg, err)
			}
			serve(t, s, "edge.local/t", "v1")
			// Again: nothing new, same tag.
			res2, err := s.Import(bytes.NewReader(tt.wrap(ociArchive(t, "edge.local/t:v1", "one"))), ImportOptions{})
			if err != nil || res2.Blobs != 0 {
				t.Fatalf("second import: %+v %v", res2, err)
			}
			if ents, _ := os.ReadDir(s.ingestDir()); len(ents) != 0 {
				t.Fatalf("ingest holds %d entries", len(ents))
			}
		})
	}
}

// An OCI layout named only by a tag (as `skopeo copy oci:dir:latest`
// writes) or not at all needs --name.
func TestImport_OCIName(t *testing.T) {
	entries := readTar(t, ociArchive(t, "edge.local/t:v1", "x"))
	var idx ocispec.Index
	for i, e := range entries {
		if e.name == "index.json" {
			json.Unmarshal(e.data, &idx)
			delete(idx.Manifests[0].Annotations, "io.containerd.image.name")
			entries[i].data, _ = json.Marshal(idx)
		}
	}
	tagOnly := writeTar(t, entries)
	s := openStore(t)
	if _, err := s.Import(bytes.NewReader(tagOnly), ImportOptions{}); err == nil || !strings.Contains(err.Error(), `named only by the tag "v1": pass --name`) {
		t.Fatalf("tag only, no --name: %v", err)
	}
	assertEmpty(t, s)
	res, err := s.Import(bytes.NewReader(tagOnly), ImportOptions{Name: "myapp"})
	if err != nil || res.Images[0].Ref() != "docker.io/library/myapp:v1" {
		t.Fatalf("--name myapp: %+v %v", res, err)
	}
	res, err = s.Import(bytes.NewReader(tagOnly), ImportOptions{Name: "reg.lan/app:2"})
	if err != nil || res.Images[0].Ref() != "reg.lan/app:2" {
		t.Fatalf("--name reg.lan/app:2: %+v %v", res, err)
	}
	if _, err := s.Import(bytes.NewReader(tagOnly), ImportOptions{Name: "app@sha256:" + strings.Repeat("a", 64)}); core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("--name with a digest: %v", err)
	}
	for i, e := range entries {
		if e.name == "index.json" {
			idx.Manifests[0].Annotations = nil
			entries[i].data, _ = json.Marshal(idx)
		}
	}
	s = openStore(t)
	if _, err := s.Import(bytes.NewReader(writeTar(t, entries)), ImportOptions{}); err == nil || !strings.Contains(err.Error(), "has no name") {
		t.Fatalf("no name: %v", err)
	}
	assertEmpty(t, s)
}

func TestImport_DockerSave(t *testing.T) {
	for _, tt := range []struct {
		name       string
		gzipLayers bool
		gzipAll    bool
		layerType  string
	}{
		{"plain", false, false, MediaTypeDockerLayer},
		{"gzip-layers", true, false, MediaTypeDockerLayerGzip},
		{"gzipped", false, true, MediaTypeDockerLayer},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			b := dockerSave(t, []string{"busybox:latest", "edge.local/app:v2"}, tt.gzipLayers)
			if tt.gzipAll {
				b = gz(b)
			}
			res, err := s.Import(bytes.NewReader(b), ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var refs []string
			for _, img := range res.Images {
				refs = append(refs, img.Ref())
			}
			if strings.Join(refs, ",") != "docker.io/library/busybox:latest,edge.local/app:v2,edge.local/base:1" {
				t.Fatalf("images %v", refs)
			}
			// 2 configs, 2 layers (one shared through a symlink), 2 manifests.
			if res.Blobs != 6 {
				t.Fatalf("%d new blobs", res.Blobs)
			}
			p := serve(t, s, "docker.io/library/busybox", "latest")
			if p.MediaType != MediaTypeDockerManifest || p.Config.MediaType != MediaTypeDockerConfig || len(p.Layers) != 2 || p.Layers[0].MediaType != tt.layerType {
				t.Fatalf("manifest %+v", p)
			}
			base := serve(t, s, "edge.local/base", "1")
			if base.Layers[0].Digest != p.Layers[0].Digest {
				t.Fatal("the shared layer has two digests")
			}
			if tg, _ := s.Tag("edge.local/app", "v2"); !tg.Pinned || tg.Digest != res.Images[1].Digest {
				t.Fatalf("tag %+v", tg)
			}
		})
	}
	t.Run("name", func(t *testing.T) {
		s := openStore(t)
		if _, err := s.Import(bytes.NewReader(dockerSave(t, nil, false)), ImportOptions{}); err == nil || !strings.Contains(err.Error(), "no RepoTags") {
			t.Fatalf("no RepoTags: %v", err)
		}
		assertEmpty(t, s)
		if _, err := s.Import(bytes.NewReader(dockerSave(t, nil, false)), ImportOptions{Name: "x"}); err == nil || !strings.Contains(err.Error(), "names one image, the archive holds 2") {
			t.Fatalf("--name for 2 images: %v", err)
		}
	})
}

// Bad archives are refused with a message naming the problem, and leave
// nothing behind.
func TestImport_Bad(t *testing.T) {
	good := readTar(t, ociArchive(t, "edge.local/t:v1", "x"))
	with := func(f func([]tarEntry) []tarEntry) []byte {
		return writeTar(t, f(append([]tarEntry(nil), good...)))
	}
	var layer string // the layer blob's path
	for _, e := range good {
		if strings.HasPrefix(e.name, "blobs/") && len(e.data) > 0 && e.data[0] == 0x1f {
			layer = e.name
		}
	}
	full := ociArchive(t, "edge.local/t:v1", strings.Repeat("incompressible? no, but long enough ", 2000))
	docker := readTar(t, dockerSave(t, []string{"a:1"}, false))
	huge := make([]byte, MaxManifestSize+1)
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{"traversal", with(func(e []tarEntry) []tarEntry { return append(e, tarEntry{name: "../evil", data: []byte("x")}) }), `"../evil" climbs out of the archive`},
		{"traversal-inner", with(func(e []tarEntry) []tarEntry { return append(e, tarEntry{name: "blobs/../../evil", data: []byte("x")}) }), "climbs out of the archive"},
		{"absolute", with(func(e []tarEntry) []tarEntry { return append(e, tarEntry{name: "/etc/evil", data: []byte("x")}) }), "absolute path"},
		{"symlink-out", with(func(e []tarEntry) []tarEntry {
			return append(e, tarEntry{name: "blobs/sha256/link", typ: tar.TypeSymlink, link: "../../../etc/passwd"})
		}), "symlink blobs/sha256/link points at \"../../../etc/passwd\", out of the archive"},
		{"symlink-abs", with(func(e []tarEntry) []tarEntry {
			return append(e, tarEntry{name: "x", typ: tar.TypeSymlink, link: "/etc/passwd"})
		}), "absolute path \"/etc/passwd\""},
		{"hardlink-out", with(func(e []tarEntry) []tarEntry {
			return append(e, tarEntry{name: "x", typ: tar.TypeLink, link: "../etc/passwd"})
		}), "hard link x points at \"../etc/passwd\", out of the archive"},
		{"device", with(func(e []tarEntry) []tarEntry { return append(e, tarEntry{name: "null", typ: tar.TypeChar}) }), "holds only files"},
		{"blob-digest", with(func(e []tarEntry) []tarEntry {
			for i := range e {
				if e[i].name == layer {
					e[i].data = append(append([]byte(nil), e[i].data...), 0)
				}
			}
			return e
		}), "holds content whose digest is"},
		{"missing-blob", with(func(e []tarEntry) []tarEntry {
			out := e[:0]
			for _, x := range e {
				if x.name != layer {
					out = append(out, x)
				}
			}
			return out
		}), "layer 0 sha256:"},
		{"duplicate", with(func(e []tarEntry) []tarEntry { return append(e, e[1]) }), "appears twice"},
		{"huge-index", with(func(e []tarEntry) []tarEntry {
			for i := range e {
				if e[i].name == "index.json" {
					e[i].data = huge
				}
			}
			return e
		}), "index.json is 4194305 bytes, over the 4194304-byte limit"},
		{"bad-index", with(func(e []tarEntry) []tarEntry {
			for i := range e {
				if e[i].name == "index.json" {
					e[i].data = []byte(`{"schemaVersion":2,"manifests":[{"digest":"sha256:nothex","size":1}]}`)
				}
			}
			return e
		}), "manifests[0]"},
		{"truncated", full[:len(full)/2], "truncated"},
		{"truncated-gzip", func() []byte { g := gz(full); return g[:len(g)-20] }(), "truncated"},
		{"empty", nil, "empty"},
		{"not-tar", []byte(strings.Repeat("this is not a tarball\n", 100)), "not a tar archive"},
		{"no-layout", writeTar(t, []tarEntry{{name: "hello.txt", data: []byte("hi")}}), "neither an OCI image layout"},
		{"diff-id", func() []byte {
			e := append([]tarEntry(nil), docker...)
			for i := range e {
				if e[i].name == "bbbb/layer.tar" {
					e[i].data = writeTar(t, []tarEntry{{name: "other", data: []byte("not the app layer")}})
				}
			}
			return writeTar(t, e)
		}(), "bbbb/layer.tar has diff ID"},
		{"docker-missing-layer", func() []byte {
			var e []tarEntry
			for _, x := range docker {
				if x.name != "bbbb/layer.tar" {
					e = append(e, x)
				}
			}
			return writeTar(t, e)
		}(), `names layer "bbbb/layer.tar", which the archive lacks`},
		{"docker-layer-traversal", func() []byte {
			e := append([]tarEntry(nil), docker...)
			for i := range e {
				if e[i].name == "manifest.json" {
					e[i].data = bytes.Replace(e[i].data, []byte("bbbb/layer.tar"), []byte("../bbbb/layer.tar"), 1)
				}
			}
			return writeTar(t, e)
		}(), "climbs out of the archive"},
		{"docker-symlink-loop", func() []byte {
			e := append([]tarEntry(nil), docker...)
			for i := range e {
				if e[i].name == "cccc/layer.tar" {
					e[i].link = "layer.tar"
				}
			}
			return writeTar(t, e)
		}(), `names layer "cccc/layer.tar", which the archive lacks`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			_, err := s.Import(bytes.NewReader(tt.data), ImportOptions{})
			if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want EINVALID with %q", err, tt.want)
			}
			assertEmpty(t, s)
		})
	}
}

// Tarballs in the air-gap directory are imported once each, a bad one is
// skipped, and a replaced file is imported again.
func TestImportDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.tar"), ociArchive(t, "edge.local/a:1", "a"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.tar.gz"), gz(dockerSave(t, []string{"edge.local/b:1"}, true)), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.tar"), []byte("garbage"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image"), 0o644)
	s := openStore(t)
	log := slog.New(slog.DiscardHandler)
	got := s.ImportDir(context.Background(), dir, log)
	if len(got) != 3 {
		t.Fatalf("imported %+v", got)
	}
	if _, err := s.Tag("edge.local/b", "1"); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenStore(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := s2.ImportDir(context.Background(), dir, log); len(got) != 0 {
		t.Fatalf("imported again after a restart: %+v", got)
	}
	if rec := s2.idx.Imported["bad.tar"]; rec == nil || !strings.Contains(rec.Error, "truncated") {
		t.Fatalf("bad.tar record %+v", rec)
	}
	// Replaced: imported again.
	os.WriteFile(filepath.Join(dir, "a.tar"), ociArchive(t, "edge.local/a:2", "a2"), 0o644)
	os.Chtimes(filepath.Join(dir, "a.tar"), time.Now(), time.Now().Add(time.Hour))
	if got := s2.ImportDir(context.Background(), dir, log); len(got) != 1 || got[0].Ref() != "edge.local/a:2" {
		t.Fatalf("replaced file: %+v", got)
	}
	if s2.ImportDir(context.Background(), filepath.Join(dir, "none"), log) != nil {
		t.Fatal("a missing directory imported something")
	}
}

// WriteDockerArchive's output imports, and its layer is an uncompressed
// docker layer.
func TestImport_WriteDockerArchive(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteDockerArchive(&buf, testSpec("edge.local/d:3", "d")); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	res, err := s.Import(&buf, ImportOptions{})
	if err != nil || res.Images[0].Ref() != "edge.local/d:3" {
		t.Fatalf("%+v %v", res, err)
	}
	if p := serve(t, s, "edge.local/d", "3"); p.Layers[0].MediaType != MediaTypeDockerLayer {
		t.Fatalf("%+v", p)
	}
}

// A multi-platform OCI layout (index.json -> an index of two platform
// manifests) imports whole; one platform missing is refused by name.
func TestImport_OCIIndex(t *testing.T) {
	blobs := map[string][]byte{}
	var platforms []ocispec.Descriptor
	for _, arch := range []string{"amd64", "arm64"} {
		spec := testSpec("edge.local/multi:1", arch)
		spec.Architecture = arch
		var buf bytes.Buffer
		if err := WriteOCIArchive(&buf, spec); err != nil {
			t.Fatal(err)
		}
		for _, e := range readTar(t, buf.Bytes()) {
			if strings.HasPrefix(e.name, "blobs/") {
				blobs[e.name] = e.data
			} else if e.name == "index.json" {
				var idx ocispec.Index
				json.Unmarshal(e.data, &idx)
				d := idx.Manifests[0]
				d.Annotations = nil
				platforms = append(platforms, d)
			}
		}
	}
	inner, _ := json.Marshal(ocispec.Index{Versioned: specsVersioned(), MediaType: ocispec.MediaTypeImageIndex, Manifests: platforms})
	innerDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(inner), Size: int64(len(inner)),
		Annotations: map[string]string{ocispec.AnnotationRefName: "edge.local/multi:1"}}
	blobs[blobPath(innerDesc.Digest)] = inner
	top, _ := json.Marshal(ocispec.Index{Versioned: specsVersioned(), MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{innerDesc}})
	build := func(skip string) []byte {
		entries := []tarEntry{{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)}, {name: "index.json", data: top}}
		for n, b := range blobs {
			if n != skip {
				entries = append(entries, tarEntry{name: n, data: b})
			}
		}
		return writeTar(t, entries)
	}
	s := openStore(t)
	res, err := s.Import(bytes.NewReader(build("")), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Images[0].Ref() != "edge.local/multi:1" || res.Images[0].MediaType != ocispec.MediaTypeImageIndex || res.Blobs != 7 {
		t.Fatalf("%+v", res)
	}
	serve(t, s, "edge.local/multi", "1")
	s = openStore(t)
	if _, err := s.Import(bytes.NewReader(build(blobPath(platforms[1].Digest))), ImportOptions{}); err == nil || !strings.Contains(err.Error(), "manifests[1] (linux/arm64) "+platforms[1].Digest.String()+" is not in the archive") {
		t.Fatalf("a platform missing: %v", err)
	}
	assertEmpty(t, s)
}

func specsVersioned() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }

// WriteOCIIndexArchive's multi-platform image imports as one index whose
// manifests carry their platforms (arm/v7 with its variant), each with
// its own layer.
func TestImport_WriteOCIIndexArchive(t *testing.T) {
	amd, arm64, armv7 := testSpec("", "x86 busybox"), testSpec("", "arm64 busybox"), testSpec("", "armv7 busybox")
	arm64.Architecture = "arm64"
	armv7.Architecture, armv7.Variant = "arm", "v7"
	var buf bytes.Buffer
	if err := WriteOCIIndexArchive(&buf, "edge.local/multi:2", amd, arm64, armv7); err != nil {
		t.Fatal(err)
	}
	archive := buf.Bytes()
	s := openStore(t)
	res, err := s.Import(bytes.NewReader(archive), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// 3 configs, 3 layers, 3 manifests, the index.
	if len(res.Images) != 1 || res.Images[0].Ref() != "edge.local/multi:2" || res.Images[0].MediaType != ocispec.MediaTypeImageIndex || res.Blobs != 10 {
		t.Fatalf("%+v", res)
	}
	serve(t, s, "edge.local/multi", "2") // the index and the first platform's blobs
	blobs := map[string][]byte{}
	for _, e := range readTar(t, archive) {
		blobs[e.name] = e.data
	}
	var top ocispec.Index
	json.Unmarshal(blobs["index.json"], &top)
	if len(top.Manifests) != 1 || top.Manifests[0].Annotations["io.containerd.image.name"] != "edge.local/multi:2" {
		t.Fatalf("index.json %+v", top)
	}
	p, err := ParseManifest(top.Manifests[0].MediaType, blobs[blobPath(top.Manifests[0].Digest)])
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range p.Manifests {
		got = append(got, d.Platform.OS+"/"+d.Platform.Architecture+"/"+d.Platform.Variant)
	}
	if strings.Join(got, " ") != "linux/amd64/ linux/arm64/ linux/arm/v7" {
		t.Fatalf("platforms %v", got)
	}
	if d, ok := p.SelectPlatform("linux", "arm", "v7"); !ok || d.Digest != p.Manifests[2].Digest {
		t.Fatalf("arm/v7: %v %v", d, ok)
	}
	if err := WriteOCIIndexArchive(io.Discard, "x", amd, testSpec("", "again")); err == nil {
		t.Fatal("two amd64 manifests in one index: no error")
	}
}
