package images

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/fsutil"
)

// Store is the content store: every blob once, by sha256 digest, in
// DIR/blobs/sha256/HEX, and a small index (DIR/index.json) of repositories,
// their tags and the media types of their manifests.
//
// Blobs are written to DIR/ingest/ while they are hashed, and renamed into
// place only if their digest and size match: a partial or corrupt blob is
// never visible. The index is rewritten crash-safely (temp, fsync, rename)
// after the blobs it names are in place, so a crash leaves at worst blobs no
// tag names (garbage collection's business), never a tag without its
// manifest. Nothing is read into memory but manifests.
//
// Each tag records when it was last pulled and whether it is pinned, for
// the garbage collector (gc.go) and `edgectl image ls`. Last-used times are
// kept in memory and written at most every LastUsedWrite (SD cards wear).
type Store struct {
	Dir string
	Now func() time.Time
	// LastUsedWrite is how stale a tag's stored last-used time may get
	// before a pull rewrites the index [1h].
	LastUsedWrite time.Duration

	// gcMu keeps the collector's sweep (writer) away from imports that
	// have moved blobs in but not yet tagged them (readers).
	gcMu      sync.RWMutex
	mu        sync.Mutex
	idx       storeIndex
	lastSaved map[string]time.Time // repo:tag -> last-used time as saved
	noSync    bool                 // imports skip fsync (fuzzing only)
}

