// Package storetest is the conformance suite of core.Store: the semantics
// that core/store.go documents and that sqlite.DB implements, checked
// against any implementation. Both sqlite.DB and core.MemoryStore run it,
// which is what makes the memory store a faithful stand-in in core's tests.
//
// It must never depend on a particular store; optional behaviour (Revision,
// Writes, core.RawLister) is checked only where a store has it.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// Reviser is implemented by stores that expose their revision.
type Reviser interface{ Revision() int64 }

// WriteCounter is implemented by stores that count committed writes.
type WriteCounter interface{ Writes() int64 }

// Open returns a new store holding only the default namespace. It
// registers its own cleanup with t.
type Open func(t *testing.T) core.Store

// Run runs the conformance suite, one subtest per behaviour, each on a
// store of its own.
func Run(t *testing.T, open Open) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, core.Store)
	}{
		{"DefaultNamespace", testDefaultNamespace},
		{"Create/OK", testCreateOK},
		{"Create/UniqueUIDs", testCreateUniqueUIDs},
		{"Create/ErrConflict", testCreateConflict},
		{"Create/AfterDeleteInTx", testCreateAfterDelete},
		{"Get/ErrNotFound", testGetNotFound},
		{"UnknownKind", testUnknownKind},
		{"Put/OK", testPutOK},
		{"Put/MetadataOnlyKeepsGeneration", testPutMetadataOnly},
		{"Put/KindWithoutSpec", testPutNoSpec},
		{"Put/BlindWrite", testPutBlind},
		{"Put/ErrConflict", testPutConflict},
		{"Put/ErrNotFound", testPutNotFound},
		{"Put/AfterCreateInTx", testPutAfterCreate},
		{"Delete", testDelete},
		{"List/Sorted", testListSorted},
		{"Tx/ReadsOwnWrites", testTxReadsOwnWrites},
		{"Tx/Isolation", testTxIsolation},
		{"Update/Rollback", testRollback},
		{"Update/FailedWriteChangesNothing", testFailedWriteIgnored},
		{"Update/CancelledContext", testCancelled},
		{"Update/NoOpWritesNothing", testNoOp},
		{"Update/DryRunApply", testDryRunApply},
		{"Revision", testRevision},
		{"Watch/Events", testWatchEvents},
		{"Watch/OnlyAfterCall", testWatchAfterCall},
		{"Watch/AfterCommit", testWatchAfterCommit},
		{"Watch/NoEventsWithoutChange", testWatchNoChange},
		{"Watch/Stop", testWatchStop},
		{"Watch/Many", testWatchMany},
		{"Watch/SlowWatcherClosed", testWatchOverflow},
		{"PodsOnNode", testPodsOnNode},
		{"PodsOnNode/InTx", testPodsOnNodeTx},
		{"EventsAbout", testEventsAbout},
		{"Concurrent", testConcurrent},
		{"ListRaw", testListRaw},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var ctx = context.Background()

// Pod returns a minimal pod, bound to node unless node is "".
func Pod(ns, name, node string) *core.Pod {
	return &core.Pod{
		TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindPod},
		Metadata: core.ObjectMeta{Name: name, Namespace: ns},
		Spec:     core.PodSpec{NodeName: node, Containers: []core.Container{{Name: "c", Image: "busybox"}}},
	}
}

func podKey(ns, name string) core.Key { return core.Key{Kind: core.KindPod, Namespace: ns, Name: name} }

func update(t *testing.T, s core.Store, fn func(tx core.Tx) error) {
	t.Helper()
	if err := s.Update(ctx, fn); err != nil {
		t.Fatal(err)
	}
}

