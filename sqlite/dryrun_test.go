package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/storetest"
)

// dumpFile reads every row of the database file through a connection of
// its own, so it sees what is on disk, not the memory copy.
func dumpFile(t *testing.T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b strings.Builder
	for _, q := range []string{
		`SELECT 'revision', rv, '', '', '' FROM revision`,
		`SELECT kind, rv, namespace, name, hex(data) FROM objects ORDER BY kind, namespace, name`,
	} {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var kind, ns, name, data string
			var rv int64
			if err := rows.Scan(&kind, &rv, &ns, &name, &data); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s %d %s/%s %s\n", kind, rv, ns, name, data)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

var ctx = context.Background()

func decodeDocs(t *testing.T, docs []string) []core.Object {
	t.Helper()
	objs, err := core.DecodeManifests([]core.ManifestFile{{Name: "t.yaml", Data: []byte(strings.Join(docs, "---\n"))}})
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// A server dry run leaves the database file as it was, row for row, and a
// restarted store holds exactly what it held before.
func TestDB_DryRunApplyLeavesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db := MustOpenPath(t, path)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := core.Apply(ctx, db, decodeDocs(t, storetest.DryRunDocs.Base), now, core.NetworkConfig{}); err != nil {
		t.Fatal(err)
	}
	file0, snap0 := dumpFile(t, path), storetest.Snapshot(t, db)
	if !strings.Contains(file0, "Deployment") {
		t.Fatalf("the dump sees no deployment:\n%s", file0)
	}
	changes, err := core.DryRunApply(ctx, db, decodeDocs(t, storetest.DryRunDocs.Next), now, core.NetworkConfig{})
	if err != nil || len(changes) != 4 {
		t.Fatalf("dry run: %d changes, %v", len(changes), err)
	}
	if file := dumpFile(t, path); file != file0 {
		t.Fatalf("a dry run changed the file:\nbefore:\n%s\nafter:\n%s", file0, file)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if snap := storetest.Snapshot(t, MustOpenPath(t, path)); snap != snap0 {
		t.Fatalf("reopened after a dry run:\n%s\nwant:\n%s", snap, snap0)
	}
}
