package edgeagent

import (
	"context"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeorch/edge/core"
)

// The containerd side of the node's image garbage collection (imagegc.go):
// what each image holds on disk, when it was last used, and its removal.

// LabelLastUsed is the containerd image label holding when a container was
// last created from the image (RFC 3339): it outlives an agent restart and
// goes with the image.
const LabelLastUsed = "edge.io/last-used"

// lastUseEvery bounds how often one image's label is rewritten: a burst of
// containers from one image costs one update.
const lastUseEvery = time.Minute

// touchImage records that a container was just created from img, or one
// made from it removed: an image a pod ran for weeks was used until then,
// not when its container was created.
func (r *containerdRuntime) touchImage(ctx context.Context, name string) {
	now := time.Now()
	if t, ok := r.lastUse.Load(name); ok && now.Sub(t.(time.Time)) < lastUseEvery {
		return
	}
	r.lastUse.Store(name, now)
	is := r.client.ImageService()
	i, err := is.Get(ctx, name)
	if err != nil {
		return
	}
	if i.Labels == nil {
		i.Labels = map[string]string{}
	}
	i.Labels[LabelLastUsed] = now.UTC().Format(time.RFC3339)
	if _, err := is.Update(ctx, i, "labels."+LabelLastUsed); err != nil {
		r.log().Debug("recording an image's last use failed", "image", name, "err", err)
	}
}

func (r *containerdRuntime) ImageDisk(ctx context.Context) ([]core.ImageDisk, error) {
	ctx = r.ns(ctx)
	list, err := r.client.ImageService().List(ctx)
	if err != nil {
		return nil, coreError(err)
	}
	cs := r.client.ContentStore()
	sn := r.client.SnapshotService("")
	sizes := map[digest.Digest]int64{} // blobs seen, -1 if absent
	out := make([]core.ImageDisk, 0, len(list))
	snaps := map[string]bool{}
	for _, i := range list {
		d := core.ImageDisk{ContainerImage: core.ContainerImage{Name: i.Name, ID: i.Target.Digest.String(), Size: i.Target.Size},
			LastUsed: i.CreatedAt}
		if t, err := time.Parse(time.RFC3339, i.Labels[LabelLastUsed]); err == nil && t.After(d.LastUsed) {
			d.LastUsed = t
		}
		d.Parts = blobParts(ctx, cs, i.Target, sizes)
		// Unpacked layers: committed snapshots never change, so each
		// one's usage is asked once.
		diffIDs, err := containerd.NewImage(r.client, i).RootFS(ctx)
		if err == nil {
			for _, chain := range identity.ChainIDs(diffIDs) {
				key := chain.String()
				snaps[key] = true
				n, ok := r.snapUsage.Load(key)
				if !ok {
					u, err := sn.Usage(ctx, key)
					if err != nil {
						continue // not unpacked
					}
					n = u.Size
					r.snapUsage.Store(key, n)
				}
				d.Parts = append(d.Parts, core.ImagePart{Key: "snapshot:" + key, Size: n.(int64)})
			}
		}
		out = append(out, d)
	}
	r.snapUsage.Range(func(k, _ any) bool {
		if !snaps[k.(string)] {
			r.snapUsage.Delete(k)
		}
		return true
	})
	return out, nil
}

// blobParts lists the blobs desc reaches that the content store holds (an
// index's other platforms usually are not), with their sizes.
func blobParts(ctx context.Context, cs content.Store, desc ocispec.Descriptor, sizes map[digest.Digest]int64) []core.ImagePart {
	var parts []core.ImagePart
	seen := map[digest.Digest]bool{}
	var walk func(desc ocispec.Descriptor, depth int)
	walk = func(desc ocispec.Descriptor, depth int) {
		if seen[desc.Digest] || depth > 4 {
			return
		}
		seen[desc.Digest] = true
		n, ok := sizes[desc.Digest]
		if !ok {
			n = -1
			if info, err := cs.Info(ctx, desc.Digest); err == nil {
				n = info.Size
			}
			sizes[desc.Digest] = n
		}
		if n < 0 {
			return
		}
		parts = append(parts, core.ImagePart{Key: desc.Digest.String(), Size: n})
		if images.IsManifestType(desc.MediaType) || images.IsIndexType(desc.MediaType) {
			children, err := images.Children(ctx, cs, desc)
			if err != nil {
				return
			}
			for _, c := range children {
				walk(c, depth+1)
			}
		}
	}
	walk(desc, 0)
	return parts
}

func (r *containerdRuntime) RemoveImage(ctx context.Context, ref string) error {
	ctx = r.ns(ctx)
	i, err := r.client.ImageService().Get(ctx, ref)
	if errdefs.IsNotFound(err) {
		return nil
	} else if err != nil {
		return coreError(err)
	}
	// Synchronous: containerd's own collection frees the blobs and
	// snapshots no other image, container or lease holds before this
	// returns, so the next measure sees them gone.
	err = r.client.ImageService().Delete(ctx, ref, images.SynchronousDelete())
	if err != nil && !errdefs.IsNotFound(err) {
		return coreError(err)
	}
	r.unpacked.Delete(i.Target.Digest) // its snapshots may have gone with it
	r.lastUse.Delete(ref)
	return nil
}