func create(t *testing.T, s core.Store, objs ...core.Object) {
	t.Helper()
	update(t, s, func(tx core.Tx) error {
		for _, o := range objs {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
}

func get(t *testing.T, s core.Store, k core.Key) core.Object {
	t.Helper()
	o, err := s.Get(ctx, k)
	if err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	return o
}

func getPod(t *testing.T, s core.Store, ns, name string) *core.Pod {
	t.Helper()
	return get(t, s, podKey(ns, name)).(*core.Pod)
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if core.ErrorCode(err) != code {
		t.Fatalf("%s: err = %v, want %s", what, err, code)
	}
}

func rv(t *testing.T, o core.Object) int64 {
	t.Helper()
	v, err := strconv.ParseInt(o.GetMeta().ResourceVersion, 10, 64)
	if err != nil || v <= 0 {
		t.Fatalf("%s: resourceVersion %q is not a positive integer", core.KeyOf(o), o.GetMeta().ResourceVersion)
	}
	return v
}

func names[T core.Object](objs []T) string {
	s := ""
	for i, o := range objs {
		if i > 0 {
			s += " "
		}
		s += o.GetMeta().Namespace + "/" + o.GetMeta().Name
	}
	return s
}

func list(t *testing.T, s core.Store, kind core.Kind, ns string) []core.Object {
	t.Helper()
	objs, err := s.List(ctx, kind, ns)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

const wait = 10 * time.Second

// recv returns the next event, failing the test if none comes in time.
func recv(t *testing.T, ch <-chan core.WatchEvent) core.WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(wait):
		t.Fatal("no watch event")
	}
	panic("unreachable")
}

func wantEvent(t *testing.T, ch <-chan core.WatchEvent, typ core.EventType, k core.Key) core.WatchEvent {
	t.Helper()
	ev := recv(t, ch)
	if ev.Type != typ || core.KeyOf(ev.Object) != k {
		t.Fatalf("event %s %s, want %s %s", ev.Type, core.KeyOf(ev.Object), typ, k)
	}
	return ev
}

// sentinel commits a new pod, so that a watcher's next event proves that
// nothing was delivered before it.
func sentinel(t *testing.T, s core.Store, name string) core.Key {
	t.Helper()
	create(t, s, Pod("default", name, ""))
	return podKey("default", name)
}

func testDefaultNamespace(t *testing.T, s core.Store) {
	o := get(t, s, core.Key{Kind: core.KindNamespace, Name: core.DefaultNamespace})
	if o.GetMeta().UID == "" || o.GetTypeMeta().Kind != core.KindNamespace {
		t.Fatalf("default namespace %+v", o.GetMeta())
	}
	if got := names(list(t, s, core.KindNamespace, "")); got != "/default" {
		t.Fatalf("namespaces %q, want only the default one", got)
	}
}

func testCreateOK(t *testing.T, s core.Store) {
	p := Pod("default", "a", "")
	p.Metadata.UID, p.Metadata.Generation, p.Metadata.ResourceVersion = "forged", 7, "999999"
	create(t, s, p)
	m := p.Metadata // Create sets the server fields on the object it is given.
	if m.UID == "" || m.UID == "forged" || m.Generation != 1 || m.CreationTimestamp == nil || m.ResourceVersion == "999999" {
		t.Fatalf("server metadata not set: %+v", m)
	}
	rv(t, p)
	got := getPod(t, s, "default", "a")
	if got.Metadata.UID != m.UID || got.Metadata.ResourceVersion != m.ResourceVersion || got.Metadata.Generation != 1 ||
		got.Metadata.CreationTimestamp == nil || !got.Metadata.CreationTimestamp.Equal(m.CreationTimestamp.Time) {
		t.Fatalf("stored metadata %+v, created %+v", got.Metadata, m)
	}
	if got.Spec.Containers[0].Image != "busybox" || got.TypeMeta.Kind != core.KindPod {
		t.Fatalf("stored pod %+v", got)
	}
}

func testCreateUniqueUIDs(t *testing.T, s core.Store) {
	a, b := Pod("default", "a", ""), Pod("x", "a", "")
	create(t, s, a, b)
	if a.Metadata.UID == b.Metadata.UID {
		t.Fatal("two objects share a UID")
	}
	update(t, s, func(tx core.Tx) error { return tx.Delete(podKey("default", "a")) })
	again := Pod("default", "a", "")
	create(t, s, again)
	if again.Metadata.UID == a.Metadata.UID || again.Metadata.UID == b.Metadata.UID {
		t.Fatal("a re-created object got an old UID")
	}
}

func testCreateConflict(t *testing.T, s core.Store) {
	first := Pod("default", "a", "")
	create(t, s, first)
	err := s.Update(ctx, func(tx core.Tx) error {
		if err := tx.Create(Pod("default", "b", "")); err != nil {
			return err
		}
		return tx.Create(Pod("default", "a", ""))
	})
	wantCode(t, "create existing", err, core.ECONFLICT)
	if _, err := s.Get(ctx, podKey("default", "b")); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("a create of the failed transaction is visible: %v", err)
	}
	if got := getPod(t, s, "default", "a"); got.Metadata.UID != first.Metadata.UID {
		t.Fatal("a conflicting create replaced the object")
	}
	err = s.Update(ctx, func(tx core.Tx) error {
		if err := tx.Create(Pod("default", "c", "")); err != nil {
			return err
		}
		return tx.Create(Pod("default", "c", ""))
	})
	wantCode(t, "create twice in one transaction", err, core.ECONFLICT)
}

func testCreateAfterDelete(t *testing.T, s core.Store) {
	old := Pod("default", "a", "")
	create(t, s, old)
	var again *core.Pod
	update(t, s, func(tx core.Tx) error {
		if err := tx.Delete(podKey("default", "a")); err != nil {
			return err
		}
		again = Pod("default", "a", "n1")
		return tx.Create(again)
	})
	got := getPod(t, s, "default", "a")
	if got.Metadata.UID == old.Metadata.UID || got.Metadata.UID != again.Metadata.UID || got.Spec.NodeName != "n1" {
		t.Fatalf("re-created object: uid %s (old %s), node %q", got.Metadata.UID, old.Metadata.UID, got.Spec.NodeName)
	}
}

func testGetNotFound(t *testing.T, s core.Store) {
	create(t, s, Pod("x", "a", ""))
	_, err := s.Get(ctx, podKey("default", "a"))
	wantCode(t, "get in another namespace", err, core.ENOTFOUND)
	_, err = s.Get(ctx, core.Key{Kind: core.KindDeployment, Namespace: "x", Name: "a"})
	wantCode(t, "get of another kind", err, core.ENOTFOUND)
	err = s.Update(ctx, func(tx core.Tx) error {
		_, err := tx.Get(podKey("x", "b"))
		return err
	})
	wantCode(t, "tx get", err, core.ENOTFOUND)
}

func testUnknownKind(t *testing.T, s core.Store) {
	bogus := core.Key{Kind: "Bogus", Namespace: "default", Name: "a"}
	_, err := s.Get(ctx, bogus)
	wantCode(t, "get", err, core.EINVALID)
	_, err = s.List(ctx, "Bogus", "")
	wantCode(t, "list", err, core.EINVALID)
	p := Pod("default", "a", "")
	p.TypeMeta.Kind = "Bogus"
	wantCode(t, "create", s.Update(ctx, func(tx core.Tx) error { return tx.Create(p) }), core.EINVALID)
}

func testPutOK(t *testing.T, s core.Store) {
	create(t, s, Pod("default", "a", ""))
	before := getPod(t, s, "default", "a")
	p := core.Clone(before)
	p.Spec.Containers[0].Image = "busybox:2"
	p.Metadata.UID, p.Metadata.Generation = "forged", 42
	p.Metadata.CreationTimestamp = core.NewTime(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	update(t, s, func(tx core.Tx) error { return tx.Put(p) })
	after := getPod(t, s, "default", "a")
	if after.Metadata.Generation != 2 || after.Metadata.UID != before.Metadata.UID ||
		!after.Metadata.CreationTimestamp.Equal(before.Metadata.CreationTimestamp.Time) {
		t.Fatalf("after a spec change: %+v, before %+v", after.Metadata, before.Metadata)
	}
	if rv(t, after) <= rv(t, before) || after.Spec.Containers[0].Image != "busybox:2" {
		t.Fatalf("resourceVersion %s -> %s, image %s", before.Metadata.ResourceVersion, after.Metadata.ResourceVersion, after.Spec.Containers[0].Image)
	}
	if before.Spec.Containers[0].Image != "busybox" || before.Metadata.Generation != 1 {
		t.Fatal("an object handed out earlier changed")
	}
	// A status-only change keeps the generation.
	p2 := core.Clone(after)
	p2.Status.Phase = core.PodRunning
	update(t, s, func(tx core.Tx) error { return tx.Put(p2) })
	if got := getPod(t, s, "default", "a"); got.Metadata.Generation != 2 || got.Status.Phase != core.PodRunning {
		t.Fatalf("status change: generation %d phase %s", got.Metadata.Generation, got.Status.Phase)
	}
}

func testPutMetadataOnly(t *testing.T, s core.Store) {
	create(t, s, Pod("default", "a", ""))
	p := core.Clone(getPod(t, s, "default", "a"))
	p.Metadata.Labels = map[string]string{"k": "v"}
	p.Metadata.DeletionTimestamp = core.NewTime(time.Now())
	update(t, s, func(tx core.Tx) error { return tx.Put(p) })
	got := getPod(t, s, "default", "a")
	if got.Metadata.Generation != 1 || got.Metadata.Labels["k"] != "v" || got.Metadata.DeletionTimestamp == nil {
		t.Fatalf("metadata change: %+v", got.Metadata)
	}
}

func testPutNoSpec(t *testing.T, s core.Store) {
	ns := &core.Namespace{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindNamespace}, Metadata: core.ObjectMeta{Name: "x"}}
	create(t, s, ns)
	next := core.Clone(ns)
	next.Status.Phase = "Terminating"
	update(t, s, func(tx core.Tx) error { return tx.Put(next) })
	got := get(t, s, core.Key{Kind: core.KindNamespace, Name: "x"})
	if got.GetMeta().Generation != 1 || got.(*core.Namespace).Status.Phase != "Terminating" {
		t.Fatalf("namespace after put: %+v", got)
	}
}

func testPutBlind(t *testing.T, s core.Store) {
	create(t, s, Pod("default", "a", ""))
	fresh := core.Clone(getPod(t, s, "default", "a"))
	fresh.Status.Phase = core.PodRunning
	update(t, s, func(tx core.Tx) error { return tx.Put(fresh) })
	blind := Pod("default", "a", "") // no resourceVersion: last writer wins
	blind.Status.Phase = core.PodFailed
	update(t, s, func(tx core.Tx) error { return tx.Put(blind) })
	if got := getPod(t, s, "default", "a"); got.Status.Phase != core.PodFailed || got.Metadata.UID != fresh.Metadata.UID {
		t.Fatalf("blind write: %+v", got)
	}
}

func testPutConflict(t *testing.T, s core.Store) {
	create(t, s, Pod("default", "a", ""))
	o := getPod(t, s, "default", "a")
	stale, fresh := core.Clone(o), core.Clone(o)
	fresh.Status.Phase = core.PodRunning
	update(t, s, func(tx core.Tx) error { return tx.Put(fresh) })
	stale.Spec.Containers[0].Image = "other"
	err := s.Update(ctx, func(tx core.Tx) error { return tx.Put(stale) })
	wantCode(t, "stale put", err, core.ECONFLICT)
	got := getPod(t, s, "default", "a")
	if got.Spec.Containers[0].Image != "busybox" || got.Status.Phase != core.PodRunning {
		t.Fatal("the stale write was stored")
	}
	// The same, read outside and written inside a later transaction.
	outside := core.Clone(got)
	update(t, s, func(tx core.Tx) error {
		p := core.Clone(got)
		p.Metadata.Labels = map[string]string{"by": "other"}
		return tx.Put(p)
	})
	err = s.Update(ctx, func(tx core.Tx) error { return tx.Put(outside) })
	wantCode(t, "put of an object read before another write", err, core.ECONFLICT)
}

func testPutNotFound(t *testing.T, s core.Store) {
	err := s.Update(ctx, func(tx core.Tx) error { return tx.Put(Pod("default", "nope", "")) })
	wantCode(t, "put missing", err, core.ENOTFOUND)
	create(t, s, Pod("default", "a", ""))
	err = s.Update(ctx, func(tx core.Tx) error {
		if err := tx.Delete(podKey("default", "a")); err != nil {
			return err
		}
		return tx.Put(Pod("default", "a", ""))
	})
	wantCode(t, "put after delete in one transaction", err, core.ENOTFOUND)
	getPod(t, s, "default", "a") // rolled back
}

func testPutAfterCreate(t *testing.T, s core.Store) {
	var created, put *core.Pod
	update(t, s, func(tx core.Tx) error {
		created = Pod("default", "a", "")
		if err := tx.Create(created); err != nil {
			return err
		}
		put = core.Clone(created) // carries the resourceVersion Create set
		put.Spec.Containers[0].Image = "busybox:2"
		return tx.Put(put)
	})
	got := getPod(t, s, "default", "a")
	if got.Metadata.Generation != 2 || got.Spec.Containers[0].Image != "busybox:2" || got.Metadata.UID != created.Metadata.UID {
		t.Fatalf("create then put: %+v", got.Metadata)
	}
	if rv(t, put) <= rv(t, created) || got.Metadata.ResourceVersion != put.Metadata.ResourceVersion {
		t.Fatalf("resourceVersions: create %s, put %s, stored %s", created.Metadata.ResourceVersion, put.Metadata.ResourceVersion, got.Metadata.ResourceVersion)
	}
}

func testDelete(t *testing.T, s core.Store) {
	create(t, s, Pod("default", "a", ""), Pod("default", "b", ""))
	update(t, s, func(tx core.Tx) error { return tx.Delete(podKey("default", "a")) })
	_, err := s.Get(ctx, podKey("default", "a"))
	wantCode(t, "get deleted", err, core.ENOTFOUND)
	if got := names(list(t, s, core.KindPod, "")); got != "default/b" {
		t.Fatalf("pods after delete: %q", got)
	}
	err = s.Update(ctx, func(tx core.Tx) error { return tx.Delete(podKey("default", "a")) })
	wantCode(t, "delete missing", err, core.ENOTFOUND)
	err = s.Update(ctx, func(tx core.Tx) error {
		if err := tx.Delete(podKey("default", "b")); err != nil {
			return err
		}
		return tx.Delete(podKey("default", "b"))
	})
	wantCode(t, "delete twice in one transaction", err, core.ENOTFOUND)
	getPod(t, s, "default", "b") // rolled back
}

func testListSorted(t *testing.T, s core.Store) {
	create(t, s, Pod("b", "a", ""), Pod("default", "z", ""), Pod("a", "y", ""), Pod("default", "c", ""), Pod("a", "b", ""))
	create(t, s, &core.Service{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindService}, Metadata: core.ObjectMeta{Name: "s", Namespace: "a"}})
	all := list(t, s, core.KindPod, "")
	if got, want := names(all), "a/b a/y b/a default/c default/z"; got != want {
		t.Fatalf("list = %q, want %q", got, want)
	}
	if got, want := names(list(t, s, core.KindPod, "default")), "default/c default/z"; got != want {
		t.Fatalf("list default = %q, want %q", got, want)
	}
	if got := names(list(t, s, core.KindPod, "none")); got != "" {
		t.Fatalf("list of an empty namespace = %q", got)
	}
	if got := names(list(t, s, core.KindService, "")); got != "a/s" {
		t.Fatalf("services = %q", got)
	}
	// The caller owns the slice (not the objects).
	all[0], all[1] = all[1], nil
	if got, want := names(list(t, s, core.KindPod, "")), "a/b a/y b/a default/c default/z"; got != want {
		t.Fatalf("list after changing a returned slice = %q", got)
	}
	typed, err := core.ListAs[*core.Pod](ctx, s, core.KindPod, "a")
	if err != nil || names(typed) != "a/b a/y" {
		t.Fatalf("ListAs = %q, %v", names(typed), err)
	}
}

