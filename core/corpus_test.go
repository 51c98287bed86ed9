package core_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
)

// corpusFloor is how many of the real manifests in testdata/corpus (each
// file's source in its header) decode unchanged today. It only goes up:
// a change that makes a real manifest fail again fails this test. The
// workloads issue's goal is 90%.
const corpusFloor = 145

// TestCorpus decodes every real manifest of the corpus and prints which
// fail and why, grouped by the first error.
func TestCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/corpus/*.yaml")
	if err != nil || len(files) < 40 {
		t.Fatalf("%d corpus files: %v", len(files), err)
	}
	ok := 0
	why := map[string][]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := core.DecodeManifests([]core.ManifestFile{{Name: filepath.Base(f), Data: b}}); err != nil {
			msg := core.ErrorMessage(err)
			if i := strings.Index(msg, ": "); i > 0 { // past the file name
				msg = msg[i+2:]
			}
			why[msg] = append(why[msg], filepath.Base(f))
			continue
		}
		ok++
	}
	var reasons []string
	for r, fs := range why {
		reasons = append(reasons, r+"\n      "+strings.Join(fs, " "))
	}
	sort.Strings(reasons)
	t.Logf("%d of %d real manifests (%.0f%%) apply unchanged; the others:\n  %s", ok, len(files), 100*float64(ok)/float64(len(files)), strings.Join(reasons, "\n  "))
	if ok < corpusFloor {
		t.Fatalf("only %d of %d decode; %d did before", ok, len(files), corpusFloor)
	}
}
