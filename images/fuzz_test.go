package images

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgeorch/edge/core"
)

// FuzzImport feeds arbitrary bytes to the archive reader: it must refuse
// them with EINVALID (or import them whole), never panic, and never leave
// staging files, blobs or tags of a refused archive behind. Seeds: the
// archives in testdata/archives (see TestWriteSeedArchives) and a few
// built here.
func FuzzImport(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/archives/*")
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add(ociArchive(f, "edge.local/f:1", "f"))
	f.Add(gz(dockerSave(f, []string{"f:1"}, true)))
	f.Add(writeTar(f, []tarEntry{{name: "index.json", data: []byte(`{"schemaVersion":2,"manifests":[]}`)}, {name: "oci-layout", data: []byte(`{}`)}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := OpenStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		s.noSync = true
		res, err := s.Import(bytes.NewReader(data), ImportOptions{})
		if ents, _ := os.ReadDir(s.ingestDir()); len(ents) != 0 {
			t.Fatalf("ingest holds %d entries", len(ents))
		}
		if err != nil {
			if core.ErrorCode(err) != core.EINVALID {
				t.Fatalf("not EINVALID: %v", err)
			}
			assertEmpty(t, s)
			return
		}
		// Whatever was imported can be served whole.
		for _, img := range res.Images {
			blobs, _ := s.closure(img.Digest)
			for _, b := range blobs {
				if _, err := s.Stat(b); err != nil {
					t.Fatalf("%s: blob %s: %v", img.Ref(), b, err)
				}
			}
		}
	})
}

// TestWriteSeedArchives regenerates testdata/archives with
// EDGE_WRITE_SEEDS=1.
func TestWriteSeedArchives(t *testing.T) {
	if os.Getenv("EDGE_WRITE_SEEDS") == "" {
		t.Skip("set EDGE_WRITE_SEEDS=1 to rewrite testdata/archives")
	}
	os.MkdirAll("testdata/archives", 0o755)
	for name, b := range map[string][]byte{
		"oci.tar":            ociArchive(t, "edge.local/seed:1", "seed"),
		"docker-save.tar":    dockerSave(t, []string{"seed:1"}, false),
		"docker-save.tar.gz": gz(dockerSave(t, []string{"seed:1"}, true)),
	} {
		if err := os.WriteFile(filepath.Join("testdata/archives", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
