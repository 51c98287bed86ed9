package images

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeorch/edge/core"
)

// Importing image archives: an OCI image layout (a directory sent as a tar,
// or a tar of one) or a `docker save` archive (manifest.json and
// repositories; newer Docker writes an OCI layout with a manifest.json
// beside it), gzip-compressed or not.
//
// The archive is read once, as a stream: every file is hashed into a
// staging directory under ingest/ as it arrives (layers are never in
// memory). Only when the whole archive has been read and every manifest,
// config and layer it names is present with the digest and size its
// manifest says are the blobs moved into the store and the tags written,
// all in one index write, so a refused or cut-off archive leaves nothing
// behind. Imported tags are pinned: the garbage collector never takes
// them.

// Bounds on what one archive may hold.
const (
	// MaxArchiveEntries bounds the files, directories and links of an
	// archive.
	MaxArchiveEntries = 100000
	// maxLinkHops bounds chains of links inside an archive.
	maxLinkHops = 16
	// maxIndexDepth bounds indexes nested in indexes.
	maxIndexDepth = 4
	// maxLayers bounds the layers of one image (Docker's own limit is 127).
	maxLayers = 1000
	// maxManifests bounds the manifests of one image (an index's
	// platforms and attestations).
	maxManifests = 1000
	// maxImages bounds the images of one archive.
	maxImages = 1000
)

