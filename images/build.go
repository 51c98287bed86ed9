package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// File is one file placed in an image layer.
type File struct {
	Path string // absolute path inside the image
	Mode int64
	Data []byte
	Link string // symlink target, if a symlink
	Dir  bool
}

// ImageSpec describes a single-layer image.
type ImageSpec struct {
	Name         string // e.g. edge.local/demo:latest
	Architecture string // GOARCH naming: amd64, arm64, arm
	Variant      string // v7 for arm
	Files        []File
	Cmd          []string
	Env          []string
}

// BusyboxApplets are the commands linked to busybox in the demo image.
var BusyboxApplets = []string{"sh", "ash", "cat", "echo", "env", "false", "grep", "head", "hostname", "httpd", "id",
	"kill", "ls", "mkdir", "nc", "ps", "pwd", "rm", "seq", "sleep", "tail", "test", "top", "touch", "true", "uname", "wc", "wget", "date", "dd", "yes", "nslookup", "timeout"}

// BusyboxImage returns the spec of a tiny image made of a static busybox.
func BusyboxImage(name, busyboxPath, arch string) (*ImageSpec, error) {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, fmt.Errorf("read busybox (apt-get install busybox-static): %w", err)
	}
	spec := &ImageSpec{Name: name, Architecture: arch, Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}}
	if arch == "arm" {
		spec.Variant = "v7"
	}
	spec.Files = append(spec.Files,
		File{Path: "/bin", Dir: true, Mode: 0o755},
		File{Path: "/tmp", Dir: true, Mode: 0o1777},
		File{Path: "/etc", Dir: true, Mode: 0o755},
		File{Path: "/www", Dir: true, Mode: 0o755},
		File{Path: "/bin/busybox", Mode: 0o755, Data: bb},
		File{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")},
		File{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		File{Path: "/www/index.html", Mode: 0o644, Data: []byte("hello from the edge\n")},
	)
	for _, a := range BusyboxApplets {
		spec.Files = append(spec.Files, File{Path: "/bin/" + a, Link: "busybox"})
	}
	return spec, nil
}

// WriteOCIArchive writes spec as an OCI image layout tar (what `ctr images
// import` and containerd's Import read), with the image name in the
// io.containerd.image.name annotation.
func WriteOCIArchive(w io.Writer, spec *ImageSpec) error {
	m, err := buildManifest(spec)
	if err != nil {
		return err
	}
	top := m.desc
	top.Annotations = nameAnnotations(spec.Name)
	return writeLayout(w, top, m.blobs)
}

// WriteOCIIndexArchive writes a multi-platform image: one OCI image index
// named name, listing one manifest per spec (each spec's Architecture and
// Variant is its platform; their names are not used). A client pulling
// name gets the manifest of its own platform, as from a multi-arch image
// on Docker Hub.
func WriteOCIIndexArchive(w io.Writer, name string, specs ...*ImageSpec) error {
	if len(specs) == 0 {
		return fmt.Errorf("images: an index of no image")
	}
	var descs []ocispec.Descriptor
	var blobs []blob
	seen := map[string]bool{}
	for _, spec := range specs {
		p := spec.Architecture + "/" + spec.Variant
		if seen[p] {
			return fmt.Errorf("images: platform linux/%s listed twice", strings.TrimSuffix(p, "/"))
		}
		seen[p] = true
		m, err := buildManifest(spec)
		if err != nil {
			return err
		}
		descs = append(descs, m.desc)
		blobs = append(blobs, m.blobs...)
	}
	index := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: descs}
	index.SchemaVersion = 2
	idxJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	top := descriptor(ocispec.MediaTypeImageIndex, idxJSON)
	top.Annotations = nameAnnotations(name)
	return writeLayout(w, top, append(blobs, blob{top.Digest, idxJSON}))
}

// archiveCreated is every archive's timestamp: the same spec gives the
// same bytes.
var archiveCreated = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type blob struct {
	digest digest.Digest
	data   []byte
}

// builtManifest is one platform's image: its manifest's descriptor (with
// the platform) and its blobs (config, layer, manifest).
type builtManifest struct {
	desc  ocispec.Descriptor
	blobs []blob
}