// ImageTag is one tag of a repository.
type ImageTag struct {
	Repo      string        `json:"-"`
	Tag       string        `json:"-"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Updated   time.Time     `json:"updated"`
	LastUsed  time.Time     `json:"lastUsed"`
	Pinned    bool          `json:"pinned,omitempty"`
}

// ManifestInfo is what the index keeps of a manifest (its bytes are a blob).
type ManifestInfo struct {
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
}

type repoIndex struct {
	Tags      map[string]*ImageTag            `json:"tags"`
	Manifests map[digest.Digest]*ManifestInfo `json:"manifests"`
}

type storeIndex struct {
	Version      int                   `json:"version"`
	Repositories map[string]*repoIndex `json:"repositories"`
	// Imported records the tarballs of DATA_DIR/images already imported
	// (or refused), so each is read once.
	Imported map[string]*ImportedFile `json:"imported,omitempty"`
}

// OpenStore opens (creating) the store in dir, and removes what crashed
// writes left in its ingest directory.
func OpenStore(dir string) (*Store, error) {
	s := &Store{Dir: dir}
	return s, s.Open()
}

// Open loads the index. Call it once, before anything else.
func (s *Store) Open() error {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.LastUsedWrite == 0 {
		s.LastUsedWrite = time.Hour
	}
	for _, d := range []string{filepath.Join(s.Dir, "blobs", "sha256"), s.ingestDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("images: content store: %w", err)
		}
	}
	// Writers of this process are all gone; what is left is from a crash.
	if ents, err := os.ReadDir(s.ingestDir()); err == nil {
		for _, e := range ents {
			os.RemoveAll(filepath.Join(s.ingestDir(), e.Name())) // import-* staging dirs too
		}
	}
	s.idx = storeIndex{Version: 1, Repositories: map[string]*repoIndex{}}
	s.lastSaved = map[string]time.Time{}
	b, err := os.ReadFile(s.indexPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("images: content store: %w", err)
	}
	if err := json.Unmarshal(b, &s.idx); err != nil {
		return fmt.Errorf("images: content store index %s is damaged (move it away to start an empty index; blobs stay): %w", s.indexPath(), err)
	}
	if s.idx.Repositories == nil {
		s.idx.Repositories = map[string]*repoIndex{}
	}
	for name, r := range s.idx.Repositories {
		if r.Tags == nil {
			r.Tags = map[string]*ImageTag{}
		}
		if r.Manifests == nil {
			r.Manifests = map[digest.Digest]*ManifestInfo{}
		}
		for t, it := range r.Tags {
			it.Repo, it.Tag = name, t
			s.lastSaved[name+":"+t] = it.LastUsed
		}
	}
	return nil
}

func (s *Store) ingestDir() string { return filepath.Join(s.Dir, "ingest") }
func (s *Store) indexPath() string { return filepath.Join(s.Dir, "index.json") }

// BlobPath is where the blob d lives once stored.
func (s *Store) BlobPath(d digest.Digest) string {
	return filepath.Join(s.Dir, "blobs", "sha256", d.Encoded())
}

// CheckDigest returns an EINVALID error unless d is a well-formed sha256
// digest, the only algorithm the store keeps.
func CheckDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return core.Errorf(core.EINVALID, "digest %q: %v", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return core.Errorf(core.EINVALID, "digest %q: only sha256 is supported", d)
	}
	return nil
}

// Stat returns the size of blob d; ENOTFOUND if it is not stored.
func (s *Store) Stat(d digest.Digest) (int64, error) {
	if err := CheckDigest(d); err != nil {
		return 0, err
	}
	fi, err := os.Stat(s.BlobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, core.Errorf(core.ENOTFOUND, "blob %s not stored", d)
	} else if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// OpenBlob opens blob d for reading; ENOTFOUND if it is not stored.
func (s *Store) OpenBlob(d digest.Digest) (*os.File, error) {
	if err := CheckDigest(d); err != nil {
		return nil, err
	}
	f, err := os.Open(s.BlobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, core.Errorf(core.ENOTFOUND, "blob %s not stored", d)
	}
	return f, err
}

// BlobWriter writes one blob: bytes go to a temp file and through a hash;
// Commit puts the blob in place if it is what was expected. Close without
// Commit discards it.
type BlobWriter struct {
	s        *Store
	f        *os.File
	h        hash.Hash
	n        int64
	expected digest.Digest
	size     int64
	done     bool
}

// Writer starts a blob that must have digest expected and, unless size is
// negative, that size.
func (s *Store) Writer(expected digest.Digest, size int64) (*BlobWriter, error) {
	if err := CheckDigest(expected); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(s.ingestDir(), expected.Encoded()+".*")
	if err != nil {
		return nil, err
	}
	return &BlobWriter{s: s, f: f, h: sha256.New(), expected: expected, size: size}, nil
}

// Path is the temp file being written (readers may follow it while the
// blob streams in).
func (w *BlobWriter) Path() string { return w.f.Name() }

// Written is how many bytes were written so far.
func (w *BlobWriter) Written() int64 { return w.n }

func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.size >= 0 && w.n+int64(len(p)) > w.size {
		return 0, core.Errorf(core.EINVALID, "blob %s: more than its %d bytes", w.expected, w.size)
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Commit checks size and digest, and renames the blob into place (fsync
// of file and directory first and after). A mismatch is EINVALID and the
// blob is discarded.
func (w *BlobWriter) Commit() error {
	if w.done {
		return errors.New("images: blob writer already closed")
	}
	defer w.Close()
	if w.size >= 0 && w.n != w.size {
		return core.Errorf(core.EINVALID, "blob %s: got %d bytes, want %d", w.expected, w.n, w.size)
	}
	got := digest.NewDigest(digest.SHA256, w.h)
	if got != w.expected {
		return core.Errorf(core.EINVALID, "blob %s: content has digest %s, refused", w.expected, got)
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(w.f.Name(), w.s.BlobPath(w.expected)); err != nil {
		return err
	}
	w.done = true
	return syncDir(filepath.Dir(w.s.BlobPath(w.expected)))
}

// Close discards the blob unless it was committed.
func (w *BlobWriter) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	return os.Remove(w.f.Name())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Put stores the blob read from r, which must have digest d and (unless
// size < 0) that size. A blob already stored is not written again.
func (s *Store) Put(d digest.Digest, size int64, r io.Reader) error {
	if n, err := s.Stat(d); err == nil && (size < 0 || n == size) {
		return nil
	}
	w, err := s.Writer(d, size)
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := io.CopyBuffer(w, r, make([]byte, 256<<10)); err != nil {
		return err
	}
	return w.Commit()
}

// ReadManifest returns the bytes of a stored manifest (manifests are small;
// they are capped at MaxManifestSize).
func (s *Store) ReadManifest(d digest.Digest) ([]byte, error) {
	f, err := s.OpenBlob(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxManifestSize))
}

// PutManifest stores a manifest's bytes as a blob, records its media type
// under repo and, if tag is not empty, points repo:tag at it.
func (s *Store) PutManifest(repo, tag, mediaType string, data []byte) (digest.Digest, error) {
	d := digest.FromBytes(data)
	if err := s.Put(d, int64(len(data)), bytes.NewReader(data)); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repo(repo)
	changed := false
	if m := r.Manifests[d]; m == nil || m.MediaType != mediaType {
		r.Manifests[d] = &ManifestInfo{MediaType: mediaType, Size: int64(len(data))}
		changed = true
	}
	if tag != "" {
		t := r.Tags[tag]
		if t == nil {
			now := s.Now().UTC()
			t = &ImageTag{Repo: repo, Tag: tag, LastUsed: now}
			r.Tags[tag] = t
		}
		if t.Digest != d || t.MediaType != mediaType {
			t.Digest, t.MediaType, t.Updated = d, mediaType, s.Now().UTC()
			changed = true
		}
	}
	if changed {
		return d, s.saveLocked()
	}
	return d, nil
}

func (s *Store) repo(name string) *repoIndex {
	r := s.idx.Repositories[name]
	if r == nil {
		r = &repoIndex{Tags: map[string]*ImageTag{}, Manifests: map[digest.Digest]*ManifestInfo{}}
		s.idx.Repositories[name] = r
	}
	return r
}

// Tag returns repo:tag; ENOTFOUND if there is no such tag.
func (s *Store) Tag(repo, tag string) (ImageTag, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.idx.Repositories[repo]; r != nil {
		if t := r.Tags[tag]; t != nil {
			return *t, nil
		}
	}
	return ImageTag{}, core.Errorf(core.ENOTFOUND, "%s:%s not stored", repo, tag)
}

// Manifest returns what the index knows of manifest d in repo; ENOTFOUND
// if repo has no such manifest or its blob is gone.
func (s *Store) Manifest(repo string, d digest.Digest) (ManifestInfo, error) {
	s.mu.Lock()
	var m *ManifestInfo
	if r := s.idx.Repositories[repo]; r != nil {
		m = r.Manifests[d]
	}
	s.mu.Unlock()
	if m == nil {
		return ManifestInfo{}, core.Errorf(core.ENOTFOUND, "manifest %s@%s not stored", repo, d)
	}
	if _, err := s.Stat(d); err != nil {
		return ManifestInfo{}, err
	}
	return *m, nil
}

// Tags lists repo's tags, sorted; ENOTFOUND if the store has no such
// repository.
func (s *Store) Tags(repo string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.idx.Repositories[repo]
	if r == nil {
		return nil, core.Errorf(core.ENOTFOUND, "repository %s not stored", repo)
	}
	tags := make([]string, 0, len(r.Tags))
	for t := range r.Tags {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	return tags, nil
}

// Images lists every tag of every repository, sorted by repo then tag.
func (s *Store) Images() []ImageTag {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ImageTag
	for _, r := range s.idx.Repositories {
		for _, t := range r.Tags {
			out = append(out, *t)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Repo != out[j].Repo {
			return out[i].Repo < out[j].Repo
		}
		return out[i].Tag < out[j].Tag
	})
	return out
}

// SetPinned pins or unpins repo:tag (a pinned image is never collected).
func (s *Store) SetPinned(repo, tag string, pinned bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.idx.Repositories[repo]
	if r == nil || r.Tags[tag] == nil {
		return core.Errorf(core.ENOTFOUND, "%s:%s not stored", repo, tag)
	}
	if r.Tags[tag].Pinned == pinned {
		return nil
	}
	r.Tags[tag].Pinned = pinned
	return s.saveLocked()
}

// Touch records that repo:tag was pulled now. The index is written only if
// the saved time is older than LastUsedWrite.
func (s *Store) Touch(repo, tag string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.idx.Repositories[repo]
	if r == nil || r.Tags[tag] == nil {
		return nil
	}
	now := s.Now().UTC()
	r.Tags[tag].LastUsed = now
	if now.Sub(s.lastSaved[repo+":"+tag]) < s.LastUsedWrite {
		return nil
	}
	return s.saveLocked()
}

// Usage returns how many blobs the store holds and their total size.
func (s *Store) Usage() (blobs int, bytes int64, err error) {
	ents, err := os.ReadDir(filepath.Join(s.Dir, "blobs", "sha256"))
	if err != nil {
		return 0, 0, err
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			blobs++
			bytes += fi.Size()
		}
	}
	return blobs, bytes, nil
}

// Flush writes last-used times not yet saved.
func (s *Store) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, r := range s.idx.Repositories {
		for t, it := range r.Tags {
			if !s.lastSaved[name+":"+t].Equal(it.LastUsed) {
				return s.saveLocked()
			}
		}
	}
	return nil
}

func (s *Store) saveLocked() error {
	b, err := json.MarshalIndent(&s.idx, "", " ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(s.indexPath(), b, 0o600); err != nil {
		return fmt.Errorf("images: write content index: %w", err)
	}
	for name, r := range s.idx.Repositories {
		for t, it := range r.Tags {
			s.lastSaved[name+":"+t] = it.LastUsed
		}
	}
	return nil
}

// PinnedRefs lists the pinned tags as REPO:TAG, sorted: nodes are told of
// those they hold, so that their caches keep them too.
func (s *Store) PinnedRefs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, r := range s.idx.Repositories {
		for t, it := range r.Tags {
			if it.Pinned {
				out = append(out, name+":"+t)
			}
		}
	}
	sort.Strings(out)
	return out
}
