package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeorch/edge/core"
)

// putImage stores an image of a config and the given layers (each a blob
// of its content) under repo:tag, as a pull through would.
func putImage(t testing.TB, s *Store, repo, tag string, layers ...string) digest.Digest {
	t.Helper()
	put := func(data []byte) ocispec.Descriptor {
		d := digest.FromBytes(data)
		if err := s.Put(d, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		return ocispec.Descriptor{MediaType: MediaTypeDockerLayerGzip, Digest: d, Size: int64(len(data))}
	}
	m := ocispec.Manifest{MediaType: MediaTypeDockerManifest, Config: put([]byte(`{"for":"` + repo + ":" + tag + `"}`))}
	m.Config.MediaType = MediaTypeDockerConfig
	m.SchemaVersion = 2
	for _, l := range layers {
		m.Layers = append(m.Layers, put([]byte(l)))
	}
	b, _ := json.Marshal(m)
	d, err := s.PutManifest(repo, tag, MediaTypeDockerManifest, b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func tagsOf(s *Store) string {
	var out []string
	for _, t := range s.Images() {
		out = append(out, t.Repo+":"+t.Tag)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func TestCollect(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &Store{Dir: t.TempDir(), Now: func() time.Time { return now }}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	kb := func(c string) string { return strings.Repeat(c, 1000) }
	shared := kb("s")
	// Oldest first: old (pinned), a, b (in use), c; each has a 1000-byte
	// layer of its own and the shared one.
	for _, img := range []string{"old", "a", "b", "c"} {
		putImage(t, s, "docker.io/r/"+img, "1", shared, kb(img[:1]))
		now = now.Add(time.Hour)
	}
	s.SetPinned("docker.io/r/old", "1", true)
	s.Touch("docker.io/r/c", "1") // c was pulled last
	_, before, _ := s.Usage()
	inUse := func(repo, tag string, d digest.Digest) bool { return repo == "docker.io/r/b" }

	// Within budget: nothing goes.
	res, err := s.Collect(before, inUse)
	if err != nil || len(res.Removed) != 0 || res.FreedBlobs != 0 {
		t.Fatalf("within budget: %+v %v", res, err)
	}
	// 1000 bytes too many: the least recently used that may go (a; old is
	// pinned) goes, with its own layer and config, not the shared layer.
	res, err = s.Collect(before-1000, inUse)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Removed, ",") != "docker.io/r/a:1" || res.FreedBlobs != 3 || res.OverBudget {
		t.Fatalf("over budget: %+v", res)
	}
	if tagsOf(s) != "docker.io/r/b:1,docker.io/r/c:1,docker.io/r/old:1" {
		t.Fatalf("left: %s", tagsOf(s))
	}
	for _, img := range []string{"docker.io/r/old", "docker.io/r/b", "docker.io/r/c"} {
		serve(t, s, img, "1") // every blob of what is left is there
	}
	// A budget nothing can meet: c goes, b (in use) and old (pinned) stay.
	res, err = s.Collect(1, inUse)
	if err != nil || strings.Join(res.Removed, ",") != "docker.io/r/c:1" || !res.OverBudget {
		t.Fatalf("tiny budget: %+v %v", res, err)
	}
	// Removed by hand: its blobs go at the next run, whatever the budget,
	// but not the layer another image shares.
	if err := s.Remove("docker.io/r/old", "1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("docker.io/r/old", "1"); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("removed twice: %v", err)
	}
	res, err = s.Collect(-1, nil)
	if err != nil || len(res.Removed) != 0 || res.FreedBlobs != 3 {
		t.Fatalf("after rm: %+v %v", res, err)
	}
	serve(t, s, "docker.io/r/b", "1")
	// The index on disk says the same.
	s2, _ := OpenStore(s.Dir)
	if tagsOf(s2) != "docker.io/r/b:1" {
		t.Fatalf("reopened: %s", tagsOf(s2))
	}
	if n, _, _ := s2.Usage(); n != 4 {
		t.Fatalf("%d blobs left, want b's 4", n)
	}
}

// An image stored by digest only (pulled as repo@sha256:...) is collected
// like a tag, and a pod naming it by digest keeps it.
func TestCollect_Digest(t *testing.T) {
	s := openStore(t)
	d := putImage(t, s, "r/x", "", "layer")
	if _, err := s.Manifest("r/x", d); err != nil {
		t.Fatal(err)
	}
	keep := func(repo, tag string, dd digest.Digest) bool { return repo == "r/x" && dd == d }
	if res, _ := s.Collect(1, keep); len(res.Removed) != 0 {
		t.Fatalf("in use by digest: %+v", res)
	}
	if res, _ := s.Collect(1, nil); strings.Join(res.Removed, ",") != "r/x@"+d.String() || res.FreedBlobs != 3 {
		t.Fatalf("by digest: %+v", res)
	}
}

func TestUsedKeys(t *testing.T) {
	for img, want := range map[string]string{
		"busybox":               "docker.io/library/busybox:latest",
		"reg:5000/a/b:1":        "reg:5000/a/b:1",
		"busybox@sha256:ab":     "docker.io/library/busybox@sha256:ab",
		"busybox:1.36@sha256:a": "docker.io/library/busybox@sha256:a,docker.io/library/busybox:1.36",
	} {
		if got := strings.Join(usedKeys(img), ","); got != want {
			t.Errorf("usedKeys(%q) = %s, want %s", img, got, want)
		}
	}
}

// The collector keeps what pods use and skips a run while a pod waits for
// an image its node does not hold yet.
func TestCollector(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	putImage(t, s, "docker.io/library/used", "latest", "u")
	putImage(t, s, "docker.io/library/idle", "latest", "i")
	cluster := core.NewMemoryStore()
	node := &core.Node{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindNode}, Metadata: core.ObjectMeta{Name: "n1"},
		Status: core.NodeStatus{Images: []core.NodeImage{{Names: []string{"docker.io/library/used:latest"}}}}}
	pod := &core.Pod{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindPod}, Metadata: core.ObjectMeta{Name: "p", Namespace: "default"},
		Spec:   core.PodSpec{NodeName: "n1", Containers: []core.Container{{Name: "c", Image: "used"}, {Name: "d", Image: "new:1"}}},
		Status: core.PodStatus{Phase: core.PodPending}}
	if err := cluster.Update(ctx, func(tx core.Tx) error {
		if err := tx.Create(node); err != nil {
			return err
		}
		return tx.Create(pod)
	}); err != nil {
		t.Fatal(err)
	}
	c := &Collector{Store: s, Budget: 1, Cluster: cluster}
	if _, err := c.RunOnce(ctx); !errors.Is(err, ErrGCBusy) || !strings.Contains(err.Error(), "waits for new:1") {
		t.Fatalf("pod waiting for an image: %v", err)
	}
	// A pull that failed and waits for its retry does not hold collection.
	cluster.Update(ctx, func(tx core.Tx) error {
		o, _ := tx.Get(core.KeyOf(pod))
		p := core.Clone(o.(*core.Pod))
		p.Status.ContainerStatuses = []core.ContainerStatus{{Name: "d", Image: "new:1", State: core.ContainerState{Waiting: &core.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}
		return tx.Put(p)
	})
	if _, err := c.RunOnce(ctx); err != nil {
		t.Fatalf("pod in ImagePullBackOff: %v", err)
	}
	putImage(t, s, "docker.io/library/idle", "latest", "i")
	// The pod runs now (its node pulled new:1).
	cluster.Update(ctx, func(tx core.Tx) error {
		o, _ := tx.Get(core.KeyOf(pod))
		p := core.Clone(o.(*core.Pod))
		p.Status.Phase = core.PodRunning
		return tx.Put(p)
	})
	res, err := c.RunOnce(ctx)
	if err != nil || strings.Join(res.Removed, ",") != "docker.io/library/idle:latest" {
		t.Fatalf("run: %+v %v", res, err)
	}
	c.Busy = func() bool { return true }
	if _, err := c.RunOnce(ctx); !errors.Is(err, ErrGCBusy) {
		t.Fatalf("registry pulling: %v", err)
	}
	// The loop runs on Kick and stops on Close.
	c.Busy = nil
	c.Budget = -1
	c.Interval = time.Hour
	c.Open()
	s.Remove("docker.io/library/used", "latest")
	c.Kick()
	deadline := time.Now().Add(10 * time.Second)
	for n, _, _ := s.Usage(); n != 0; n, _, _ = s.Usage() {
		if time.Now().After(deadline) {
			t.Fatalf("%d blobs left after a kick", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Close()
	c.Close()
}
