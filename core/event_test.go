package core_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

func eventPod(name, node string) *core.Pod {
	return &core.Pod{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindPod}, Metadata: core.ObjectMeta{Name: name, Namespace: "default"},
		Spec: core.PodSpec{NodeName: node, Containers: []core.Container{{Name: "c", Image: "demo:1"}}}}
}

func podEvent(p *core.Pod, id uint64) core.PodEvent {
	return core.PodEvent{ID: id, Time: core.NewTime(t0.Add(time.Duration(id) * time.Second)), Namespace: p.Metadata.Namespace,
		Pod: p.Metadata.Name, UID: p.Metadata.UID, Type: core.EventNormal, Reason: "Started", Message: fmt.Sprint(id)}
}

// storedEvents returns "pod:message" of every stored event, oldest first per pod.
func storedEvents(t *testing.T, s core.Store) string {
	t.Helper()
	events, err := core.ListAs[*core.EventObj](ctx, s, core.KindEvent, "")
	if err != nil {
		t.Fatal(err)
	}
	byPod := map[string][]*core.EventObj{}
	var pods []string
	for _, e := range events {
		if byPod[e.InvolvedObject.UID] == nil {
			pods = append(pods, e.InvolvedObject.UID)
		}
		byPod[e.InvolvedObject.UID] = append(byPod[e.InvolvedObject.UID], e)
	}
	var out []string
	for _, uid := range pods {
		for _, e := range core.EventsFor(events, uid) {
			out = append(out, e.InvolvedObject.Name+":"+e.Message)
		}
	}
	return strings.Join(out, " ")
}

func TestStoreEvents(t *testing.T) {
	s := newStore(t)
	a, b, other := eventPod("a", "n1"), eventPod("b", "n1"), eventPod("other", "n2")
	if err := s.Update(ctx, func(tx core.Tx) error {
		for _, p := range []*core.Pod{a, b, other} {
			if err := tx.Create(p); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	store := func(node string, events ...core.PodEvent) {
		t.Helper()
		if err := s.Update(ctx, func(tx core.Tx) error { return core.StoreEvents(tx, node, events, t0) }); err != nil {
			t.Fatal(err)
		}
	}
	stale := podEvent(a, 9)
	stale.UID = "an-older-a"
	gone := podEvent(a, 10)
	gone.Pod = "gone"
	store("n1", podEvent(a, 1), podEvent(a, 2), podEvent(a, 2), podEvent(b, 3), stale, gone, podEvent(other, 4))
	if got, want := storedEvents(t, s), "a:1 a:2 b:3"; got != want {
		t.Fatalf("events %q, want %q (a repeat, a stale uid, a missing pod and another node's pod dropped)", got, want)
	}
	w := s.Writes()
	store("n1", podEvent(a, 1), podEvent(a, 2)) // delivered again
	if s.Writes() != w {
		t.Fatal("repeated events were written again")
	}
	// At most MaxEventsPerPod per pod; the oldest go, other pods keep theirs.
	var many []core.PodEvent
	for i := 100; i < 100+core.MaxEventsPerPod; i++ {
		many = append(many, podEvent(a, uint64(i)))
	}
	store("n1", many...)
	got := storedEvents(t, s)
	if n := strings.Count(got, "a:"); n != core.MaxEventsPerPod || strings.Contains(got, "a:1 ") || strings.Contains(got, "a:2 ") ||
		!strings.Contains(got, "a:100 ") || !strings.Contains(got, fmt.Sprintf("a:%d", 100+core.MaxEventsPerPod-1)) || !strings.Contains(got, "b:3") {
		t.Fatalf("after trimming: %q", got)
	}
}

func TestGCEvents(t *testing.T) {
	s := newStore(t)
	live, dead := eventPod("live", "n1"), eventPod("dead", "n1")
	nodeEvent := &core.EventObj{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindEvent},
		Metadata:       core.ObjectMeta{Name: "n1.boot", Namespace: "default"},
		InvolvedObject: core.ObjectReference{Kind: core.KindNode, Name: "n1", UID: "node-uid"}}
	err := s.Update(ctx, func(tx core.Tx) error {
		for _, p := range []*core.Pod{live, dead} {
			if err := tx.Create(p); err != nil {
				return err
			}
		}
		if err := tx.Create(nodeEvent); err != nil {
			return err
		}
		return core.StoreEvents(tx, "n1", []core.PodEvent{podEvent(live, 1), podEvent(dead, 2)}, t0)
	})
	if err != nil {
		t.Fatal(err)
	}
	w := s.Writes()
	if err := s.Update(ctx, core.GCEvents); err != nil {
		t.Fatal(err)
	}
	if s.Writes() != w {
		t.Fatal("GCEvents wrote while every pod is alive")
	}
	// The pod goes, and one of the same name comes: the old events go.
	err = s.Update(ctx, func(tx core.Tx) error {
		if err := tx.Delete(core.KeyOf(dead)); err != nil {
			return err
		}
		return tx.Create(eventPod("dead", "n1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, core.GCEvents); err != nil {
		t.Fatal(err)
	}
	if got := storedEvents(t, s); got != "live:1 n1:" {
		t.Fatalf("events %q, want live's and the node's", got)
	}
}

func TestEventsFor_Order(t *testing.T) {
	ev := func(name string, at int) *core.EventObj {
		return &core.EventObj{Metadata: core.ObjectMeta{Name: name}, InvolvedObject: core.ObjectReference{UID: "u"},
			LastTimestamp: core.NewTime(t0.Add(time.Duration(at) * time.Second))}
	}
	other := ev("other", 0)
	other.InvolvedObject.UID = "x"
	got := core.EventsFor([]*core.EventObj{ev("c", 2), ev("b", 1), other, ev("a", 2), ev("d", 0)}, "u")
	var names []string
	for _, e := range got {
		names = append(names, e.Metadata.Name)
	}
	if strings.Join(names, " ") != "d b a c" {
		t.Fatalf("order %v, want by time then name", names)
	}
}