func testTxReadsOwnWrites(t *testing.T, s core.Store) {
	create(t, s, Pod("default", "b", ""), Pod("default", "c", ""), Pod("x", "d", ""))
	update(t, s, func(tx core.Tx) error {
		if err := tx.Create(Pod("default", "a", "")); err != nil {
			return err
		}
		o, err := tx.Get(podKey("default", "b"))
		if err != nil {
			return err
		}
		b := core.Clone(o.(*core.Pod))
		b.Status.Phase = core.PodRunning
		if err := tx.Put(b); err != nil {
			return err
		}
		if err := tx.Delete(podKey("default", "c")); err != nil {
			return err
		}
		if o, err := tx.Get(podKey("default", "a")); err != nil || o.GetMeta().UID == "" {
			t.Errorf("tx get of its create: %v", err)
		}
		if o, err := tx.Get(podKey("default", "b")); err != nil || o.(*core.Pod).Status.Phase != core.PodRunning {
			t.Errorf("tx get of its put: %v", err)
		}
		if _, err := tx.Get(podKey("default", "c")); core.ErrorCode(err) != core.ENOTFOUND {
			t.Errorf("tx get of its delete: %v", err)
		}
		all, err := tx.List(core.KindPod, "")
		if err != nil {
			return err
		}
		if got, want := names(all), "default/a default/b x/d"; got != want {
			t.Errorf("tx list = %q, want %q", got, want)
		}
		for _, o := range all {
			if o.GetMeta().Name == "b" && o.(*core.Pod).Status.Phase != core.PodRunning {
				t.Error("tx list holds the old b")
			}
		}
		def, err := core.TxListAs[*core.Pod](tx, core.KindPod, "x")
		if err != nil || names(def) != "x/d" {
			t.Errorf("tx list x = %q, %v", names(def), err)
		}
		if svcs, err := tx.List(core.KindService, ""); err != nil || len(svcs) != 0 {
			t.Errorf("tx list of another kind: %d, %v", len(svcs), err)
		}
		return nil
	})
	if got, want := names(list(t, s, core.KindPod, "")), "default/a default/b x/d"; got != want {
		t.Fatalf("committed list = %q, want %q", got, want)
	}
}

