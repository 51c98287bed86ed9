package images

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeorch/edge/core"
)

// Garbage collection of the content store under a disk budget.
//
// The unit of collection is an image: a tag, or a manifest stored by digest
// that no tag reaches. An image owns the blobs its manifest reaches (an
// index's platform manifests, configs, layers); a blob shared by several
// images is freed only with the last of them. Images that are pinned
// (imported) or that a pod names are never collected; the others go least
// recently pulled first, until the blobs that remain fit the budget. Blobs
// no image reaches (an image removed with `edgectl image rm`, a pull whose
// manifest moved) are freed by every run.

// GCResult says what a collection did.
type GCResult struct {
	// Removed are the images collected (repo:tag or repo@digest).
	Removed    []string
	FreedBlobs int
	FreedBytes int64
	// Before and After are the store's size around the run.
	Before, After int64
	// OverBudget is set when what is left still exceeds the budget:
	// everything left is pinned or in use.
	OverBudget bool
}

// InUseFunc reports whether a pod uses image repo:tag (tag "" for an image
// stored by digest only) whose manifest is d.
type InUseFunc func(repo, tag string, d digest.Digest) bool

type gcUnit struct {
	repo, tag string
	d         digest.Digest
	lastUsed  time.Time
	pinned    bool
	blobs     []digest.Digest // manifests included
	mfs       []digest.Digest // the manifests among them
}

func (u *gcUnit) name() string {
	if u.tag == "" {
		return u.repo + "@" + u.d.String()
	}
	return u.repo + ":" + u.tag
}

// closure returns the blobs manifest d reaches (d first) and which of them
// are manifests. Blobs not stored (a pull-through not done) are listed
// all the same; a manifest not stored reaches nothing more.
func (s *Store) closure(d digest.Digest) (blobs, manifests []digest.Digest) {
	seen := map[digest.Digest]bool{}
	var walk func(d digest.Digest, depth int)
	walk = func(d digest.Digest, depth int) {
		if seen[d] || depth > maxIndexDepth {
			return
		}
		seen[d] = true
		blobs = append(blobs, d)
		manifests = append(manifests, d)
		data, err := s.ReadManifest(d)
		if err != nil {
			return
		}
		p, err := ParseManifest("", data)
		if err != nil {
			return
		}
		for _, m := range p.Manifests {
			walk(m.Digest, depth+1)
		}
		for _, b := range p.Blobs() {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				blobs = append(blobs, b.Digest)
			}
		}
	}
	walk(d, 0)
	return blobs, manifests
}

// unitsLocked lists the store's images.
func (s *Store) unitsLocked() []*gcUnit {
	var out []*gcUnit
	for name, r := range s.idx.Repositories {
		reached := map[digest.Digest]bool{}
		for t, it := range r.Tags {
			u := &gcUnit{repo: name, tag: t, d: it.Digest, lastUsed: it.LastUsed, pinned: it.Pinned}
			u.blobs, u.mfs = s.closure(it.Digest)
			for _, m := range u.mfs {
				reached[m] = true
			}
			out = append(out, u)
		}
		for d := range r.Manifests {
			if reached[d] {
				continue
			}
			u := &gcUnit{repo: name, d: d}
			u.blobs, u.mfs = s.closure(d)
			out = append(out, u)
		}
	}
	// Nested manifests reached by an untagged index are not images of
	// their own.
	reached := map[string]bool{}
	for _, u := range out {
		for _, m := range u.mfs[1:] {
			reached[u.repo+"@"+m.String()] = true
		}
	}
	kept := out[:0]
	for _, u := range out {
		if u.tag != "" || !reached[u.repo+"@"+u.d.String()] {
			kept = append(kept, u)
		}
	}
	sort.Slice(kept, func(i, j int) bool {
		if !kept[i].lastUsed.Equal(kept[j].lastUsed) {
			return kept[i].lastUsed.Before(kept[j].lastUsed)
		}
		return kept[i].name() < kept[j].name()
	})
	return kept
}

