package sqlite_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/edgeorch/edge/sqlite"
)

func TestUsable(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		dir := t.TempDir()
		if err := sqlite.Usable(dir); err != nil {
			t.Fatal(err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("left %v behind", entries)
		}
	})
	t.Run("ErrMissingDir", func(t *testing.T) {
		if err := sqlite.Usable(filepath.Join(t.TempDir(), "missing")); err == nil {
			t.Fatal("no error for a directory that does not exist")
		}
	})
}
