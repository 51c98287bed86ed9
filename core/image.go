package core

import (
	"context"
	"io"
	"strings"
)

// NormalizeImage expands a short image reference the way Docker and
// containerd do: "busybox" -> "docker.io/library/busybox:latest".
func NormalizeImage(ref string) string {
	name, digest, hasDigest := strings.Cut(ref, "@")
	domain, rest := "", name
	if i := strings.IndexByte(name, '/'); i >= 0 {
		first := name[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" {
			domain, rest = first, name[i+1:]
		}
	}
	if domain == "" || domain == "docker.io" || domain == "index.docker.io" {
		// "docker.io/busybox" is Docker Hub's official image too, as
		// Docker and containerd read it.
		domain = "docker.io"
		if !strings.Contains(rest, "/") {
			rest = "library/" + rest
		}
	}
	// A tag follows the last colon after the last slash.
	lastSlash := strings.LastIndexByte(rest, '/')
	if !strings.Contains(rest[lastSlash+1:], ":") && !hasDigest {
		rest += ":latest"
	}
	out := domain + "/" + rest
	if hasDigest {
		out += "@" + digest
	}
	return out
}

// ImageInfo is one image (a tag) the master's content store holds.
type ImageInfo struct {
	// Ref is the full reference, REPOSITORY:TAG.
	Ref       string `json:"ref"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType,omitempty"`
	// Size is the total of the image's stored blobs.
	Size     int64 `json:"size"`
	Pinned   bool  `json:"pinned"`
	LastUsed *Time `json:"lastUsed,omitempty"`
	// Nodes are those whose status lists the image.
	Nodes []string `json:"nodes,omitempty"`
}

// ImageImport is what an import stored.
type ImageImport struct {
	Images []ImageInfo `json:"images"`
	// Blobs is how many blobs were new to the store; Bytes how many bytes
	// of archive were read.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
}

// ImageService is the master's image store as the API sees it.
type ImageService interface {
	// ImportImages reads an image archive (an OCI image layout or a docker
	// save tarball, gzipped or not) and stores its images, pinned. name
	// names an image that has none of its own. A bad archive is EINVALID
	// and leaves nothing behind.
	ImportImages(ctx context.Context, r io.Reader, name string) (*ImageImport, error)
	// ListImages lists the stored images (Nodes left empty).
	ListImages(ctx context.Context) ([]ImageInfo, error)
	// RemoveImage removes (and so unpins) the tag ref; its blobs that no
	// other image uses are freed by the next collection. ENOTFOUND if the
	// store has no such tag, EINVALID if ref is no image reference.
	RemoveImage(ctx context.Context, ref string) error
}

// AnnotationPrefetch lists, comma-separated, images a node is to pull in
// the background (edgectl image prefetch). Each leaves the list once the
// node reports holding it.
const AnnotationPrefetch = "edge.io/prefetch"

// MaxPrefetch bounds a node's explicit prefetch list.
const MaxPrefetch = 64

// PrefetchList returns the images of n's prefetch annotation.
func (n *Node) PrefetchList() []string {
	v := n.Metadata.Annotations[AnnotationPrefetch]
	if v == "" {
		return nil
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// setPrefetchList writes l back into n's annotation (dropping it if l is
// empty); n must be a clone.
func (n *Node) setPrefetchList(l []string) {
	if len(l) == 0 {
		delete(n.Metadata.Annotations, AnnotationPrefetch)
		return
	}
	if n.Metadata.Annotations == nil {
		n.Metadata.Annotations = map[string]string{}
	}
	n.Metadata.Annotations[AnnotationPrefetch] = strings.Join(l, ",")
}

// prunePrefetch drops from n's prefetch list the images it holds; it
// reports whether the list changed. n must be a clone.
func (n *Node) prunePrefetch() bool {
	l := n.PrefetchList()
	keep := l[:0:0]
	for _, img := range l {
		if !n.HasImage(img) {
			keep = append(keep, img)
		}
	}
	if len(keep) == len(l) {
		return false
	}
	n.setPrefetchList(keep)
	return true
}

// Prefetch asks the nodes matching selector (all if empty) to pull image
// in the background, and returns their names; nodes that hold it already
// are listed but not asked. EINVALID for a reference with spaces or
// commas, or a node whose list is full.
func Prefetch(ctx context.Context, s Store, image string, selector map[string]string) ([]string, error) {
	image = strings.TrimSpace(image)
	if image == "" || strings.ContainsAny(image, ", \t\n") || len(image) > 512 {
		return nil, Errorf(EINVALID, "image %q: want a reference such as busybox:1.36 or registry.lan/app:v2", image)
	}
	var names []string
	err := s.Update(ctx, func(tx Tx) error {
		names = nil
		nodes, err := TxListAs[*Node](tx, KindNode, "")
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if !MatchLabels(selector, n.Metadata.Labels) {
				continue
			}
			names = append(names, n.Metadata.Name)
			l := n.PrefetchList()
			if n.HasImage(image) || contains(l, image) {
				continue
			}
			if len(l) >= MaxPrefetch {
				return Errorf(EINVALID, "node %s has %d images to prefetch already (at most %d): wait for them", n.Metadata.Name, len(l), MaxPrefetch)
			}
			c := Clone(n)
			c.setPrefetchList(append(l, image))
			if err := tx.Put(c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, Errorf(ENOTFOUND, "no node matches the selector %v", selector)
	}
	return names, nil
}