// Remove removes the tag repo:tag (and so its pin), and forgets the
// manifests of the repository no other tag reaches; their blobs are freed
// by the next collection. ENOTFOUND if there is no such tag.
func (s *Store) Remove(repo, tag string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.idx.Repositories[repo]
	if r == nil || r.Tags[tag] == nil {
		return core.Errorf(core.ENOTFOUND, "image %s:%s is not stored on the master (edgectl image ls lists what is)", repo, tag)
	}
	gone := r.Tags[tag].Digest
	delete(r.Tags, tag)
	delete(s.lastSaved, repo+":"+tag)
	keep := map[digest.Digest]bool{}
	for _, t := range r.Tags {
		_, mfs := s.closure(t.Digest)
		for _, m := range mfs {
			keep[m] = true
		}
	}
	_, mfs := s.closure(gone)
	for _, m := range mfs {
		if !keep[m] {
			delete(r.Manifests, m)
		}
	}
	if len(r.Tags) == 0 && len(r.Manifests) == 0 {
		delete(s.idx.Repositories, repo)
	}
	return s.saveLocked()
}

// Collect removes images until the blobs that remain fit in budget bytes
// (budget < 0: no image is removed), then frees every blob no image
// reaches. Pinned images and those inUse reports are never removed.
func (s *Store) Collect(budget int64, inUse InUseFunc) (GCResult, error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	var res GCResult
	sizes, err := s.blobSizes()
	if err != nil {
		return res, err
	}
	for _, n := range sizes {
		res.Before += n
	}
	units := s.unitsLocked()
	// The policy is core's, shared with the nodes' caches.
	plan := make([]core.GCImage, len(units))
	partSizes := make(map[string]int64, len(sizes))
	for d, n := range sizes {
		partSizes[d.String()] = n
	}
	for i, u := range units {
		plan[i] = core.GCImage{Name: u.name(), LastUsed: u.lastUsed,
			Keep: u.pinned || (inUse != nil && inUse(u.repo, u.tag, u.d))}
		for _, b := range u.blobs {
			plan[i].Parts = append(plan[i].Parts, b.String())
		}
	}
	chosen, _, over := core.PlanImageGC(plan, partSizes, budget)
	removed := map[*gcUnit]bool{}
	for _, i := range chosen {
		removed[units[i]] = true
		res.Removed = append(res.Removed, units[i].name())
	}
	refs := map[digest.Digest]int{}
	for _, u := range units {
		if !removed[u] {
			for _, b := range u.blobs {
				refs[b]++
			}
		}
	}
	res.OverBudget = over
	if len(removed) > 0 {
		for u := range removed {
			r := s.idx.Repositories[u.repo]
			if u.tag != "" {
				delete(r.Tags, u.tag)
				delete(s.lastSaved, u.repo+":"+u.tag)
			} else {
				delete(r.Manifests, u.d)
			}
		}
		// Manifests only removed images reached leave their repositories.
		live := map[string]bool{}
		for _, u := range units {
			if !removed[u] {
				for _, m := range u.mfs {
					live[u.repo+"@"+m.String()] = true
				}
			}
		}
		for u := range removed {
			r := s.idx.Repositories[u.repo]
			for _, m := range u.mfs {
				if !live[u.repo+"@"+m.String()] {
					delete(r.Manifests, m)
				}
			}
			if len(r.Tags) == 0 && len(r.Manifests) == 0 {
				delete(s.idx.Repositories, u.repo)
			}
		}
		// The index first: a crash between the two leaves blobs no tag
		// names (the next run frees them), never a tag without its blobs.
		if err := s.saveLocked(); err != nil {
			return res, err
		}
	}
	for d, n := range sizes {
		if refs[d] > 0 {
			continue
		}
		if err := os.Remove(s.BlobPath(d)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return res, err
		}
		res.FreedBlobs++
		res.FreedBytes += n
	}
	res.After = res.Before - res.FreedBytes
	return res, nil
}

// blobSizes returns every stored blob's size.
func (s *Store) blobSizes() (map[digest.Digest]int64, error) {
	ents, err := os.ReadDir(filepath.Join(s.Dir, "blobs", "sha256"))
	if err != nil {
		return nil, err
	}
	out := map[digest.Digest]int64{}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() != nil {
			continue
		}
		out[d] = fi.Size()
	}
	return out, nil
}

// ImageSize is the total size of the stored blobs manifest d reaches.
func (s *Store) ImageSize(d digest.Digest) int64 {
	blobs, _ := s.closure(d)
	var n int64
	for _, b := range blobs {
		if sz, err := s.Stat(b); err == nil {
			n += sz
		}
	}
	return n
}

