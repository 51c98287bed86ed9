package images

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// ImportedFile is what the store remembers of a tarball it imported (or
// refused) from the air-gap directory: enough to know it again without
// reading it.
type ImportedFile struct {
	// Key is the file's size, modification time and inode: a file replaced
	// or rewritten is imported again.
	Key    string    `json:"key"`
	At     time.Time `json:"at"`
	Images []string  `json:"images,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// airgapSuffixes are the files ImportDir takes.
var airgapSuffixes = []string{".tar", ".tar.gz", ".tgz"}

// ImportDir imports each image tarball (*.tar, *.tar.gz, *.tgz) in dir that
// it has not imported before, k3s air-gap style: a file is known by its
// size, modification time and inode, recorded in the store's index, so an
// unchanged file is read once, however often the master starts. A bad
// tarball is logged and remembered, and the others are imported all the
// same. A missing dir is no error. Cancelling ctx stops it between
// files or in the middle of one (that file is imported at the next call).
func (s *Store) ImportDir(ctx context.Context, dir string, log *slog.Logger) []ImportedImage {
	if log == nil {
		log = slog.Default()
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if !os.IsNotExist(err) {
			log.Warn("air-gap images: cannot read the directory", "dir", dir, "err", err)
		}
		return nil
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	var out []ImportedImage
	for _, e := range ents {
		if ctx.Err() != nil {
			return out
		}
		if !hasAirgapSuffix(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		key := fileKey(fi)
		s.mu.Lock()
		prev := s.idx.Imported[e.Name()]
		s.mu.Unlock()
		if prev != nil && prev.Key == key {
			continue
		}
		rec := &ImportedFile{Key: key, At: s.Now().UTC()}
		res, err := s.importFile(ctx, p)
		if ctx.Err() != nil {
			return out // not recorded: the next start imports it
		}
		if err != nil {
			rec.Error = err.Error()
			log.Error("air-gap images: tarball refused; fix or remove it (it is tried again once it changes)", "file", p, "err", err)
		} else {
			for _, img := range res.Images {
				rec.Images = append(rec.Images, img.Ref())
			}
			out = append(out, res.Images...)
			log.Info("air-gap images: imported", "file", p, "images", rec.Images, "new-blobs", res.Blobs)
		}
		s.mu.Lock()
		if s.idx.Imported == nil {
			s.idx.Imported = map[string]*ImportedFile{}
		}
		s.idx.Imported[e.Name()] = rec
		err = s.saveLocked()
		s.mu.Unlock()
		if err != nil {
			log.Warn("air-gap images: cannot record the import", "file", p, "err", err)
		}
	}
	return out
}

func (s *Store) importFile(ctx context.Context, p string) (*ImportResult, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return s.Import(&ctxReader{ctx: ctx, r: f}, ImportOptions{})
}

func hasAirgapSuffix(name string) bool {
	for _, suf := range airgapSuffixes {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return false
}

func fileKey(fi os.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%d:%d:%d", fi.Size(), fi.ModTime().UnixNano(), ino)
}
