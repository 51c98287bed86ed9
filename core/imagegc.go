package core

import (
	"sort"
	"time"
)

// Image garbage collection under a disk budget: the policy the master's
// content store (images/gc.go) and each node's containerd cache
// (edgeagent/imagegc.go) share. It is pure: callers measure, decide what
// must be kept, and remove what it chooses.

// GCImage is one image as garbage collection weighs it.
type GCImage struct {
	Name string
	// LastUsed orders removal: least recently used first (ties by Name).
	LastUsed time.Time
	// Keep marks an image that is never removed (pinned, or in use).
	Keep bool
	// Parts are the keys of what the image holds on disk (blob digests,
	// unpacked snapshots): a part several images hold is counted once,
	// and freed only with the last of them.
	Parts []string
}

// PlanImageGC chooses the images to remove so that the parts the others
// hold fit in budget bytes: least recently used first, never one marked
// Keep, and none once the rest fits. sizes gives each part's size (a part
// missing there weighs nothing). It returns the indexes of the chosen
// images in imgs, in removal order, the bytes the rest hold, and whether
// that still exceeds budget (everything left is kept). A negative budget
// removes nothing.
func PlanImageGC(imgs []GCImage, sizes map[string]int64, budget int64) (remove []int, kept int64, over bool) {
	refs := map[string]int{}
	for _, img := range imgs {
		for _, p := range img.Parts {
			if refs[p]++; refs[p] == 1 {
				kept += sizes[p]
			}
		}
	}
	if budget < 0 || kept <= budget {
		return nil, kept, false
	}
	order := make([]int, len(imgs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := &imgs[order[i]], &imgs[order[j]]
		if !a.LastUsed.Equal(b.LastUsed) {
			return a.LastUsed.Before(b.LastUsed)
		}
		return a.Name < b.Name
	})
	for _, i := range order {
		if kept <= budget {
			break
		}
		if imgs[i].Keep {
			continue
		}
		remove = append(remove, i)
		for _, p := range imgs[i].Parts {
			if refs[p]--; refs[p] == 0 {
				kept -= sizes[p]
			}
		}
	}
	return remove, kept, kept > budget
}