// Collector runs the store's garbage collection: every Interval, and soon
// after Kick (an image removed or imported). A run is skipped while a pod
// waits for an image its node does not hold (a pull may be under way whose
// blobs are not all named yet; not one in ImagePullBackOff, which waits
// for its retry) or while the registry pulls blobs through.
type Collector struct {
	Store *Store
	// Budget is the disk budget in bytes (negative: only blobs no image
	// reaches are freed).
	Budget int64
	// Cluster lists pods and nodes: images pods name are in use. Nil:
	// none is.
	Cluster core.Store
	// Busy reports that blobs are being pulled through (the registry).
	Busy     func() bool
	Interval time.Duration // [10m]
	Log      *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}
}

// Open starts the collector's loop.
func (c *Collector) Open() {
	if c.Interval <= 0 {
		c.Interval = 10 * time.Minute
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	c.kick = make(chan struct{}, 1)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(c.Interval)
		defer t.Stop()
		for {
			select {
			case <-c.ctx.Done():
				return
			case <-t.C:
			case <-c.kick:
			}
			res, err := c.RunOnce(c.ctx)
			switch {
			case errors.Is(err, ErrGCBusy):
				c.Log.Debug("image gc: skipped", "why", err)
			case err != nil:
				c.Log.Warn("image gc failed", "err", err)
			case len(res.Removed) > 0 || res.FreedBlobs > 0:
				c.Log.Info("image gc", "removed", res.Removed, "blobs", res.FreedBlobs, "freed", res.FreedBytes, "size", res.After, "budget", c.Budget)
			}
			if err == nil && res.OverBudget {
				c.Log.Warn("image store is over its budget, and every image left is pinned or in use", "size", res.After, "budget", c.Budget)
			}
		}
	}()
}

// Kick asks for a run soon.
func (c *Collector) Kick() {
	if c.kick == nil {
		return
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Close stops the loop and waits for a run in progress. Idempotent.
func (c *Collector) Close() error {
	if c.cancel != nil {
		c.cancel()
		c.wg.Wait()
	}
	return nil
}

// ErrGCBusy is RunOnce's answer when it skipped the run.
var ErrGCBusy = errors.New("images are being pulled")

// RunOnce collects now, unless a pull is under way (ErrGCBusy, wrapped
// with what waits).
func (c *Collector) RunOnce(ctx context.Context) (GCResult, error) {
	if c.Busy != nil && c.Busy() {
		return GCResult{}, fmt.Errorf("%w: the registry is pulling blobs through", ErrGCBusy)
	}
	used := map[string]bool{}
	if c.Cluster != nil {
		pods, err := core.ListAs[*core.Pod](ctx, c.Cluster, core.KindPod, "")
		if err != nil {
			return GCResult{}, err
		}
		nodes, err := core.ListAs[*core.Node](ctx, c.Cluster, core.KindNode, "")
		if err != nil {
			return GCResult{}, err
		}
		byName := map[string]*core.Node{}
		for _, n := range nodes {
			byName[n.Metadata.Name] = n
		}
		for _, p := range pods {
			waiting := p.Status.Phase == core.PodPending && !p.Terminating()
			// An image whose pull failed and waits for its retry is not being
			// pulled: one that does not exist must not stop collection for good.
			backoff := map[string]bool{}
			for _, cs := range append(append([]core.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
				if w := cs.State.Waiting; w != nil && (w.Reason == "ImagePullBackOff" || w.Reason == "ErrImagePull" || w.Reason == "InvalidImageName") {
					backoff[cs.Image] = true
				}
			}
			for _, img := range p.Spec.Images() {
				for _, k := range usedKeys(img) {
					used[k] = true
				}
				if n := byName[p.Spec.NodeName]; waiting && n != nil && !n.HasImage(img) && !backoff[img] {
					return GCResult{}, fmt.Errorf("%w: pod %s/%s waits for %s", ErrGCBusy, p.Metadata.Namespace, p.Metadata.Name, img)
				}
			}
		}
	}
	return c.Store.Collect(c.Budget, func(repo, tag string, d digest.Digest) bool {
		return (tag != "" && used[repo+":"+tag]) || used[repo+"@"+d.String()]
	})
}

// usedKeys returns the keys under which a pod's image reference protects
// stored images: repo:tag and repo@digest.
func usedKeys(img string) []string {
	norm := core.NormalizeImage(img)
	name, dg, hasDigest := strings.Cut(norm, "@")
	if !hasDigest {
		return []string{norm}
	}
	if i, j := strings.LastIndexByte(name, ':'), strings.LastIndexByte(name, '/'); i > j {
		return []string{name[:i] + "@" + dg, name} // repo:tag@digest
	}
	return []string{name + "@" + dg}
}