// Writes are invisible outside their transaction until it commits.
func testTxIsolation(t *testing.T, s core.Store) {
	create(t, s, Pod("default", "b", ""))
	update(t, s, func(tx core.Tx) error {
		if err := tx.Create(Pod("default", "a", "")); err != nil {
			return err
		}
		if err := tx.Delete(podKey("default", "b")); err != nil {
			return err
		}
		if _, err := s.Get(ctx, podKey("default", "a")); core.ErrorCode(err) != core.ENOTFOUND {
			t.Errorf("uncommitted create visible outside: %v", err)
		}
		if got := names(list(t, s, core.KindPod, "")); got != "default/b" {
			t.Errorf("uncommitted changes visible outside: %q", got)
		}
		return nil
	})
	if got := names(list(t, s, core.KindPod, "")); got != "default/a" {
		t.Fatalf("committed: %q", got)
	}
}

var errBoom = errors.New("boom")

func testRollback(t *testing.T, s core.Store) {
	create(t, s, Pod("default", "b", ""), Pod("default", "c", ""))
	b := getPod(t, s, "default", "b")
	rev0, writes0 := revision(s), writes(s)
	ch, stop := s.Watch()
	defer stop()
	err := s.Update(ctx, func(tx core.Tx) error {
		if err := tx.Create(Pod("default", "a", "n1")); err != nil {
			return err
		}
		next := core.Clone(b)
		next.Spec.Containers[0].Image = "changed"
		if err := tx.Put(next); err != nil {
			return err
		}
		if err := tx.Delete(podKey("default", "c")); err != nil {
			return err
		}
		if _, err := tx.Get(podKey("default", "a")); err != nil {
			t.Errorf("tx does not see its own write: %v", err)
		}
		return errBoom
	})
	if err != errBoom {
		t.Fatalf("err = %v, want fn's error unchanged", err)
	}
	if got := names(list(t, s, core.KindPod, "")); got != "default/b default/c" {
		t.Fatalf("after rollback: %q", got)
	}
	if got := getPod(t, s, "default", "b"); got.Metadata.ResourceVersion != b.Metadata.ResourceVersion || got.Spec.Containers[0].Image != "busybox" {
		t.Fatal("a rolled back put is visible")
	}
	if pods := podsOnNode(t, s, "n1"); len(pods) != 0 {
		t.Fatalf("a rolled back create is indexed on its node: %q", names(pods))
	}
	if revision(s) != rev0 || writes(s) != writes0 {
		t.Fatalf("revision %d -> %d, writes %d -> %d for a rollback", rev0, revision(s), writes0, writes(s))
	}
	k := sentinel(t, s, "after")
	wantEvent(t, ch, core.Added, k) // nothing came before it
	// A coded error is returned unchanged too.
	err = s.Update(ctx, func(tx core.Tx) error { return core.Errorf(core.EINVALID, "no") })
	if core.ErrorCode(err) != core.EINVALID || core.ErrorMessage(err) != "no" {
		t.Fatalf("err = %v", err)
	}
}

