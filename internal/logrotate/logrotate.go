// Package logrotate writes container logs as a set of rotated files, and
// reads them back as one: the log driver process that containerd's shim
// runs for each container task (RunDriver), and the agent's side of
// `edgectl logs` (OpenFiles, FilesAfter, MultiFile, TailOffset). It imports
// nothing but the standard library and x/sys, so the driver binary
// (cmd/edge-logdriver) stays small: one runs per container.
package logrotate

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// A container's log is a set of files in its pod's log directory: the live
// file NAME.log and up to maxFiles-1 rotated ones NAME.log.N, N counting up
// from 1 (higher is newer; no file is ever renamed twice). Rotated files are
// numbered rather than stamped with the time, as the kubelet's are: a Pi
// has no real-time clock, and a clock stepped back by NTP after boot would
// sort a newer file before an older one.

// Default caps per container, the kubelet's (--container-log-max-size,
// --container-log-max-files).
const (
	DefaultMaxSize  = 10 << 20
	DefaultMaxFiles = 5
)

// RotatedName is the name of the n-th rotated file of the log at path.
func RotatedName(path string, n uint64) string {
	return path + "." + strconv.FormatUint(n, 10)
}

// rotatedSeqs returns the numbers of the rotated files of the log at path,
// oldest first.
func rotatedSeqs(path string) ([]uint64, error) {
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	prefix := filepath.Base(path) + "."
	var seqs []uint64
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || rest == "" || rest[0] == '0' {
			continue
		}
		if n, err := strconv.ParseUint(rest, 10, 64); err == nil {
			seqs = append(seqs, n)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

// File writes a container's log, rotating it at maxSize bytes and
// keeping maxFiles files (the live one included). It cuts files at line
// ends, so that every kept file starts with a whole line, unless one line
// is longer than a whole file. One process at a time writes a log (the log
// driver holds a lock for it). It does not sync: log lines are not worth
// an SD card's erase cycles, and the page cache writes them out in bulk.
type File struct {
	path     string
	maxSize  int64 // 0: never rotate
	maxFiles int   // at least 2

	f    *os.File // nil after a failed open: the next write tries again
	size int64
	seq  uint64 // the newest rotated file's number
}

func OpenFile(path string, maxSize int64, maxFiles int) (*File, error) {
	l := &File{path: path, maxSize: maxSize, maxFiles: max(maxFiles, 2)}
	seqs, err := rotatedSeqs(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if len(seqs) > 0 {
		l.seq = seqs[len(seqs)-1]
	}
	l.prune(seqs) // the caps may have been lowered since
	return l, l.open()
}

func (l *File) open() error {
	if err := os.MkdirAll(filepath.Dir(l.path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Write appends p, rotating first whenever p does not fit in the live file.
func (l *File) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if l.f == nil {
			if err := l.open(); err != nil {
				return written, err
			}
		}
		room := l.maxSize - l.size
		if l.maxSize <= 0 || int64(len(p)) <= room {
			n, err := l.f.Write(p)
			l.size += int64(n)
			return written + n, err
		}
		// What fits up to a line end goes here, the rest to the next file.
		cut := 0
		if room > 0 {
			cut = bytes.LastIndexByte(p[:room], '\n') + 1
			if cut == 0 && l.size == 0 {
				cut = int(room) // one line longer than a file
			}
		}
		if cut > 0 {
			n, err := l.f.Write(p[:cut])
			l.size += int64(n)
			written += n
			if err != nil {
				return written, err
			}
			p = p[cut:]
		}
		if err := l.rotate(); err != nil {
			return written, err
		}
	}
	return written, nil
}

// rotate renames the live file to the next number, removes the files
// beyond the cap and starts a new live file. Readers that hold the old
// file open read it to its end, then move on (see FilesAfter).
func (l *File) rotate() error {
	l.f.Close()
	l.f = nil
	l.seq++
	if err := os.Rename(l.path, RotatedName(l.path, l.seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	seqs, err := rotatedSeqs(l.path)
	if err != nil {
		return err
	}
	l.prune(seqs)
	return l.open()
}

// prune removes the oldest rotated files beyond maxFiles-1.
func (l *File) prune(seqs []uint64) {
	if extra := len(seqs) - (l.maxFiles - 1); extra > 0 {
		for _, n := range seqs[:extra] {
			os.Remove(RotatedName(l.path, n))
		}
	}
}

func (l *File) Close() error {
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// OpenFiles opens the files of the log at path as they stand, oldest first,
// the live one last (when it exists). The live file is opened first: if it
// is rotated meanwhile, the listing finds it under its new name and stops
// there, so the files returned follow one another with no gap.
func OpenFiles(path string) ([]*os.File, error) {
	cur, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		cur = nil
	} else if err != nil {
		return nil, err
	}
	seqs, err := rotatedSeqs(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		if cur != nil {
			cur.Close()
		}
		return nil, err
	}
	var files []*os.File
	for _, n := range seqs {
		f, err := os.Open(RotatedName(path, n))
		if err != nil {
			continue // pruned since the listing: it was the oldest
		}
		if cur != nil && SameFile(f, cur) {
			f.Close()
			break
		}
		files = append(files, f)
	}
	if cur != nil {
		files = append(files, cur)
	}
	return files, nil
}

// FilesAfter opens the files of the log at path written after f, in order
// (all of them for a nil f). If f is gone (a reader more than maxFiles
// rotations behind), it returns all that are left.
func FilesAfter(path string, f *os.File) ([]*os.File, error) {
	files, err := OpenFiles(path)
	if err != nil || f == nil {
		return files, err
	}
	for i, g := range files {
		if SameFile(g, f) {
			CloseAll(files[:i+1])
			return files[i+1:], nil
		}
	}
	return files, nil
}

func SameFile(a, b *os.File) bool {
	sa, err := a.Stat()
	if err != nil {
		return false
	}
	sb, err := b.Stat()
	return err == nil && os.SameFile(sa, sb)
}

func CloseAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// MultiFile reads files one after the other as one, at their sizes when
// it was made.
type MultiFile struct {
	files []*os.File
	sizes []int64
	Size  int64 // of all of them
}

func NewMultiFile(files []*os.File) (*MultiFile, error) {
	m := &MultiFile{files: files}
	for _, f := range files {
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		m.sizes = append(m.sizes, st.Size())
		m.Size += st.Size()
	}
	return m, nil
}

func (m *MultiFile) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for i, f := range m.files {
		if off >= m.sizes[i] {
			off -= m.sizes[i]
			continue
		}
		want := min(int64(len(p)-n), m.sizes[i]-off)
		k, err := f.ReadAt(p[n:n+int(want)], off)
		n += k
		if err != nil && err != io.EOF {
			return n, err
		}
		if int64(k) < want {
			return n, io.ErrUnexpectedEOF // shrank: not a log file we wrote
		}
		off = 0
		if n == len(p) {
			return n, nil
		}
	}
	return n, io.EOF
}

// Locate turns an offset into the file that holds it and the offset in it.
func (m *MultiFile) Locate(off int64) (int, int64) {
	for i, s := range m.sizes {
		if off < s {
			return i, off
		}
		off -= s
	}
	return len(m.files) - 1, m.sizes[len(m.sizes)-1]
}

// TailOffset returns where the last n lines of the size bytes of r start
// (0 for n < 0).
func TailOffset(r io.ReaderAt, size int64, n int) (int64, error) {
	if n < 0 {
		return 0, nil
	}
	if n == 0 {
		return size, nil
	}
	end := size
	// A final newline ends the last line; it does not start an empty one.
	if end > 0 {
		b := make([]byte, 1)
		if _, err := r.ReadAt(b, end-1); err == nil && b[0] == '\n' {
			end--
		}
	}
	pos := end
	buf := make([]byte, 32<<10)
	found := 0
	for pos > 0 {
		chunk := min(int64(len(buf)), pos)
		pos -= chunk
		if _, err := r.ReadAt(buf[:chunk], pos); err != nil && err != io.EOF {
			return 0, err
		}
		for i := chunk - 1; i >= 0; i-- {
			if buf[i] == '\n' {
				found++
				if found == n {
					return pos + i + 1, nil
				}
			}
		}
	}
	return 0, nil
}
