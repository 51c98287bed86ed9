package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestWriteOCIArchive(t *testing.T) {
	spec := &ImageSpec{Name: "edge.local/t:v1", Architecture: "arm64", Cmd: []string{"/bin/sh"},
		Files: []File{{Path: "/bin", Dir: true, Mode: 0o755}, {Path: "/bin/busybox", Mode: 0o755, Data: []byte("fake")}, {Path: "/bin/sh", Link: "busybox"}}}
	var buf bytes.Buffer
	if err := WriteOCIArchive(&buf, spec); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	blob := func(d string) []byte {
		b, ok := files["blobs/sha256/"+d[len("sha256:"):]]
		if !ok {
			t.Fatalf("blob %s missing", d)
		}
		sum := sha256.Sum256(b)
		if "sha256:"+hex.EncodeToString(sum[:]) != d {
			t.Fatalf("blob %s has the wrong digest", d)
		}
		return b
	}
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index: %v", err)
	}
	md := idx.Manifests[0]
	if md.Annotations["io.containerd.image.name"] != "edge.local/t:v1" || md.Annotations[ocispec.AnnotationRefName] != "v1" || md.Platform.Architecture != "arm64" {
		t.Fatalf("manifest descriptor %+v", md)
	}
	var m ocispec.Manifest
	json.Unmarshal(blob(md.Digest.String()), &m)
	var cfg ocispec.Image
	json.Unmarshal(blob(m.Config.Digest.String()), &cfg)
	layer := blob(m.Layers[0].Digest.String())
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	sum := sha256.Sum256(raw)
	if cfg.RootFS.DiffIDs[0].String() != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatal("diff ID does not match the uncompressed layer")
	}
	lr := tar.NewReader(bytes.NewReader(raw))
	names := map[string]string{}
	for {
		h, err := lr.Next()
		if err != nil {
			break
		}
		names[h.Name] = h.Linkname
	}
	if _, ok := names["bin/busybox"]; !ok || names["bin/sh"] != "busybox" {
		t.Fatalf("layer entries %v", names)
	}
	// Reproducible: the same spec gives the same bytes.
	var again bytes.Buffer
	WriteOCIArchive(&again, spec)
	var first bytes.Buffer
	WriteOCIArchive(&first, spec)
	if !bytes.Equal(first.Bytes(), again.Bytes()) {
		t.Fatal("archive is not reproducible")
	}
}