// A write that fails inside fn changes nothing, even when fn goes on.
func testFailedWriteIgnored(t *testing.T, s core.Store) {
	existing := Pod("default", "a", "")
	create(t, s, existing)
	update(t, s, func(tx core.Tx) error {
		if err := tx.Create(Pod("default", "a", "n1")); core.ErrorCode(err) != core.ECONFLICT {
			t.Errorf("create existing: %v", err)
		}
		stale := Pod("default", "a", "n2")
		stale.Metadata.ResourceVersion = "1000000"
		if err := tx.Put(stale); core.ErrorCode(err) != core.ECONFLICT {
			t.Errorf("stale put: %v", err)
		}
		return tx.Create(Pod("default", "b", ""))
	})
	got := getPod(t, s, "default", "a")
	if got.Metadata.UID != existing.Metadata.UID || got.Spec.NodeName != "" || got.Metadata.ResourceVersion != existing.Metadata.ResourceVersion {
		t.Fatalf("failed writes changed the object: %+v", got.Metadata)
	}
	getPod(t, s, "default", "b")
}

func testCancelled(t *testing.T, s core.Store) {
	c, cancel := context.WithCancel(ctx)
	cancel()
	err := s.Update(c, func(tx core.Tx) error { return tx.Create(Pod("default", "a", "")) })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := s.Get(ctx, podKey("default", "a")); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("written despite the cancelled context: %v", err)
	}
}

func revision(s core.Store) int64 {
	if r, ok := s.(Reviser); ok {
		return r.Revision()
	}
	return 0
}

func writes(s core.Store) int64 {
	if w, ok := s.(WriteCounter); ok {
		return w.Writes()
	}
	return 0
}

// An Update that writes nothing commits nothing: no revision, no write.
func testNoOp(t *testing.T, s core.Store) {
	create(t, s, Pod("default", "a", "n1"))
	rev0, w0 := revision(s), writes(s)
	for i := 0; i < 3; i++ {
		update(t, s, func(tx core.Tx) error {
			if _, err := tx.List(core.KindPod, ""); err != nil {
				return err
			}
			if _, err := tx.PodsOnNode("n1"); err != nil {
				return err
			}
			_, err := tx.Get(podKey("default", "a"))
			return err
		})
	}
	if revision(s) != rev0 || writes(s) != w0 {
		t.Fatalf("revision %d -> %d, writes %d -> %d for read-only updates", rev0, revision(s), w0, writes(s))
	}
	if _, ok := s.(WriteCounter); ok {
		create(t, s, Pod("default", "b", ""), Pod("default", "c", ""))
		if writes(s) != w0+1 {
			t.Fatalf("writes %d -> %d for one transaction", w0, writes(s))
		}
	}
}

