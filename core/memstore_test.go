package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/storetest"
)

// The memory store passes the same conformance suite as sqlite.DB.
func TestMemoryStore_Conformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) core.Store {
		s := core.NewMemoryStore()
		t.Cleanup(func() {
			if err := s.Verify(); err != nil {
				t.Error(err)
			}
			s.Close()
		})
		return s
	})
}

func newPodObj(name, node string) *core.Pod {
	o, _ := core.NewObject(core.KindPod)
	p := o.(*core.Pod)
	p.Metadata.Namespace, p.Metadata.Name = core.DefaultNamespace, name
	p.Spec.NodeName = node
	return p
}

// A commit whose Persist fails changes nothing: not the objects, not the
// indexes, not the revision, and no watcher hears of it.
func TestMemoryStore_PersistFailureChangesNothing(t *testing.T) {
	ctx := context.Background()
	fail := false
	var persisted []core.Commit
	s := &core.MemoryStore{Persist: func(ctx context.Context, c core.Commit) error {
		if fail {
			return errors.New("disk full")
		}
		persisted = append(persisted, c)
		return nil
	}}
	if err := s.Load(0, nil, nil); err != nil {
		t.Fatal(err)
	}
	if len(persisted) != 1 || persisted[0].Objects[core.Key{Kind: core.KindNamespace, Name: core.DefaultNamespace}] == nil {
		t.Fatalf("the default namespace was not persisted on Load: %+v", persisted)
	}
	if err := s.Update(ctx, func(tx core.Tx) error { return tx.Create(newPodObj("a", "n1")) }); err != nil {
		t.Fatal(err)
	}
	c := persisted[len(persisted)-1]
	key := core.Key{Kind: core.KindPod, Namespace: core.DefaultNamespace, Name: "a"}
	if c.Rev != s.Revision() || c.Objects[key] == nil || len(c.Raw[key]) == 0 {
		t.Fatalf("commit handed to Persist: %+v (revision %d)", c, s.Revision())
	}
	events, stop := s.Watch()
	defer stop()
	rev, writes := s.Revision(), s.Writes()

	fail = true
	err := s.Update(ctx, func(tx core.Tx) error {
		if err := tx.Delete(key); err != nil {
			return err
		}
		return tx.Create(newPodObj("b", "n1"))
	})
	if err == nil || err.Error() != "disk full" {
		t.Fatalf("Update = %v, want the Persist error", err)
	}
	if s.Revision() != rev || s.Writes() != writes {
		t.Fatalf("revision %d writes %d, want %d %d", s.Revision(), s.Writes(), rev, writes)
	}
	if _, err := s.Get(ctx, key); err != nil {
		t.Fatalf("pod a after the failed commit: %v", err)
	}
	err = s.Update(ctx, func(tx core.Tx) error {
		pods, err := tx.PodsOnNode("n1")
		if len(pods) != 1 || pods[0].Metadata.Name != "a" {
			t.Errorf("pods on n1 after the failed commit: %v", pods)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		t.Fatalf("watcher heard of a failed commit: %+v", ev)
	default:
	}
}

// Load serves what it was given, indexes included, and refuses a store
// already in use.
func TestMemoryStore_Load(t *testing.T) {
	ctx := context.Background()
	p := newPodObj("a", "n1")
	p.Metadata.ResourceVersion = "7"
	raw, _ := json.Marshal(p)
	s := &core.MemoryStore{}
	if err := s.Load(7, []core.Object{p}, [][]byte{raw}); err != nil {
		t.Fatal(err)
	}
	if s.Revision() != 8 { // the default namespace was created at 8
		t.Fatalf("revision %d, want 8", s.Revision())
	}
	objs, raws, err := s.ListRaw(ctx, core.KindPod, "")
	if err != nil || len(objs) != 1 || string(raws[0]) != string(raw) {
		t.Fatalf("ListRaw = %v %q %v", objs, raws, err)
	}
	err = s.Update(ctx, func(tx core.Tx) error {
		pods, err := tx.PodsOnNode("n1")
		if len(pods) != 1 {
			t.Errorf("pods on n1: %v", pods)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Load(0, nil, nil); err == nil {
		t.Fatal("Load on a store in use succeeded")
	}
	if err := (&core.MemoryStore{}).Load(0, []core.Object{p}, nil); err == nil {
		t.Fatal("Load with objects but no encodings succeeded")
	}
}
