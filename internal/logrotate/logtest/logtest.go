// Package logtest holds what the tests of rotated logs share: numbered
// lines to write, a check that what came back is those lines with none
// lost or repeated, and reading a log's files in order.
package logtest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Lines returns lines "line N\n" for N in [from, to).
func Lines(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	return b.String()
}

// CheckContiguous checks that s is whole "line N" lines with consecutive
// numbers ending at last-1, and returns the first number.
func CheckContiguous(t *testing.T, s string, last int) int {
	t.Helper()
	if s == "" {
		t.Fatalf("no lines")
	}
	if !strings.HasSuffix(s, "\n") {
		t.Fatalf("does not end with a whole line: %q", s[max(0, len(s)-40):])
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	first := -1
	for i, l := range lines {
		n, err := strconv.Atoi(strings.TrimPrefix(l, "line "))
		if err != nil || !strings.HasPrefix(l, "line ") {
			t.Fatalf("line %d is %q", i, l)
		}
		if i == 0 {
			first = n
		} else if n != first+i {
			t.Fatalf("line %d is %q, want line %d (lost or repeated lines)", i, l, first+i)
		}
	}
	if got := first + len(lines); got != last {
		t.Fatalf("last line is %d, want %d", got-1, last-1)
	}
	return first
}

// ReadFiles reads a log's files (logrotate.OpenFiles, oldest first) and
// returns their contents one after the other, with the files' names and
// sizes.
func ReadFiles(t *testing.T, files []*os.File) (string, []string, []int64) {
	t.Helper()
	var all bytes.Buffer
	var names []string
	var sizes []int64
	for _, f := range files {
		b, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
		names = append(names, filepath.Base(f.Name()))
		sizes = append(sizes, int64(len(b)))
	}
	return all.String(), names, sizes
}