func testRevision(t *testing.T, s core.Store) {
	_, hasRev := s.(Reviser)
	r0 := revision(s)
	a, b := Pod("default", "a", ""), Pod("default", "b", "")
	create(t, s, a, b)
	if rv(t, a) >= rv(t, b) {
		t.Fatalf("writes in one transaction: resourceVersion %s then %s", a.Metadata.ResourceVersion, b.Metadata.ResourceVersion)
	}
	r1 := revision(s)
	if hasRev && (r1 <= r0 || r1 < rv(t, b) || rv(t, a) <= r0) {
		t.Fatalf("revision %d -> %d around writes at %d and %d", r0, r1, rv(t, a), rv(t, b))
	}
	next := core.Clone(a)
	next.Status.Phase = core.PodRunning
	update(t, s, func(tx core.Tx) error { return tx.Put(next) })
	if rv(t, next) <= rv(t, b) || (hasRev && revision(s) < rv(t, next)) {
		t.Fatalf("put at %s after %s, revision %d", next.Metadata.ResourceVersion, b.Metadata.ResourceVersion, revision(s))
	}
	r2 := revision(s)
	update(t, s, func(tx core.Tx) error { return tx.Delete(podKey("default", "b")) })
	if hasRev && revision(s) <= r2 {
		t.Fatalf("revision %d -> %d for a delete", r2, revision(s))
	}
	c := Pod("default", "c", "")
	create(t, s, c)
	if rv(t, c) <= r2 || rv(t, c) <= rv(t, next) {
		t.Fatalf("resourceVersion %s after a delete at revision > %d", c.Metadata.ResourceVersion, r2)
	}
}

func testWatchEvents(t *testing.T, s core.Store) {
	ch, stop := s.Watch()
	defer stop()
	k := podKey("default", "a")
	create(t, s, Pod("default", "a", ""))
	ev := wantEvent(t, ch, core.Added, k)
	stored := get(t, s, k)
	if ev.Object.GetMeta().ResourceVersion != stored.GetMeta().ResourceVersion || ev.Object.GetMeta().UID != stored.GetMeta().UID {
		t.Fatalf("added event %+v, stored %+v", ev.Object.GetMeta(), stored.GetMeta())
	}
	next := core.Clone(stored.(*core.Pod))
	next.Status.Phase = core.PodRunning
	update(t, s, func(tx core.Tx) error { return tx.Put(next) })
	ev = wantEvent(t, ch, core.Modified, k)
	if ev.Object.(*core.Pod).Status.Phase != core.PodRunning || ev.Object.GetMeta().ResourceVersion != next.Metadata.ResourceVersion {
		t.Fatalf("modified event %+v", ev.Object)
	}
	update(t, s, func(tx core.Tx) error { return tx.Delete(k) })
	ev = wantEvent(t, ch, core.Deleted, k)
	if ev.Object.(*core.Pod).Status.Phase != core.PodRunning || ev.Object.GetMeta().UID != stored.GetMeta().UID {
		t.Fatalf("deleted event carries %+v, want the last state", ev.Object)
	}
	// One transaction's events come in the order of its writes.
	update(t, s, func(tx core.Tx) error {
		for _, n := range []string{"z", "b", "y"} {
			if err := tx.Create(Pod("default", n, "")); err != nil {
				return err
			}
		}
		if err := tx.Delete(podKey("default", "b")); err != nil {
			return err
		}
		p := Pod("default", "z", "n1")
		return tx.Put(p)
	})
	for _, want := range []struct {
		typ  core.EventType
		name string
	}{{core.Added, "z"}, {core.Added, "b"}, {core.Added, "y"}, {core.Deleted, "b"}, {core.Modified, "z"}} {
		wantEvent(t, ch, want.typ, podKey("default", want.name))
	}
}

func testWatchAfterCall(t *testing.T, s core.Store) {
	create(t, s, Pod("default", "before", ""))
	ch, stop := s.Watch()
	defer stop()
	wantEvent(t, ch, core.Added, sentinel(t, s, "after"))
}

// Events are delivered once their transaction has committed, not before.
func testWatchAfterCommit(t *testing.T, s core.Store) {
	ch, stop := s.Watch()
	defer stop()
	update(t, s, func(tx core.Tx) error {
		if err := tx.Create(Pod("default", "a", "")); err != nil {
			return err
		}
		select {
		case ev := <-ch:
			t.Errorf("event %s %s delivered before commit", ev.Type, core.KeyOf(ev.Object))
		default:
		}
		return nil
	})
	ev := wantEvent(t, ch, core.Added, podKey("default", "a"))
	if _, err := s.Get(ctx, core.KeyOf(ev.Object)); err != nil {
		t.Fatalf("the object of a delivered event is not readable: %v", err)
	}
}

// Read-only, failed and rolled back updates produce no events.
func testWatchNoChange(t *testing.T, s core.Store) {
	create(t, s, Pod("default", "a", ""))
	ch, stop := s.Watch()
	defer stop()
	update(t, s, func(tx core.Tx) error { _, err := tx.List(core.KindPod, ""); return err })
	s.Update(ctx, func(tx core.Tx) error { return tx.Create(Pod("default", "a", "")) }) // conflict
	s.Update(ctx, func(tx core.Tx) error {
		if err := tx.Delete(podKey("default", "a")); err != nil {
			return err
		}
		return errBoom
	})
	wantEvent(t, ch, core.Added, sentinel(t, s, "sentinel"))
}

