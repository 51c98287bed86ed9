// Package fsutil holds the crash-safe file writing that the master and the
// agent share. It must stay tiny and depend only on the standard library.
package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/edgeorch/edge/core"
)

// WriteFileAtomic writes data to path crash-safely: temp file, fsync,
// rename, fsync of the directory.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ParseBudget reads --image-cache-size (the master's and the agent's): a quantity of bytes ("10Gi",
// "500M") or a percentage of the size of the file system that holds dir
// ("25%").
func ParseBudget(s, dir string) (int64, error) {
	if p, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		var pct float64
		if _, err := fmt.Sscan(p, &pct); err != nil || pct <= 0 || pct > 100 {
			return 0, fmt.Errorf("%q: want a percentage between 0 and 100 of the disk, or a size such as 10Gi", s)
		}
		var st syscall.Statfs_t
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return 0, err
		}
		if err := syscall.Statfs(dir, &st); err != nil {
			return 0, fmt.Errorf("size of the disk of %s: %v", dir, err)
		}
		return int64(float64(st.Blocks) * float64(st.Bsize) * pct / 100), nil
	}
	n, err := core.Quantity(s).Value()
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q: want a size such as 10Gi or 500M, or a percentage of the disk such as 25%%", s)
	}
	return n, nil
}