// Layer and config media types of Docker's manifests.
const (
	MediaTypeDockerConfig    = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer     = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// ImportOptions are the choices of one import.
type ImportOptions struct {
	// Name is the reference (REPO[:TAG]) for an archive whose image has no
	// name of its own, or that should be stored under another one.
	Name string
}

// ImportedImage is one image an import stored.
type ImportedImage struct {
	Repo      string        `json:"repo"`
	Tag       string        `json:"tag"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	// Size is the total of the image's blobs (manifests, config, layers).
	Size int64 `json:"size"`
}

// Ref is repo:tag.
func (i ImportedImage) Ref() string { return i.Repo + ":" + i.Tag }

// ImportResult says what an import stored.
type ImportResult struct {
	Images []ImportedImage `json:"images"`
	// Blobs is how many blobs were new to the store.
	Blobs int `json:"blobs"`
	// Bytes is how many bytes of archive were read (after gunzip).
	Bytes int64 `json:"bytes"`
}

// staged is one file of the archive, hashed into the staging directory.
type staged struct {
	d    digest.Digest
	size int64
}

// archive is what reading a tar stream left in the staging directory.
type archive struct {
	dir    string
	noSync bool              // tests that run thousands of imports
	files  map[string]staged // cleaned path -> content
	links  map[string]string // cleaned path -> cleaned path it points at
}

func invalidf(format string, args ...any) error {
	return core.Errorf(core.EINVALID, "image archive: "+format, args...)
}

// Import reads an image archive from r and stores its images, pinned. Bad
// archives are EINVALID errors that name the problem; nothing of them is
// left in the store.
func (s *Store) Import(r io.Reader, opt ImportOptions) (*ImportResult, error) {
	var name reference.Named
	if opt.Name != "" {
		n, err := parseImageName(opt.Name)
		if err != nil {
			return nil, core.Errorf(core.EINVALID, "--name: %v", err)
		}
		name = n
	}
	dir, err := os.MkdirTemp(s.ingestDir(), "import-*")
	if err != nil {
		return nil, fmt.Errorf("images: import: %w", err)
	}
	defer os.RemoveAll(dir)
	a := &archive{dir: dir, files: map[string]staged{}, links: map[string]string{}, noSync: s.noSync}
	n, err := a.read(r)
	if err != nil {
		return nil, err
	}
	var imgs []pendingImage
	switch {
	case a.has("index.json") && a.has(ocispec.ImageLayoutFile):
		imgs, err = a.ociImages(name)
	case a.has("manifest.json"):
		imgs, err = a.dockerImages(name)
	default:
		err = invalidf("neither an OCI image layout (oci-layout and index.json) nor a docker save archive (manifest.json): found %s", a.sample())
	}
	if err != nil {
		return nil, err
	}
	res, err := s.commitImport(a, imgs)
	if err != nil {
		return nil, err
	}
	res.Bytes = n
	return res, nil
}

// pendingImage is an image checked and ready to be committed.
type pendingImage struct {
	repo, tag string
	top       digest.Digest
	mediaType string
	manifests map[digest.Digest]ManifestInfo // top and nested, all to be recorded under repo
	blobs     map[digest.Digest]int64        // every blob of the image, manifests included
}

// read stages every file of the tar stream r (gzipped or not) and returns
// the number of tar bytes read.
func (a *archive) read(r io.Reader) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return 0, invalidf("gzip header: %v", err)
		}
		defer zr.Close()
		src = zr
	}
	cr := &countReader{r: src}
	tr := tar.NewReader(cr)
	entries := 0
	var pad int64 // padding after the previous entry's data
	for {
		before := cr.n
		h, err := tr.Next()
		if err == io.EOF {
			// A tar ends with zero blocks; without them the data stopped
			// between two files.
			if entries > 0 && cr.n-before-pad < 512 {
				return 0, invalidf("truncated: the data ends after %d bytes, between two files, with no end-of-archive marker", cr.n)
			}
			break
		}
		pad = 0
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return 0, invalidf("truncated: the data ends in the middle of a file header (after %d bytes)", cr.n)
			}
			if entries == 0 {
				return 0, invalidf("not a tar archive (nor a gzipped one): %v", err)
			}
			return 0, invalidf("damaged after %d bytes: %v", cr.n, err)
		}
		if entries++; entries > MaxArchiveEntries {
			return 0, invalidf("more than %d entries", MaxArchiveEntries)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := cleanEntry(h.Name)
		if err != nil {
			return 0, err
		}
		if name == "" {
			continue // the root directory itself
		}
		if _, dup := a.files[name]; dup {
			return 0, invalidf("entry %q appears twice", h.Name)
		}
		if _, dup := a.links[name]; dup {
			return 0, invalidf("entry %q appears twice", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
		case tar.TypeReg, tar.TypeRegA:
			for k := range h.PAXRecords {
				if strings.HasPrefix(k, "GNU.sparse.") {
					// Its holes would be read as zeros: a few bytes of archive
					// could claim terabytes.
					return 0, invalidf("%s is a sparse file: image archives hold none", name)
				}
			}
			if isMetadata(name) && h.Size > MaxManifestSize {
				return 0, invalidf("%s is %d bytes, over the %d-byte limit for manifests", name, h.Size, MaxManifestSize)
			}
			st, err := a.stage(&sparseGuard{r: tr, cr: cr, start: cr.n}, h.Size)
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					return 0, invalidf("truncated: %s should have %d bytes, the data ends before", name, h.Size)
				}
				return 0, err
			}
			pad = (512 - h.Size%512) % 512
			if d, ok := blobName(name); ok && d != st.d {
				return 0, invalidf("%s holds content whose digest is %s: the archive is corrupt", name, st.d)
			}
			a.files[name] = st
		case tar.TypeSymlink:
			if path.IsAbs(h.Linkname) {
				return 0, invalidf("symlink %s points at the absolute path %q, out of the archive", name, h.Linkname)
			}
			target := path.Join(path.Dir(name), h.Linkname)
			if target == ".." || strings.HasPrefix(target, "../") || target == "." {
				return 0, invalidf("symlink %s points at %q, out of the archive", name, h.Linkname)
			}
			a.links[name] = target
		case tar.TypeLink:
			target, err := cleanEntry(h.Linkname)
			if err != nil || target == "" {
				return 0, invalidf("hard link %s points at %q, out of the archive", name, h.Linkname)
			}
			a.links[name] = target
		default:
			return 0, invalidf("entry %s is of type %q: an image archive holds only files, directories and links", name, string(h.Typeflag))
		}
	}
	if entries == 0 {
		return 0, invalidf("empty (no files at all: truncated, or not an image archive)")
	}
	// The rest of the stream: a gzip trailer whose checksum must match, and
	// the padding some writers add.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return 0, invalidf("truncated or damaged after the last file: %v", err)
	}
	return cr.n, nil
}

// sparseGuard refuses a file that yields more bytes than the archive
// holds for it: a sparse file, whose holes read as zeros (a few bytes of
// archive could claim terabytes).
type sparseGuard struct {
	r     io.Reader
	cr    *countReader
	start int64
	n     int64
}

func (g *sparseGuard) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	g.n += int64(n)
	if g.n > g.cr.n-g.start {
		return n, invalidf("a sparse file: image archives hold none")
	}
	return n, err
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// cleanEntry returns an entry's path relative to the archive's root, ""
// for the root itself; a path that is absolute or climbs out is refused.
func cleanEntry(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", invalidf("entry %q has a NUL in its name", name)
	}
	if path.IsAbs(name) {
		return "", invalidf("entry %q has an absolute path", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", invalidf("entry %q climbs out of the archive (..)", name)
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// isMetadata reports whether name is one of the archive's small JSON files.
func isMetadata(name string) bool {
	switch name {
	case "index.json", "manifest.json", "repositories", ocispec.ImageLayoutFile:
		return true
	}
	return false
}

// blobName returns the digest a path under blobs/ names.
func blobName(name string) (digest.Digest, bool) {
	rest, ok := strings.CutPrefix(name, "blobs/sha256/")
	if !ok || len(rest) != 64 {
		return "", false
	}
	if _, err := hex.DecodeString(rest); err != nil {
		return "", false
	}
	return digest.NewDigestFromEncoded(digest.SHA256, rest), true
}

// stage copies size bytes of r into the staging directory, named by their
// digest.
func (a *archive) stage(r io.Reader, size int64) (staged, error) {
	f, err := os.CreateTemp(a.dir, "part-*")
	if err != nil {
		return staged{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(f, h), io.LimitReader(r, size), make([]byte, 256<<10))
	if err != nil {
		return staged{}, err
	}
	if n != size {
		return staged{}, io.ErrUnexpectedEOF
	}
	if !a.noSync {
		if err := f.Sync(); err != nil {
			return staged{}, err
		}
	}
	if err := f.Close(); err != nil {
		return staged{}, err
	}
	d := digest.NewDigest(digest.SHA256, h)
	if err := os.Rename(f.Name(), a.path(d)); err != nil {
		return staged{}, err
	}
	return staged{d: d, size: n}, nil
}

func (a *archive) path(d digest.Digest) string { return filepath.Join(a.dir, d.Encoded()) }

// resolve follows links to a file of the archive.
func (a *archive) resolve(name string) (staged, bool) {
	for range maxLinkHops {
		if st, ok := a.files[name]; ok {
			return st, true
		}
		t, ok := a.links[name]
		if !ok {
			return staged{}, false
		}
		name = t
	}
	return staged{}, false
}

func (a *archive) has(name string) bool { _, ok := a.resolve(name); return ok }

// sample names a few of the archive's files, for an error message.
func (a *archive) sample() string {
	var names []string
	for n := range a.files {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > 5 {
		names = append(names[:5], "...")
	}
	return strings.Join(names, ", ")
}

// readSmall reads a staged file of at most MaxManifestSize bytes.
func (a *archive) readSmall(what string, st staged) ([]byte, error) {
	if st.size > MaxManifestSize {
		return nil, invalidf("%s is %d bytes, over the %d-byte limit for manifests", what, st.size, MaxManifestSize)
	}
	return os.ReadFile(a.path(st.d))
}

// readFile reads a small file of the archive by name.
func (a *archive) readFile(name string) ([]byte, error) {
	st, ok := a.resolve(name)
	if !ok {
		return nil, invalidf("%s is missing", name)
	}
	return a.readSmall(name, st)
}

// blob returns the staged content of blob d (under blobs/ in an OCI layout).
func (a *archive) blob(d digest.Digest, size int64, what string) (staged, error) {
	if err := CheckDigest(d); err != nil {
		return staged{}, invalidf("%s: %v", what, core.ErrorMessage(err))
	}
	st, ok := a.resolve(blobPath(d))
	if !ok {
		return staged{}, invalidf("%s %s is not in the archive", what, d)
	}
	if st.d != d {
		return staged{}, invalidf("%s %s: the archive's file has digest %s", what, d, st.d)
	}
	if size >= 0 && st.size != size {
		return staged{}, invalidf("%s %s is %d bytes in the archive, its manifest says %d", what, d, st.size, size)
	}
	return st, nil
}

// parseImageName parses a REPO[:TAG] reference (docker's short names
// allowed; no digest) and adds the latest tag if it has none.
func parseImageName(s string) (reference.Named, error) {
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not an image reference: %v", s, err)
	}
	if _, ok := n.(reference.Digested); ok {
		return nil, fmt.Errorf("%q has a digest: name an image by repository and tag", s)
	}
	return n, nil
}

// repoTag splits a parsed name into the store's repository key and tag
// (latest if it has none, or def if given).
func repoTag(n reference.Named, def string) (string, string) {
	tag := "latest"
	if def != "" {
		tag = def
	}
	if t, ok := n.(reference.Tagged); ok {
		tag = t.Tag()
	}
	return reference.Domain(n) + "/" + reference.Path(n), tag
}

// ociImages checks the images of an OCI layout and names them.
func (a *archive) ociImages(name reference.Named) ([]pendingImage, error) {
	b, err := a.readFile("index.json")
	if err != nil {
		return nil, err
	}
	var idx struct {
		SchemaVersion int                  `json:"schemaVersion"`
		Manifests     []ocispec.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, invalidf("index.json is not valid JSON: %v", err)
	}
	if idx.SchemaVersion != 2 {
		return nil, invalidf("index.json has schemaVersion %d, want 2", idx.SchemaVersion)
	}
	if len(idx.Manifests) == 0 {
		return nil, invalidf("index.json lists no image")
	}
	if len(idx.Manifests) > maxImages {
		return nil, invalidf("index.json lists %d images (at most %d in one archive)", len(idx.Manifests), maxImages)
	}
	if name != nil && len(idx.Manifests) > 1 {
		if _, tagged := name.(reference.Tagged); tagged {
			return nil, invalidf("--name %s names one image, the layout holds %d: give a repository without a tag (each image keeps its org.opencontainers.image.ref.name tag)", reference.FamiliarString(name), len(idx.Manifests))
		}
	}
	var out []pendingImage
	for i, desc := range idx.Manifests {
		what := fmt.Sprintf("index.json manifests[%d]", i)
		refName := desc.Annotations[ocispec.AnnotationRefName]
		var repo, tag string
		switch full := desc.Annotations["io.containerd.image.name"]; {
		case name != nil:
			def := ""
			if reference.TagRegexp.MatchString(refName) && len(refName) <= 128 {
				def = refName
			}
			repo, tag = repoTag(name, def)
		case full != "":
			n, err := parseImageName(full)
			if err != nil {
				return nil, invalidf("%s: io.containerd.image.name: %v", what, err)
			}
			repo, tag = repoTag(n, "")
		case strings.ContainsAny(refName, "/:"):
			n, err := parseImageName(refName)
			if err != nil {
				return nil, invalidf("%s: %s: %v", what, ocispec.AnnotationRefName, err)
			}
			repo, tag = repoTag(n, "")
		case refName != "":
			return nil, invalidf("%s is named only by the tag %q: pass --name REPOSITORY[:TAG]", what, refName)
		default:
			return nil, invalidf("%s has no name (no %s annotation): pass --name REPOSITORY[:TAG]", what, ocispec.AnnotationRefName)
		}
		img := pendingImage{repo: repo, tag: tag, top: desc.Digest, manifests: map[digest.Digest]ManifestInfo{}, blobs: map[digest.Digest]int64{}}
		if err := a.walk(&img, desc, what, 0); err != nil {
			return nil, err
		}
		img.mediaType = img.manifests[desc.Digest].MediaType
		out = append(out, img)
	}
	return out, nil
}

// walk checks a manifest (or index, and what it lists) and every blob it
// names.
func (a *archive) walk(img *pendingImage, desc ocispec.Descriptor, what string, depth int) error {
	if depth > maxIndexDepth {
		return invalidf("%s: indexes nest deeper than %d", what, maxIndexDepth)
	}
	if _, done := img.manifests[desc.Digest]; done {
		return nil // listed twice (a fuzzer's index of itself a thousand times, nested)
	}
	if len(img.manifests) >= maxManifests {
		return invalidf("%s: more than %d manifests in one image", what, maxManifests)
	}
	st, err := a.blob(desc.Digest, desc.Size, what)
	if err != nil {
		return err
	}
	data, err := a.readSmall(what+" "+desc.Digest.String(), st)
	if err != nil {
		return err
	}
	p, err := ParseManifest(desc.MediaType, data)
	if err != nil {
		return invalidf("%s %s: %v", what, desc.Digest, core.ErrorMessage(err))
	}
	img.manifests[desc.Digest] = ManifestInfo{MediaType: p.MediaType, Size: st.size}
	img.blobs[desc.Digest] = st.size
	if IsIndex(p.MediaType) {
		for i, child := range p.Manifests {
			cw := fmt.Sprintf("%s > manifests[%d]", what, i)
			if child.Platform != nil {
				cw += " (" + child.Platform.OS + "/" + child.Platform.Architecture + ")"
			}
			if err := a.walk(img, child, cw, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if len(p.Layers) > maxLayers {
		return invalidf("%s %s has %d layers (at most %d)", what, desc.Digest, len(p.Layers), maxLayers)
	}
	for i, b := range p.Blobs() {
		bw := what + " config"
		if i > 0 {
			bw = fmt.Sprintf("%s layer %d", what, i-1)
		}
		st, err := a.blob(b.Digest, b.Size, bw)
		if err != nil {
			return err
		}
		img.blobs[b.Digest] = st.size
	}
	return nil
}

// dockerImages converts the images of a docker save archive into Docker
// v2 manifests (OCI ones when a layer is zstd), checking each layer
// against the diff IDs of its config.
func (a *archive) dockerImages(name reference.Named) ([]pendingImage, error) {
	b, err := a.readFile("manifest.json")
	if err != nil {
		return nil, err
	}
	var entries []struct {
		Config   string   `json:"Config"`
		RepoTags []string `json:"RepoTags"`
		Layers   []string `json:"Layers"`
	}
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, invalidf("manifest.json is not a docker save manifest: %v", err)
	}
	if len(entries) == 0 {
		return nil, invalidf("manifest.json lists no image")
	}
	if len(entries) > maxImages {
		return nil, invalidf("manifest.json lists %d images (at most %d in one archive)", len(entries), maxImages)
	}
	if name != nil && len(entries) > 1 {
		return nil, invalidf("--name names one image, the archive holds %d", len(entries))
	}
	var out []pendingImage
	for i, e := range entries {
		what := fmt.Sprintf("manifest.json [%d]", i)
		var names []reference.Named
		if name != nil {
			names = []reference.Named{name}
		} else {
			for _, rt := range e.RepoTags {
				n, err := parseImageName(rt)
				if err != nil {
					return nil, invalidf("%s RepoTags: %v", what, err)
				}
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			return nil, invalidf("%s has no RepoTags (saved by image ID): pass --name REPOSITORY[:TAG]", what)
		}
		cfgPath, err := cleanEntry(e.Config)
		if err != nil {
			return nil, err
		}
		cfgSt, ok := a.resolve(cfgPath)
		if !ok {
			return nil, invalidf("%s names config %q, which the archive lacks", what, e.Config)
		}
		cfgJSON, err := a.readSmall("config "+e.Config, cfgSt)
		if err != nil {
			return nil, err
		}
		if hexName, ok := strings.CutSuffix(path.Base(cfgPath), ".json"); ok && len(hexName) == 64 && hexName != cfgSt.d.Encoded() {
			return nil, invalidf("config %s has digest %s: the archive is corrupt", e.Config, cfgSt.d)
		}
		var cfg struct {
			RootFS struct {
				DiffIDs []digest.Digest `json:"diff_ids"`
			} `json:"rootfs"`
		}
		if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
			return nil, invalidf("config %s is not valid JSON: %v", e.Config, err)
		}
		if len(e.Layers) > maxLayers {
			return nil, invalidf("%s has %d layers (at most %d)", what, len(e.Layers), maxLayers)
		}
		if len(cfg.RootFS.DiffIDs) != len(e.Layers) {
			return nil, invalidf("config %s lists %d layers (rootfs.diff_ids), %s %d", e.Config, len(cfg.RootFS.DiffIDs), what, len(e.Layers))
		}
		img := pendingImage{manifests: map[digest.Digest]ManifestInfo{}, blobs: map[digest.Digest]int64{cfgSt.d: cfgSt.size}}
		oci := false
		layers := make([]ocispec.Descriptor, len(e.Layers))
		for j, lp := range e.Layers {
			clean, err := cleanEntry(lp)
			if err != nil {
				return nil, err
			}
			st, ok := a.resolve(clean)
			if !ok {
				return nil, invalidf("%s names layer %q, which the archive lacks", what, lp)
			}
			mt, diffID, err := a.layerInfo(st)
			if err != nil {
				return nil, invalidf("layer %s: %v", lp, err)
			}
			if mt == ocispec.MediaTypeImageLayerZstd {
				oci = true
			} else if diffID != cfg.RootFS.DiffIDs[j] {
				return nil, invalidf("layer %s has diff ID %s, but its config says %s: the archive does not match its manifest", lp, diffID, cfg.RootFS.DiffIDs[j])
			}
			layers[j] = ocispec.Descriptor{MediaType: mt, Digest: st.d, Size: st.size}
			img.blobs[st.d] = st.size
		}
		m := ocispec.Manifest{MediaType: MediaTypeDockerManifest, Config: ocispec.Descriptor{MediaType: MediaTypeDockerConfig, Digest: cfgSt.d, Size: cfgSt.size}, Layers: layers}
		if oci {
			m.MediaType, m.Config.MediaType = ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig
			for j := range layers {
				switch layers[j].MediaType {
				case MediaTypeDockerLayer:
					layers[j].MediaType = ocispec.MediaTypeImageLayer
				case MediaTypeDockerLayerGzip:
					layers[j].MediaType = ocispec.MediaTypeImageLayerGzip
				}
			}
		}
		m.SchemaVersion = 2
		data, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		st, err := a.stage(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return nil, err
		}
		img.top, img.mediaType = st.d, m.MediaType
		img.manifests[st.d] = ManifestInfo{MediaType: m.MediaType, Size: st.size}
		img.blobs[st.d] = st.size
		for _, n := range names {
			img.repo, img.tag = repoTag(n, "")
			out = append(out, img)
		}
	}
	return out, nil
}

// layerInfo tells a layer's compression and computes its diff ID (the
// digest of the uncompressed tar).
func (a *archive) layerInfo(st staged) (string, digest.Digest, error) {
	f, err := os.Open(a.path(st.d))
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return "", "", fmt.Errorf("gzip: %v", err)
		}
		h := sha256.New()
		if _, err := io.CopyBuffer(h, zr, make([]byte, 256<<10)); err != nil {
			return "", "", fmt.Errorf("gzip: %v (truncated or damaged)", err)
		}
		return MediaTypeDockerLayerGzip, digest.NewDigest(digest.SHA256, h), nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		// containerd checks zstd layers against their diff IDs as it unpacks.
		return ocispec.MediaTypeImageLayerZstd, "", nil
	}
	return MediaTypeDockerLayer, st.d, nil
}

// commitImport moves the blobs of imgs into the store and writes their
// tags, pinned, in one index write.
func (s *Store) commitImport(a *archive, imgs []pendingImage) (*ImportResult, error) {
	s.gcMu.RLock() // the collector must not sweep blobs that no tag names yet
	defer s.gcMu.RUnlock()
	res := &ImportResult{}
	moved := map[digest.Digest]bool{}
	for _, img := range imgs {
		for d, size := range img.blobs {
			if moved[d] {
				continue
			}
			moved[d] = true
			if n, err := s.Stat(d); err == nil && n == size {
				continue
			}
			if err := os.Rename(a.path(d), s.BlobPath(d)); err != nil {
				return nil, fmt.Errorf("images: import: %w", err)
			}
			res.Blobs++
		}
	}
	if !s.noSync {
		if err := syncDir(filepath.Join(s.Dir, "blobs", "sha256")); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now().UTC()
	for _, img := range imgs {
		r := s.repo(img.repo)
		for d, m := range img.manifests {
			r.Manifests[d] = &ManifestInfo{MediaType: m.MediaType, Size: m.Size}
		}
		r.Tags[img.tag] = &ImageTag{Repo: img.repo, Tag: img.tag, Digest: img.top, MediaType: img.mediaType, Updated: now, LastUsed: now, Pinned: true}
		var size int64
		for _, n := range img.blobs {
			size += n
		}
		res.Images = append(res.Images, ImportedImage{Repo: img.repo, Tag: img.tag, Digest: img.top, MediaType: img.mediaType, Size: size})
	}
	if err := s.saveLocked(); err != nil {
		return nil, err
	}
	return res, nil
}
