package edgeagent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgeorch/edge/core"
)

// Garbage collection of the node's image cache under a disk budget
// (--image-cache-size), with the master's policy (core.PlanImageGC): the
// least recently used images go first, until what the rest hold on disk
// (blobs and unpacked snapshots, a shared one counted once) fits. Never
// removed: images a container on the node was created from, images a pod
// bound to the node names (init containers included), images the master
// asks the node to prefetch or pinned (DesiredState.Pinned), and images
// used or stored within ImageGCMinAge (one just prefetched for a rollout,
// which the master stops asking for once the node holds it). No run
// removes anything while the master is unreachable and a pod of the node
// waits for an image it does not hold: the link is what would bring back a
// wrong guess.

// Defaults of the image collector.
const (
	DefaultImageGCInterval = 5 * time.Minute
	DefaultImageGCMinAge   = 10 * time.Minute
)

// errImageGCWaits is collectImages' answer when it skipped the run.
var errImageGCWaits = errors.New("a pod waits for an image and the master is unreachable")

// imageGCResult says what a collection did.
type imageGCResult struct {
	Removed []string
	// Before and After are the bytes the node's images hold around the
	// run (After as planned: containerd frees them as each goes).
	Before, After int64
	// Over: what is left exceeds the budget; all of it is kept.
	Over bool
}

// imageGCLoop collects every ImageGCInterval.
func (a *Agent) imageGCLoop() {
	defer a.wg.Done()
	t := time.NewTicker(a.ImageGCInterval)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
		res, err := a.collectImages(a.ctx)
		switch {
		case errors.Is(err, errImageGCWaits):
			a.Log.Debug("image gc: skipped", "why", err)
		case err != nil && a.ctx.Err() == nil:
			a.Log.Warn("image gc failed", "err", err)
		case len(res.Removed) > 0:
			a.Log.Info("image gc", "removed", res.Removed, "size", res.After, "before", res.Before, "budget", a.ImageCacheSize)
		}
		if err == nil && res.Over != warned {
			if res.Over {
				a.Log.Warn("image cache is over its budget, and every image left is in use, pinned or recent", "size", res.After, "budget", a.ImageCacheSize)
			}
			warned = res.Over
		}
	}
}

// online reports whether the master can be reached.
func (a *Agent) online() bool { return a.Online != nil && a.Online() }

// imagesKept returns why each image (a normalised name, or "@"+digest for
// a reference by digest) must stay, and the images pods want.
func (a *Agent) imagesKept(ctrs []*core.ContainerInfo) (keep map[string]string, wanted []string) {
	keep = map[string]string{}
	add := func(ref, why string) {
		n := core.NormalizeImage(ref)
		if _, ok := keep[n]; !ok {
			keep[n] = why
		}
		if _, d, ok := strings.Cut(n, "@"); ok {
			keep["@"+d] = why
		}
	}
	for _, c := range ctrs {
		add(c.Image, "container "+c.ID)
	}
	a.mu.Lock()
	ds := a.desired
	for ref := range a.fetching {
		add(ref, "prefetching")
	}
	a.mu.Unlock()
	if ds != nil {
		for _, p := range ds.Pods {
			for _, img := range p.Spec.Images() {
				add(img, "pod "+p.Metadata.Namespace+"/"+p.Metadata.Name)
				wanted = append(wanted, core.NormalizeImage(img))
			}
		}
		for _, img := range ds.Prefetch {
			add(img, "prefetch")
		}
		for _, img := range ds.Pinned {
			add(img, "pinned")
		}
	}
	return keep, wanted
}

// collectImages removes least recently used images until the cache fits
// ImageCacheSize (0: it does nothing).
func (a *Agent) collectImages(ctx context.Context) (imageGCResult, error) {
	var res imageGCResult
	if a.ImageCacheSize <= 0 {
		return res, nil
	}
	imgs, err := a.rt.ImageDisk(ctx)
	if err != nil {
		return res, err
	}
	ctrs, err := a.rt.Containers(ctx, nil) // all of them, the agent's or not
	if err != nil {
		return res, err
	}
	keep, wanted := a.imagesKept(ctrs)
	present := map[string]bool{}
	for _, img := range imgs {
		present[img.Name] = true
	}
	for _, w := range wanted {
		if !present[w] && !a.online() {
			return res, fmt.Errorf("%w (%s)", errImageGCWaits, w)
		}
	}
	now := a.Now()
	plan := make([]core.GCImage, len(imgs))
	sizes := map[string]int64{}
	for i, img := range imgs {
		_, used := keep[img.Name]
		_, usedID := keep["@"+img.ID]
		plan[i] = core.GCImage{Name: img.Name, LastUsed: img.LastUsed,
			Keep: used || usedID || now.Sub(img.LastUsed) < a.ImageGCMinAge}
		for _, p := range img.Parts {
			plan[i].Parts = append(plan[i].Parts, p.Key)
			if _, ok := sizes[p.Key]; !ok {
				sizes[p.Key] = p.Size
				res.Before += p.Size
			}
		}
	}
	defer func() {
		if len(res.Removed) > 0 {
			a.imagesChanged() // the next report lists what is left
			a.markDirty()
		}
	}()
	// An image that cannot go (its removal failed, or a desired state that
	// came since the listing wants it now) is kept and the rest planned
	// again: one image containerd refuses to remove does not stop the
	// others from going, run after run.
	gone := make([]bool, len(imgs))
	var errs []error
	for replan := true; replan; {
		replan = false
		var rest []core.GCImage
		var idx []int
		for i := range plan {
			if !gone[i] {
				rest, idx = append(rest, plan[i]), append(idx, i)
			}
		}
		remove, kept, over := core.PlanImageGC(rest, sizes, a.ImageCacheSize)
		res.After, res.Over = kept, over
		for _, j := range remove {
			i := idx[j]
			img := imgs[i]
			// A desired state that came since the listing may want it now.
			if k, _ := a.imagesKept(nil); k[img.Name] != "" || k["@"+img.ID] != "" {
				plan[i].Keep, replan = true, true
				break
			}
			if err := a.rt.RemoveImage(ctx, img.Name); err != nil {
				if ctx.Err() != nil {
					return res, err
				}
				errs = append(errs, fmt.Errorf("removing image %s: %w", img.Name, err))
				plan[i].Keep, replan = true, true
				break
			}
			gone[i] = true
			res.Removed = append(res.Removed, img.Name)
			a.Log.Info("image removed by garbage collection", "image", img.Name, "lastUsed", img.LastUsed.UTC().Format(time.RFC3339), "budget", a.ImageCacheSize)
		}
	}
	return res, errors.Join(errs...)
}
