package edgeagent

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/images"
)

// Image GC on a real containerd: a few small distinct images fill the
// budget; the collector removes the least recently used ones until the
// cache fits, containerd frees their blobs, and an image a container uses
// and one the master pinned stay although they are the oldest.
func TestContainerdImageGC(t *testing.T) {
	r := startContainerd(t)
	ctx := namespaces.WithNamespace(context.Background(), "edge")
	bb := mustLookPath(t, "busybox")
	name := func(i int) string { return fmt.Sprintf("edge.local/gc-%d:1", i) }
	for i := range 4 {
		spec, err := images.BusyboxImage(name(i), bb, runtime.GOARCH)
		if err != nil {
			t.Fatal(err)
		}
		payload := make([]byte, 256<<10) // incompressible: each image holds its own 256 KiB
		rand.Read(payload)
		spec.Files = append(spec.Files, images.File{Path: "/payload", Mode: 0o644, Data: payload})
		var archive bytes.Buffer
		if err := images.WriteOCIArchive(&archive, spec); err != nil {
			t.Fatal(err)
		}
		if _, err := r.client.Import(ctx, &archive); err != nil {
			t.Fatal(err)
		}
	}
	// gc-0 is in use: a container made from it (which unpacks it and
	// records its use).
	if err := r.CreateContainer(ctx, &core.ContainerConfig{ID: "gc-user", Image: name(0), Command: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	i0, err := r.client.ImageService().Get(ctx, name(0))
	if err != nil {
		t.Fatal(err)
	}
	if used, err := time.Parse(time.RFC3339, i0.Labels[LabelLastUsed]); err != nil || time.Since(used) > time.Minute {
		t.Fatalf("creating a container did not record the image's use: %q %v", i0.Labels[LabelLastUsed], err)
	}
	// Last uses, oldest first: gc-0 (in use), gc-1 (pinned), gc-2, gc-3,
	// then the busybox image startContainerd imported; all after the
	// images were stored (the later of the two counts), and the collector
	// runs an hour later.
	now := time.Now()
	for i, ref := range []string{name(0), name(1), name(2), name(3), testImage} {
		img, err := r.client.ImageService().Get(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if img.Labels == nil {
			img.Labels = map[string]string{}
		}
		img.Labels[LabelLastUsed] = now.Add(time.Duration(i+1) * time.Minute).UTC().Format(time.RFC3339)
		if _, err := r.client.ImageService().Update(ctx, img, "labels."+LabelLastUsed); err != nil {
			t.Fatal(err)
		}
	}

	disk, err := r.ImageDisk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := cacheSize(disk)
	byName := map[string]core.ImageDisk{}
	for _, d := range disk {
		byName[d.Name] = d
	}
	if len(byName) != 5 {
		t.Fatalf("images: %v", disk)
	}
	snap := false
	for _, p := range byName[name(0)].Parts {
		snap = snap || (strings.HasPrefix(p.Key, "snapshot:") && p.Size > 0)
	}
	if !snap {
		t.Fatalf("gc-0 is unpacked and its snapshot is not measured: %+v", byName[name(0)].Parts)
	}
	own := func(ref string) (n int64) {
		for _, p := range byName[ref].Parts {
			n += p.Size
		}
		return n
	}
	// A budget that fits everything but gc-2 and gc-3 (not gc-3 alone).
	budget := total - own(name(2)) - own(name(3))/2
	t.Logf("cache %d bytes (gc-2 %d, gc-3 %d), budget %d", total, own(name(2)), own(name(3)), budget)

	a := newTestAgent(t, r, newFakeClock(), t.TempDir())
	a.Now = func() time.Time { return time.Now().Add(time.Hour) }
	a.ImageCacheSize, a.ImageGCMinAge = budget, time.Nanosecond
	a.Online = func() bool { return true }
	if err := a.init(); err != nil {
		t.Fatal(err)
	}
	a.desired = &core.DesiredState{Node: "pi", Pinned: []string{name(1)}}
	res, err := a.collectImages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{name(2), name(3)}; !slices.Equal(res.Removed, want) {
		t.Fatalf("removed %v, want %v", res.Removed, want)
	}
	after, err := r.ImageDisk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	left := cacheSize(after)
	var names []string
	for _, d := range after {
		names = append(names, d.Name)
	}
	slices.Sort(names)
	if want := []string{testImage, name(0), name(1)}; !slices.Equal(names, want) || left > budget {
		t.Fatalf("left %v holding %d bytes (budget %d); want %v", names, left, budget, want)
	}
	// containerd freed what only the removed images held.
	for _, p := range byName[name(2)].Parts {
		if strings.HasPrefix(p.Key, "snapshot:") {
			continue
		}
		if _, err := r.client.ContentStore().Info(ctx, digest.Digest(p.Key)); !errdefs.IsNotFound(err) {
			t.Fatalf("blob %s of a removed image: %v", p.Key, err)
		}
	}
	// Under budget: a second run removes nothing.
	if res, err := a.collectImages(context.Background()); err != nil || len(res.Removed) != 0 {
		t.Fatalf("second run: %+v %v", res, err)
	}
}

// cacheSize is what images hold, each part counted once.
func cacheSize(disk []core.ImageDisk) int64 {
	sizes := map[string]int64{}
	var n int64
	for _, d := range disk {
		for _, p := range d.Parts {
			if _, ok := sizes[p.Key]; !ok {
				sizes[p.Key] = p.Size
				n += p.Size
			}
		}
	}
	return n
}

// An image's last use is when the last container made from it went, not
// when that container was made: an image a pod ran for weeks until a
// minute ago is not the least recently used one.
func TestContainerdImageLastUsedAtRemoval(t *testing.T) {
	r := startContainerd(t)
	ctx := namespaces.WithNamespace(context.Background(), "edge")
	if err := r.CreateContainer(ctx, &core.ContainerConfig{ID: "lru-user", Image: testImage, Command: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	// The container was made weeks ago.
	img, err := r.client.ImageService().Get(ctx, testImage)
	if err != nil {
		t.Fatal(err)
	}
	weeksAgo := time.Now().Add(-21 * 24 * time.Hour).UTC().Format(time.RFC3339)
	img.Labels[LabelLastUsed] = weeksAgo
	if _, err := r.client.ImageService().Update(ctx, img, "labels."+LabelLastUsed); err != nil {
		t.Fatal(err)
	}
	r.lastUse.Delete(testImage)
	if err := r.RemoveContainer(ctx, "lru-user"); err != nil {
		t.Fatal(err)
	}
	// (The label, not ImageDisk: the image was stored moments ago.)
	img, err = r.client.ImageService().Get(ctx, testImage)
	if err != nil {
		t.Fatal(err)
	}
	if used, err := time.Parse(time.RFC3339, img.Labels[LabelLastUsed]); err != nil || time.Since(used) > time.Minute {
		t.Fatalf("image of a container removed just now: last used %q %v", img.Labels[LabelLastUsed], err)
	}
}

// --image-cache-size 25% is of the disk containerd keeps its content on,
// not of the data dir's (here a 16 MiB tmpfs): they may be two disks.
func TestImageCacheBudgetPercentOfContainerdDisk(t *testing.T) {
	r := startContainerd(t)
	ctx := context.Background()
	socket := strings.TrimPrefix(r.client.Conn().(interface{ Target() string }).Target(), "unix://")
	data := t.TempDir()
	if err := syscall.Mount("tmpfs", data, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(data, syscall.MNT_DETACH) })
	root, err := ContainerdContentRoot(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(root, &st); err != nil {
		t.Fatal(err)
	}
	want := int64(float64(st.Blocks) * float64(st.Bsize) * 50 / 100)
	got, err := ImageCacheBudget(ctx, "50%", socket, data)
	if err != nil || got != want {
		t.Fatalf("50%%: %d %v; want %d (half the disk of %s, not of the 16 MiB data dir)", got, err, want, root)
	}
	if got, err := ImageCacheBudget(ctx, "8Mi", socket, data); err != nil || got != 8<<20 {
		t.Fatalf("8Mi: %d %v", got, err)
	}
}
