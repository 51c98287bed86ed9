package edgeagent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A data dir gets this build's format; one written by a newer agent is
// refused, naming the versions, and left untouched.
func TestDataFormat(t *testing.T) {
	dir := t.TempDir()
	a := &Agent{DataDir: dir}
	if err := a.checkFormat(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "format")); strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("format file %q", b)
	}
	if err := a.checkFormat(); err != nil {
		t.Fatalf("same format again: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "format"), []byte("7\n"), 0o644)
	err := a.checkFormat()
	if err == nil || !strings.Contains(err.Error(), "newer edgeagent (format 7, this one knows 1)") {
		t.Fatalf("newer format: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "format")); string(b) != "7\n" {
		t.Fatal("a refused data dir was changed")
	}
}
