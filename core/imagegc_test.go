package core_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

func TestPlanImageGC(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	sizes := map[string]int64{"base": 50, "a": 10, "b": 20, "c": 30, "d": 40}
	for _, tc := range []struct {
		name   string
		imgs   []core.GCImage
		budget int64
		remove []string
		kept   int64
		over   bool
	}{
		{"under budget", []core.GCImage{{Name: "x", Parts: []string{"a"}}}, 10, nil, 10, false},
		{"negative budget removes nothing", []core.GCImage{{Name: "x", Parts: []string{"a"}}}, -1, nil, 10, false},
		{"least recently used first", []core.GCImage{
			{Name: "new", LastUsed: at(3), Parts: []string{"a"}},
			{Name: "old", LastUsed: at(1), Parts: []string{"b"}},
			{Name: "mid", LastUsed: at(2), Parts: []string{"c"}},
		}, 15, []string{"old", "mid"}, 10, false},
		{"ties by name", []core.GCImage{
			{Name: "b", Parts: []string{"b"}}, {Name: "a", Parts: []string{"a"}},
		}, 20, []string{"a"}, 20, false},
		{"kept images stay, even over budget", []core.GCImage{
			{Name: "pinned", Keep: true, Parts: []string{"d"}},
			{Name: "used", Keep: true, LastUsed: at(9), Parts: []string{"c"}},
			{Name: "free", LastUsed: at(5), Parts: []string{"a"}},
		}, 10, []string{"free"}, 70, true},
		{"a shared part counts once and goes with the last image", []core.GCImage{
			{Name: "x", LastUsed: at(1), Parts: []string{"base", "a"}},
			{Name: "y", LastUsed: at(2), Parts: []string{"base", "b"}},
			{Name: "z", LastUsed: at(3), Parts: []string{"c"}},
		}, 100, []string{"x"}, 100, false},
		{"removing the first sharer frees little", []core.GCImage{
			{Name: "x", LastUsed: at(1), Parts: []string{"base", "a"}},
			{Name: "y", LastUsed: at(2), Parts: []string{"base", "b"}},
			{Name: "z", LastUsed: at(3), Parts: []string{"c"}},
		}, 30, []string{"x", "y"}, 30, false},
		{"unknown parts weigh nothing", []core.GCImage{{Name: "x", Parts: []string{"nope"}}}, 0, nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx, kept, over := core.PlanImageGC(tc.imgs, sizes, tc.budget)
			var names []string
			for _, i := range idx {
				names = append(names, tc.imgs[i].Name)
			}
			if !reflect.DeepEqual(names, tc.remove) || kept != tc.kept || over != tc.over {
				t.Fatalf("removed %v kept %d over %v; want %v %d %v", names, kept, over, tc.remove, tc.kept, tc.over)
			}
		})
	}
}

// A node is told which of the images it holds are pinned on the master, so
// that its own garbage collection keeps them.
func TestDesiredPinned(t *testing.T) {
	c := newCluster(t)
	var pinned []string
	c.Ctl.PinnedImages = func() []string { return pinned }
	c.AddNode("n1", nil, "4", "4Gi")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Report(&core.NodeReport{Node: "n1", Labels: c.Node("n1").Metadata.Labels, Status: withImages(c.Node("n1").Status, "registry.lan/app:1", "docker.io/library/busybox:latest")})
	c.Sync()
	if ds := c.Bus.Desired("n1"); ds != nil && len(ds.Pinned) != 0 {
		t.Fatalf("nothing pinned yet: %v", ds.Pinned)
	}
	pinned = []string{"docker.io/library/busybox:latest", "registry.lan/app:1", "registry.lan/app:2"}
	c.Sync()
	ds := c.Bus.Desired("n1")
	if ds == nil || strings.Join(ds.Pinned, ",") != "docker.io/library/busybox:latest,registry.lan/app:1" {
		t.Fatalf("n1's desired state: %+v", ds)
	}
	if ds := c.Bus.Desired("n2"); ds != nil && len(ds.Pinned) != 0 {
		t.Fatalf("n2 holds none of them and was told %v", ds.Pinned)
	}
	// Unpinned (edgectl image rm): it leaves the list.
	pinned = pinned[1:]
	c.Sync()
	if ds := c.Bus.Desired("n1"); strings.Join(ds.Pinned, ",") != "registry.lan/app:1" {
		t.Fatalf("after unpinning busybox: %v", ds.Pinned)
	}
}

func withImages(st core.NodeStatus, refs ...string) core.NodeStatus {
	for _, r := range refs {
		st.Images = append(st.Images, core.NodeImage{Names: []string{r}})
	}
	return st
}