func buildManifest(spec *ImageSpec) (*builtManifest, error) {
	layer, diffID, err := buildLayer(spec.Files)
	if err != nil {
		return nil, err
	}
	created := archiveCreated
	platform := ocispec.Platform{Architecture: spec.Architecture, OS: "linux", Variant: spec.Variant}
	cfg := ocispec.Image{
		Created:  &created,
		Platform: platform,
		Config:   ocispec.ImageConfig{Cmd: spec.Cmd, Env: spec.Env, WorkingDir: "/"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgDesc := descriptor(ocispec.MediaTypeImageConfig, cfgJSON)
	layerDesc := descriptor(ocispec.MediaTypeImageLayerGzip, layer)
	manifest := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: []ocispec.Descriptor{layerDesc}}
	manifest.SchemaVersion = 2
	manJSON, err := json.Marshal(manifest)
	if err != nil {
		return nil, err
	}
	manDesc := descriptor(ocispec.MediaTypeImageManifest, manJSON)
	manDesc.Platform = &platform
	return &builtManifest{desc: manDesc, blobs: []blob{{cfgDesc.Digest, cfgJSON}, {layerDesc.Digest, layer}, {manDesc.Digest, manJSON}}}, nil
}

func nameAnnotations(name string) map[string]string {
	return map[string]string{
		"io.containerd.image.name": name,
		ocispec.AnnotationRefName:  refName(name),
	}
}

// writeLayout writes an OCI image layout whose index.json lists top.
func writeLayout(w io.Writer, top ocispec.Descriptor, blobs []blob) error {
	index := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{top}}
	index.SchemaVersion = 2
	idxJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: archiveCreated, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := put(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := put("index.json", idxJSON); err != nil {
		return err
	}
	written := map[digest.Digest]bool{}
	for _, b := range blobs {
		if written[b.digest] {
			continue // shared by two platforms (a layer of no binary)
		}
		written[b.digest] = true
		if err := put(blobPath(b.digest), b.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func refName(name string) string {
	for i := len(name) - 1; i >= 0 && name[i] != '/'; i-- {
		if name[i] == ':' {
			return name[i+1:]
		}
	}
	return "latest"
}

func blobPath(d digest.Digest) string { return "blobs/" + d.Algorithm().String() + "/" + d.Encoded() }

func descriptor(mediaType string, data []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
}

// WriteDockerArchive writes spec as `docker save` does (its classic
// format: manifest.json, repositories, <config digest>.json and
// <layer id>/layer.tar, uncompressed), named spec.Name.
func WriteDockerArchive(w io.Writer, spec *ImageSpec) error {
	raw, diffID, err := buildRawLayer(spec.Files)
	if err != nil {
		return err
	}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{Architecture: spec.Architecture, OS: "linux", Variant: spec.Variant},
		Config:   ocispec.ImageConfig{Cmd: spec.Cmd, Env: spec.Env, WorkingDir: "/"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgName := digest.FromBytes(cfgJSON).Encoded() + ".json"
	layerID := diffID.Encoded() // docker's layer IDs are another hash; any name does
	man, err := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{spec.Name}, "Layers": []string{layerID + "/layer.tar"}}})
	if err != nil {
		return err
	}
	repo, tag := spec.Name, "latest"
	if i := strings.LastIndexByte(spec.Name, ':'); i > strings.LastIndexByte(spec.Name, '/') {
		repo, tag = spec.Name[:i], spec.Name[i+1:]
	}
	repos, err := json.Marshal(map[string]map[string]string{repo: {tag: layerID}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, e := range []struct {
		name string
		data []byte
	}{
		{layerID + "/", nil},
		{layerID + "/VERSION", []byte("1.0")},
		{layerID + "/layer.tar", raw},
		{cfgName, cfgJSON},
		{"manifest.json", man},
		{"repositories", repos},
	} {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: created, Typeflag: tar.TypeReg}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// buildLayer returns the gzipped layer tar and the digest of the
// uncompressed tar (the diff ID).
func buildLayer(files []File) ([]byte, digest.Digest, error) {
	raw, diffID, err := buildRawLayer(files)
	if err != nil {
		return nil, "", err
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if _, err := zw.Write(raw); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gz.Bytes(), diffID, nil
}

// buildRawLayer returns the uncompressed layer tar and its digest.
func buildRawLayer(files []File) ([]byte, digest.Digest, error) {
	files = append([]File(nil), files...)
	sort.SliceStable(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, f := range files {
		name := f.Path[1:]
		h := &tar.Header{Name: name, Mode: f.Mode, ModTime: mtime, Uname: "root", Gname: "root"}
		switch {
		case f.Dir:
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Link, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, "", err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, "", err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(raw.Bytes())
	return raw.Bytes(), digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(sum[:])), nil
}
