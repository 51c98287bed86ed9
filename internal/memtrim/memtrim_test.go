package memtrim

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func rssFileKB(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "RssFile:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// Advising our own code away lowers the file-backed resident set, and the
// process keeps running (the code it needs faults back in).
func TestColdCode(t *testing.T) {
	before := rssFileKB(t)
	if n := ColdCode(); n == 0 {
		t.Skip("this kernel has neither MADV_PAGEOUT nor MADV_COLD (Linux < 5.4): nothing to test")
	}
	after := rssFileKB(t)
	t.Logf("file-backed RSS %d kB -> %d kB", before, after)
	if after >= before {
		t.Fatalf("file-backed RSS did not drop: %d kB -> %d kB", before, after)
	}
}
