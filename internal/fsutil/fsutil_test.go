package fsutil

import (
	"os"
	"testing"
)

func TestParseBudget(t *testing.T) {
	dir := t.TempDir()
	if n, err := ParseBudget("10Gi", dir); err != nil || n != 10<<30 {
		t.Fatalf("10Gi: %d %v", n, err)
	}
	if n, err := ParseBudget("50%", dir); err != nil || n <= 0 {
		t.Fatalf("50%%: %d %v", n, err)
	}
	for _, bad := range []string{"", "x", "0", "-1Gi", "0%", "101%", "abc%"} {
		if _, err := ParseBudget(bad, dir); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	os.RemoveAll(dir)
}
