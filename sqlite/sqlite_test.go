package sqlite_test

import (
	"bytes"
	"database/sql"
	"strings"

	"context"
	"errors"
	_ "github.com/mattn/go-sqlite3"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/sqlite"
)

// MustOpenDB opens a store on a new database file in a temp dir.
func MustOpenDB(tb testing.TB) *sqlite.DB {
	tb.Helper()
	return MustOpenPath(tb, filepath.Join(tb.TempDir(), "state.db"))
}

func MustOpenPath(tb testing.TB, path string) *sqlite.DB {
	tb.Helper()
	db := sqlite.NewDB(path)
	if err := db.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func pod(name string) *core.Pod {
	o, _ := core.NewObject(core.KindPod)
	p := o.(*core.Pod)
	p.Metadata.Name, p.Metadata.Namespace = name, "default"
	p.Spec.Containers = []core.Container{{Name: "c", Image: "busybox"}}
	return p
}

func create(t *testing.T, db *sqlite.DB, objs ...core.Object) {
	t.Helper()
	err := db.Update(context.Background(), func(tx core.Tx) error {
		for _, o := range objs {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDB_Create(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		db := MustOpenDB(t)
		create(t, db, pod("a"))
		o, err := db.Get(ctx, core.Key{Kind: core.KindPod, Namespace: "default", Name: "a"})
		if err != nil {
			t.Fatal(err)
		}
		m := o.GetMeta()
		if m.UID == "" || m.ResourceVersion == "" || m.Generation != 1 || m.CreationTimestamp == nil {
			t.Fatalf("server metadata not set: %+v", m)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		db := MustOpenDB(t)
		create(t, db, pod("a"))
		err := db.Update(ctx, func(tx core.Tx) error { return tx.Create(pod("a")) })
		if core.ErrorCode(err) != core.ECONFLICT {
			t.Fatalf("err = %v, want ECONFLICT", err)
		}
	})
	t.Run("DefaultNamespace", func(t *testing.T) {
		db := MustOpenDB(t)
		if _, err := db.Get(ctx, core.Key{Kind: core.KindNamespace, Name: "default"}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDB_Put(t *testing.T) {
	ctx := context.Background()
	key := core.Key{Kind: core.KindPod, Namespace: "default", Name: "a"}
	t.Run("OK", func(t *testing.T) {
		db := MustOpenDB(t)
		create(t, db, pod("a"))
		o, _ := db.Get(ctx, key)
		p := core.Clone(o.(*core.Pod))
		p.Spec.Containers[0].Image = "busybox:2"
		if err := db.Update(ctx, func(tx core.Tx) error { return tx.Put(p) }); err != nil {
			t.Fatal(err)
		}
		o2, _ := db.Get(ctx, key)
		if o2.GetMeta().Generation != 2 || o2.GetMeta().UID != o.GetMeta().UID {
			t.Fatalf("generation %d uid %s", o2.GetMeta().Generation, o2.GetMeta().UID)
		}
		if o.(*core.Pod).Spec.Containers[0].Image != "busybox" {
			t.Fatal("an object handed out earlier changed")
		}
		// A status-only change keeps the generation.
		p2 := core.Clone(o2.(*core.Pod))
		p2.Status.Phase = core.PodRunning
		if err := db.Update(ctx, func(tx core.Tx) error { return tx.Put(p2) }); err != nil {
			t.Fatal(err)
		}
		o3, _ := db.Get(ctx, key)
		if o3.GetMeta().Generation != 2 || o3.(*core.Pod).Status.Phase != core.PodRunning {
			t.Fatalf("got generation %d phase %s", o3.GetMeta().Generation, o3.(*core.Pod).Status.Phase)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		db := MustOpenDB(t)
		create(t, db, pod("a"))
		o, _ := db.Get(ctx, key)
		stale := core.Clone(o.(*core.Pod))
		fresh := core.Clone(o.(*core.Pod))
		fresh.Status.Phase = core.PodRunning
		if err := db.Update(ctx, func(tx core.Tx) error { return tx.Put(fresh) }); err != nil {
			t.Fatal(err)
		}
		stale.Spec.Containers[0].Image = "other"
		err := db.Update(ctx, func(tx core.Tx) error { return tx.Put(stale) })
		if core.ErrorCode(err) != core.ECONFLICT {
			t.Fatalf("err = %v, want ECONFLICT", err)
		}
		o2, _ := db.Get(ctx, key)
		if o2.(*core.Pod).Spec.Containers[0].Image != "busybox" {
			t.Fatal("stale write was stored")
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		db := MustOpenDB(t)
		err := db.Update(ctx, func(tx core.Tx) error { return tx.Put(pod("nope")) })
		if core.ErrorCode(err) != core.ENOTFOUND {
			t.Fatalf("err = %v, want ENOTFOUND", err)
		}
	})
}

func TestDB_UpdateRollback(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	boom := errors.New("boom")
	err := db.Update(ctx, func(tx core.Tx) error {
		if err := tx.Create(pod("a")); err != nil {
			return err
		}
		if _, err := tx.Get(core.Key{Kind: core.KindPod, Namespace: "default", Name: "a"}); err != nil {
			t.Fatalf("tx does not see its own write: %v", err)
		}
		return boom
	})
	if err != boom {
		t.Fatalf("err = %v", err)
	}
	if objs, _ := db.List(ctx, core.KindPod, ""); len(objs) != 0 {
		t.Fatalf("rolled back create is visible: %d pods", len(objs))
	}
}

func TestDB_ListAndDelete(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	create(t, db, pod("b"), pod("a"), pod("c"))
	err := db.Update(ctx, func(tx core.Tx) error {
		if err := tx.Delete(core.Key{Kind: core.KindPod, Namespace: "default", Name: "b"}); err != nil {
			return err
		}
		objs, _ := tx.List(core.KindPod, "default")
		if len(objs) != 2 {
			t.Errorf("tx list after delete: %d", len(objs))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	objs, _ := db.List(ctx, core.KindPod, "")
	if len(objs) != 2 || objs[0].GetMeta().Name != "a" || objs[1].GetMeta().Name != "c" {
		t.Fatalf("list = %v", objs)
	}
	err = db.Update(ctx, func(tx core.Tx) error {
		return tx.Delete(core.Key{Kind: core.KindPod, Namespace: "default", Name: "b"})
	})
	if core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("err = %v", err)
	}
}

func TestDB_Reopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db := sqlite.NewDB(path)
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	create(t, db, pod("a"))
	rev := db.Revision()
	db.Close()
	db = MustOpenPath(t, path)
	if _, err := db.Get(ctx, core.Key{Kind: core.KindPod, Namespace: "default", Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if db.Revision() != rev {
		t.Fatalf("revision %d after reopen, want %d", db.Revision(), rev)
	}
	if db.Writes() != 0 {
		t.Fatalf("%d writes on reopening a database that has its default namespace", db.Writes())
	}
}

// A write to a closed store is refused with an error and changes nothing.
func TestDB_UpdateAfterClose(t *testing.T) {
	db := MustOpenDB(t)
	rev := db.Revision()
	db.Close()
	err := db.Update(context.Background(), func(tx core.Tx) error { return tx.Create(pod("a")) })
	if core.ErrorCode(err) != core.EUNAVAILABLE {
		t.Fatalf("Update after Close = %v, want unavailable", err)
	}
	if db.Revision() != rev {
		t.Fatalf("revision %d after a refused write, want %d", db.Revision(), rev)
	}
}

// An Update that changes nothing must not touch the database file.
func TestDB_IdleWritesNothing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db := MustOpenPath(t, path)
	create(t, db, pod("a"))
	before := db.Writes()
	st1, _ := os.Stat(path + "-wal")
	for i := 0; i < 100; i++ {
		err := db.Update(ctx, func(tx core.Tx) error {
			_, err := tx.List(core.KindPod, "")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	st2, _ := os.Stat(path + "-wal")
	if db.Writes() != before {
		t.Fatalf("%d writes for no change", db.Writes()-before)
	}
	if st1.Size() != st2.Size() || !st1.ModTime().Equal(st2.ModTime()) {
		t.Fatal("WAL file changed for no change")
	}
}

func TestDB_Watch(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	ch, stop := db.Watch()
	defer stop()
	create(t, db, pod("a"))
	db.Update(ctx, func(tx core.Tx) error {
		return tx.Delete(core.Key{Kind: core.KindPod, Namespace: "default", Name: "a"})
	})
	for _, want := range []core.EventType{core.Added, core.Deleted} {
		select {
		case ev := <-ch:
			if ev.Type != want || ev.Object.GetMeta().Name != "a" {
				t.Fatalf("event %s %s, want %s a", ev.Type, ev.Object.GetMeta().Name, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
	}
}

func TestDB_Tokens(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	db := MustOpenDB(t)
	db.Now = func() time.Time { return now }
	exp := core.NewTime(now.Add(time.Hour))
	if err := db.CreateToken(ctx, &core.Token{ID: "t1", Kind: core.TokenJoin, Hash: "h1", ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.FindToken(ctx, core.TokenJoin, "h1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.FindToken(ctx, core.TokenAdmin, "h1"); core.ErrorCode(err) != core.EUNAUTHORIZED {
		t.Fatalf("join token accepted as admin: %v", err)
	}
	if err := db.CreateToken(ctx, &core.Token{ID: "t1", Kind: core.TokenJoin, Hash: "h2"}); core.ErrorCode(err) != core.ECONFLICT {
		t.Fatalf("duplicate id: %v", err)
	}
	now = now.Add(2 * time.Hour)
	if _, err := db.FindToken(ctx, core.TokenJoin, "h1"); core.ErrorCode(err) != core.EUNAUTHORIZED {
		t.Fatalf("expired token accepted: %v", err)
	}
	if err := db.SetNodeCredential(ctx, "n1", "x"); err != nil {
		t.Fatal(err)
	}
	creds, err := db.NodeCredentials(ctx)
	if err != nil || creds["n1"] != "x" {
		t.Fatalf("creds %v %v", creds, err)
	}

	// Listing and revoking.
	if err := db.CreateToken(ctx, &core.Token{ID: "t2", Kind: core.TokenJoin, Hash: "h2", Description: "for the shed"}); err != nil {
		t.Fatal(err)
	}
	list, err := db.ListTokens(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "t1" || list[1].Description != "for the shed" || list[0].ExpiresAt == nil {
		t.Fatalf("ListTokens = %+v, %v", list, err)
	}
	if list[0].Hash != "" {
		t.Fatal("ListTokens returns hashes")
	}
	if err := db.DeleteToken(ctx, "t2"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.FindToken(ctx, core.TokenJoin, "h2"); core.ErrorCode(err) != core.EUNAUTHORIZED {
		t.Fatalf("a deleted token is still accepted: %v", err)
	}
	if err := db.DeleteToken(ctx, "t2"); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("deleting a missing token: %v", err)
	}
	// PutToken replaces by id.
	if err := db.PutToken(ctx, &core.Token{ID: "t1", Kind: core.TokenJoin, Hash: "h3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.FindToken(ctx, core.TokenJoin, "h3"); err != nil {
		t.Fatalf("the replaced token: %v", err)
	}

	// Node passwords bind once; deleting the node's credentials frees the name.
	for _, tt := range []struct{ hash, want string }{{"p1", "p1"}, {"p1", "p1"}, {"p2", "p1"}} {
		if got, err := db.BindNodePassword(ctx, "n1", tt.hash); err != nil || got != tt.want {
			t.Fatalf("BindNodePassword(n1, %s) = %q, %v; want %q", tt.hash, got, err, tt.want)
		}
	}
	if err := db.DeleteNodeCredentials(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if creds, _ := db.NodeCredentials(ctx); creds["n1"] != "" {
		t.Fatal("the MQTT credential survived DeleteNodeCredentials")
	}
	if got, err := db.BindNodePassword(ctx, "n1", "p2"); err != nil || got != "p2" {
		t.Fatalf("after deleting, BindNodePassword(n1, p2) = %q, %v", got, err)
	}
}

// State written before a kill -9 is there after restart.
func TestDB_SurvivesKill9(t *testing.T) {
	if path := os.Getenv("EDGE_SQLITE_KILL_CHILD"); path != "" {
		db := sqlite.NewDB(path)
		if err := db.Open(); err != nil {
			os.Exit(3)
		}
		for i := 0; i < 50; i++ {
			p := pod("p" + string(rune('a'+i%26)) + string(rune('a'+i/26)))
			if err := db.Update(context.Background(), func(tx core.Tx) error { return tx.Create(p) }); err != nil {
				os.Exit(4)
			}
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	path := filepath.Join(t.TempDir(), "state.db")
	args := []string{os.Args[0], "-test.run=^TestDB_SurvivesKill9$"}
	if w := os.Getenv("EDGE_TEST_EXEC_WRAPPER"); w != "" {
		args = append([]string{w}, args...) // e.g. qemu-aarch64-static for arm64 tests
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "EDGE_SQLITE_KILL_CHILD="+path)
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v", err)
	}
	db := MustOpenPath(t, path)
	objs, err := db.List(context.Background(), core.KindPod, "")
	if err != nil || len(objs) != 50 {
		t.Fatalf("%d pods after kill -9, want 50 (%v)", len(objs), err)
	}
}

// A database a newer master migrated is refused by an older one, naming
// the schema it does not know; the file is left as it was.
func TestOpen_RefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db := sqlite.NewDB(path)
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	raw, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`INSERT INTO migrations (name) VALUES ('migration/999_future.sql')`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	before, _ := os.ReadFile(path)
	db = sqlite.NewDB(path)
	err = db.Open()
	if err == nil || !strings.Contains(err.Error(), "newer edgemaster (schema migration/999_future.sql)") {
		t.Fatalf("open: %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("the refused database was changed")
	}
}
