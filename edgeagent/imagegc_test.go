package edgeagent

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// The node's image GC through the runtime seam: under budget it removes
// the least recently used images no one needs, and never one a container
// or a pod (init containers too) uses, one the master pinned or asks to
// prefetch, or one stored recently; and it waits while the master is away
// and a pod waits for an image.
func TestImageGC(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	part := func(k string, n int64) core.ImagePart { return core.ImagePart{Key: k, Size: n} }
	add := func(ref string, parts ...core.ImagePart) {
		rt.addImage(ref)
		rt.setParts(ref, parts...)
		clk.Advance(time.Hour)
	}
	// Oldest first; "base" is a layer three images share.
	add("registry.lan/init:1", part("base", 40), part("i", 10)) // a pod's init container
	add("registry.lan/pinned:1", part("p", 30))                 // imported on the master
	add("registry.lan/old:1", part("base", 40), part("o", 30))
	add("registry.lan/running:1", part("r", 30)) // a container (not a pod's) runs it
	add("registry.lan/older:2", part("base", 40), part("x", 20))
	add("registry.lan/prefetch:3", part("f", 30)) // a rollout's next image
	add("registry.lan/byid@sha256:"+hex64("b"), part("b", 30))
	rt.addImage("registry.lan/fresh:1") // pulled 5 minutes ago, in no pod yet
	rt.setParts("registry.lan/fresh:1", part("n", 30))
	clk.Advance(5 * time.Minute)
	if err := rt.CreateContainer(ctx, &core.ContainerConfig{ID: "other", Image: "registry.lan/running:1"}); err != nil {
		t.Fatal(err)
	}
	a := newTestAgent(t, rt, clk, t.TempDir())
	a.ImageCacheSize = 200
	if err := a.init(); err != nil {
		t.Fatal(err)
	}
	pod := testPod("web", core.Container{Name: "app", Image: "registry.lan/byid@sha256:" + hex64("b")})
	pod.Spec.InitContainers = []core.Container{{Name: "setup", Image: "registry.lan/init:1"}}
	waiting := testPod("wait", core.Container{Name: "app", Image: "registry.lan/missing:1"})
	a.desired = &core.DesiredState{Node: "pi", Pods: []*core.Pod{pod, waiting},
		Prefetch: []string{"registry.lan/prefetch:3"}, Pinned: []string{"registry.lan/pinned:1"}}

	// Total: base 40 + i 10 + p 30 + o 30 + r 30 + x 20 + f 30 + b 30 + n 30 = 250.
	// The master is away and pod wait's image is missing: nothing goes.
	res, err := a.collectImages(ctx)
	if !errors.Is(err, errImageGCWaits) || len(rt.removedImages()) != 0 {
		t.Fatalf("link down, a pod waiting: %+v %v, removed %v", res, err, rt.removedImages())
	}
	online := true
	a.Online = func() bool { return online }
	res, err = a.collectImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// old:1 first (frees o: 220), then older:2 (frees x: 200, base stays
	// for init:1).
	want := []string{"registry.lan/old:1", "registry.lan/older:2"}
	if !slices.Equal(res.Removed, want) || !slices.Equal(rt.removedImages(), want) || res.Before != 250 || res.After != 200 || res.Over {
		t.Fatalf("removed %v (runtime: %v), %d -> %d over %v; want %v, 250 -> 200", res.Removed, rt.removedImages(), res.Before, res.After, res.Over, want)
	}
	// A smaller budget: everything left is kept (the fresh image only
	// while it is recent).
	a.ImageCacheSize = 50
	res, err = a.collectImages(ctx)
	if err != nil || len(res.Removed) != 0 || !res.Over {
		t.Fatalf("all kept: %+v %v", res, err)
	}
	clk.Advance(time.Hour)
	res, err = a.collectImages(ctx)
	if err != nil || !slices.Equal(res.Removed, []string{"registry.lan/fresh:1"}) || !res.Over {
		t.Fatalf("fresh:1 is no longer recent: %+v %v", res, err)
	}
	// The pod leaves, the prefetch is done, the pin removed: they go too,
	// but not the image a container runs.
	a.desired = &core.DesiredState{Node: "pi"}
	res, err = a.collectImages(ctx)
	if err != nil || !slices.Equal(res.Removed, []string{"registry.lan/init:1", "registry.lan/pinned:1", "registry.lan/prefetch:3", "registry.lan/byid@sha256:" + hex64("b")}) || res.After != 30 {
		t.Fatalf("nothing needed but the running image: %+v %v", res, err)
	}
	if _, err := rt.Image(ctx, "registry.lan/running:1"); err != nil {
		t.Fatal(err)
	}
	// Unbounded: nothing to do.
	a.ImageCacheSize = 0
	if res, err := a.collectImages(ctx); err != nil || len(res.Removed) != 0 {
		t.Fatalf("unbounded: %+v %v", res, err)
	}
}

func hex64(s string) string {
	out := []byte{}
	for len(out) < 64 {
		out = append(out, s...)
	}
	return string(out[:64])
}

// An image whose removal fails is kept, and the collection goes on with
// the next least recently used ones until the rest fits: one image
// containerd refuses to remove does not stop every run at the same place.
func TestImageGCRemoveFails(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	for _, ref := range []string{"registry.lan/a:1", "registry.lan/b:1", "registry.lan/c:1", "registry.lan/d:1"} {
		rt.addImage(ref)
		rt.setParts(ref, core.ImagePart{Key: ref, Size: 10})
		clk.Advance(time.Hour)
	}
	rt.removeErr = map[string]error{"registry.lan/a:1": errors.New("boom")}
	a := newTestAgent(t, rt, clk, t.TempDir())
	a.ImageCacheSize = 20
	a.Online = func() bool { return true }
	if err := a.init(); err != nil {
		t.Fatal(err)
	}
	a.desired = &core.DesiredState{Node: "pi"}
	res, err := a.collectImages(ctx)
	if err == nil || !strings.Contains(err.Error(), "registry.lan/a:1") {
		t.Fatalf("the failed removal is not reported: %v", err)
	}
	// a:1 stays (10), b:1 and c:1 go, d:1 fits the budget with it.
	want := []string{"registry.lan/b:1", "registry.lan/c:1"}
	if !slices.Equal(res.Removed, want) || !slices.Equal(rt.removedImages(), want) || res.After != 20 || res.Over {
		t.Fatalf("removed %v (runtime: %v), left %d over %v; want %v, 20", res.Removed, rt.removedImages(), res.After, res.Over, want)
	}
}