func testWatchStop(t *testing.T, s core.Store) {
	ch, stop := s.Watch()
	create(t, s, Pod("default", "a", ""))
	stop()
	stop() // idempotent
	// What was delivered before stop may still be read; then it is closed.
	deadline := time.After(wait)
	for closed := false; !closed; {
		select {
		case _, ok := <-ch:
			closed = !ok
		case <-deadline:
			t.Fatal("channel not closed by stop")
		}
	}
	create(t, s, Pod("default", "b", "")) // no panic on a stopped watch
}

func testWatchMany(t *testing.T, s core.Store) {
	ch1, stop1 := s.Watch()
	defer stop1()
	ch2, stop2 := s.Watch()
	k := sentinel(t, s, "a")
	wantEvent(t, ch1, core.Added, k)
	wantEvent(t, ch2, core.Added, k)
	stop2()
	k = sentinel(t, s, "b") // a stopped watcher does not hold back the others
	wantEvent(t, ch1, core.Added, k)
}

// A watcher that falls too far behind has its channel closed, without
// holding back writers; a new watch works.
func testWatchOverflow(t *testing.T, s core.Store) {
	slow, stopSlow := s.Watch()
	defer stopSlow()
	const events = 5000 // beyond sqlite.DB's and MemoryStore's 4096
	update(t, s, func(tx core.Tx) error {
		p := Pod("default", "a", "")
		if err := tx.Create(p); err != nil {
			return err
		}
		for i := 1; i < events; i++ {
			next := *p
			next.Status.Message = strconv.Itoa(i)
			p = &next
			if err := tx.Put(p); err != nil {
				return err
			}
		}
		return nil
	})
	n := 0
	deadline := time.After(wait)
	for closed := false; !closed; {
		select {
		case _, ok := <-slow:
			if ok {
				n++
			}
			closed = !ok
		case <-deadline:
			t.Fatalf("a watcher %d events behind was not closed (read %d)", events, n)
		}
	}
	if n >= events {
		t.Fatalf("read %d of %d events before the close", n, events)
	}
	stopSlow() // no panic after the store closed it
	ch, stop := s.Watch()
	defer stop()
	wantEvent(t, ch, core.Added, sentinel(t, s, "again"))
}

func podsOnNode(t *testing.T, s core.Store, node string) []*core.Pod {
	t.Helper()
	var out []*core.Pod
	update(t, s, func(tx core.Tx) error {
		var err error
		out, err = tx.PodsOnNode(node)
		return err
	})
	return out
}

func testPodsOnNode(t *testing.T, s core.Store) {
	create(t, s, Pod("b", "p1", "n1"), Pod("a", "p2", "n1"), Pod("default", "p0", "n1"), Pod("default", "p3", "n2"), Pod("default", "p4", ""))
	if got, want := names(podsOnNode(t, s, "n1")), "a/p2 b/p1 default/p0"; got != want {
		t.Fatalf("pods on n1 = %q, want %q", got, want)
	}
	if got := names(podsOnNode(t, s, "")); got != "" {
		t.Fatalf("unbound pods are on no node, got %q", got)
	}
	if got := names(podsOnNode(t, s, "n9")); got != "" {
		t.Fatalf("pods on an unknown node = %q", got)
	}
	moved := core.Clone(getPod(t, s, "b", "p1"))
	moved.Spec.NodeName = "n2"
	bound := core.Clone(getPod(t, s, "default", "p4"))
	bound.Spec.NodeName = "n1"
	update(t, s, func(tx core.Tx) error {
		if err := tx.Put(moved); err != nil {
			return err
		}
		if err := tx.Put(bound); err != nil {
			return err
		}
		return tx.Delete(podKey("a", "p2"))
	})
	if got, want := names(podsOnNode(t, s, "n1")), "default/p0 default/p4"; got != want {
		t.Fatalf("pods on n1 after changes = %q, want %q", got, want)
	}
	if got, want := names(podsOnNode(t, s, "n2")), "b/p1 default/p3"; got != want {
		t.Fatalf("pods on n2 after changes = %q, want %q", got, want)
	}
	if p := podsOnNode(t, s, "n2")[0]; p.Metadata.ResourceVersion != moved.Metadata.ResourceVersion {
		t.Fatal("PodsOnNode returns a stale pod")
	}
}

func testPodsOnNodeTx(t *testing.T, s core.Store) {
	create(t, s, Pod("default", "a", "n1"), Pod("default", "b", "n1"), Pod("default", "c", "n2"))
	err := s.Update(ctx, func(tx core.Tx) error {
		if err := tx.Create(Pod("default", "0", "n1")); err != nil {
			return err
		}
		if err := tx.Delete(podKey("default", "a")); err != nil {
			return err
		}
		c := Pod("default", "c", "n1")
		if err := tx.Put(c); err != nil {
			return err
		}
		b := Pod("default", "b", "n2")
		b.Status.Phase = core.PodRunning
		if err := tx.Put(b); err != nil {
			return err
		}
		pods, err := tx.PodsOnNode("n1")
		if err != nil {
			return err
		}
		if got, want := names(pods), "default/0 default/c"; got != want {
			t.Errorf("tx pods on n1 = %q, want %q", got, want)
		}
		pods, _ = tx.PodsOnNode("n2")
		if names(pods) != "default/b" || pods[0].Status.Phase != core.PodRunning {
			t.Errorf("tx pods on n2 = %q", names(pods))
		}
		return errBoom
	})
	if err != errBoom {
		t.Fatal(err)
	}
	if got := names(podsOnNode(t, s, "n1")); got != "default/a default/b" {
		t.Fatalf("pods on n1 after a rollback = %q", got)
	}
}

// Concurrent transactions are serialised: no lost update, no race (run
// with -race), readers and watchers alongside.
func testConcurrent(t *testing.T, s core.Store) {
	create(t, s, Pod("default", "counter", ""))
	const writers, each = 4, 25
	ch, stop := s.Watch()
	var wg sync.WaitGroup
	errs := make(chan error, writers+2)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				err := s.Update(ctx, func(tx core.Tx) error {
					o, err := tx.Get(podKey("default", "counter"))
					if err != nil {
						return err
					}
					p := core.Clone(o.(*core.Pod))
					n, _ := strconv.Atoi(p.Metadata.Annotations["n"])
					p.Metadata.Annotations = map[string]string{"n": strconv.Itoa(n + 1)}
					if err := tx.Put(p); err != nil {
						return err
					}
					return tx.Create(Pod("default", fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("n%d", w)))
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	done := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := s.List(ctx, core.KindPod, ""); err != nil {
				errs <- err
				return
			}
			if _, err := s.Get(ctx, podKey("default", "counter")); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		defer readers.Done()
		for {
			select {
			case <-done:
				return
			case _, ok := <-ch:
				if !ok {
					return
				}
			}
		}
	}()
	wg.Wait()
	close(done)
	readers.Wait()
	stop()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	p := getPod(t, s, "default", "counter")
	if p.Metadata.Annotations["n"] != strconv.Itoa(writers*each) {
		t.Fatalf("counter = %s, want %d: lost updates", p.Metadata.Annotations["n"], writers*each)
	}
	if n := len(list(t, s, core.KindPod, "")); n != writers*each+1 {
		t.Fatalf("%d pods, want %d", n, writers*each+1)
	}
	for w := 0; w < writers; w++ {
		if n := len(podsOnNode(t, s, fmt.Sprintf("n%d", w))); n != each {
			t.Fatalf("%d pods on n%d, want %d", n, w, each)
		}
	}
}

func testListRaw(t *testing.T, s core.Store) {
	rl, ok := s.(core.RawLister)
	if !ok {
		t.Skip("not a core.RawLister")
	}
	p := Pod("default", "b", "n1")
	p.Metadata.Labels = map[string]string{"k": "v"}
	create(t, s, p, Pod("default", "a", ""), Pod("x", "c", ""))
	next := core.Clone(p)
	next.Status.Phase = core.PodRunning
	update(t, s, func(tx core.Tx) error { return tx.Put(next) })
	objs, raws, err := rl.ListRaw(ctx, core.KindPod, "default")
	if err != nil {
		t.Fatal(err)
	}
	if names(objs) != "default/a default/b" || len(raws) != len(objs) {
		t.Fatalf("ListRaw = %q with %d raws", names(objs), len(raws))
	}
	for i, o := range objs {
		want, _ := json.Marshal(o)
		d, err := core.DecodeObject(core.KindPod, raws[i])
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := json.Marshal(d); string(got) != string(want) {
			t.Fatalf("raw of %s:\n%s\nobject:\n%s", o.GetMeta().Name, got, want)
		}
	}
	if _, _, err := rl.ListRaw(ctx, "Bogus", ""); core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("ListRaw of an unknown kind: %v", err)
	}
}

func event(ns, name, uid string) *core.EventObj {
	return &core.EventObj{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindEvent},
		Metadata:       core.ObjectMeta{Namespace: ns, Name: name},
		InvolvedObject: core.ObjectReference{Kind: core.KindPod, Namespace: ns, Name: "p", UID: uid}}
}

func eventNames(es []*core.EventObj) string {
	var out []string
	for _, e := range es {
		out = append(out, e.Metadata.Namespace+"/"+e.Metadata.Name)
	}
	return strings.Join(out, " ")
}

func testEventsAbout(t *testing.T, s core.Store) {
	create(t, s, event("default", "e2", "u1"), event("default", "e1", "u1"), event("default", "e3", "u2"))
	about := func(uid string) (got string) {
		update(t, s, func(tx core.Tx) error {
			es, err := tx.EventsAbout(uid)
			got = eventNames(es)
			return err
		})
		return got
	}
	if got, want := about("u1"), "default/e1 default/e2"; got != want {
		t.Fatalf("EventsAbout(u1) = %q, want %q", got, want)
	}
	if got := about("nobody"); got != "" {
		t.Fatalf("EventsAbout(nobody) = %q", got)
	}
	err := s.Update(ctx, func(tx core.Tx) error {
		if err := tx.Delete(core.Key{Kind: core.KindEvent, Namespace: "default", Name: "e1"}); err != nil {
			return err
		}
		if err := tx.Create(event("default", "e0", "u1")); err != nil {
			return err
		}
		es, err := tx.EventsAbout("u1")
		if err != nil {
			return err
		}
		if got, want := eventNames(es), "default/e0 default/e2"; got != want {
			return fmt.Errorf("EventsAbout(u1) in the transaction = %q, want %q", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := about("u1"), "default/e0 default/e2"; got != want {
		t.Fatalf("EventsAbout(u1) after commit = %q, want %q", got, want)
	}
}
