package images

import (
	"context"
	"io"

	"github.com/edgeorch/edge/core"
)

// Service is the content store as the API sees it (core.ImageService).
type Service struct {
	Store *Store
	// Collector, if set, is kicked after an import or removal, so blobs
	// nothing names any more are freed soon.
	Collector *Collector
}

var _ core.ImageService = (*Service)(nil)

// ImportImages implements core.ImageService.
func (sv *Service) ImportImages(ctx context.Context, r io.Reader, name string) (*core.ImageImport, error) {
	res, err := sv.Store.Import(&ctxReader{ctx: ctx, r: r}, ImportOptions{Name: name})
	if err != nil {
		return nil, err
	}
	out := &core.ImageImport{Blobs: res.Blobs, Bytes: res.Bytes}
	for _, img := range res.Images {
		out.Images = append(out.Images, core.ImageInfo{Ref: img.Ref(), Digest: img.Digest.String(), MediaType: img.MediaType, Size: img.Size, Pinned: true})
	}
	if sv.Collector != nil {
		sv.Collector.Kick()
	}
	return out, nil
}

// ListImages implements core.ImageService.
func (sv *Service) ListImages(ctx context.Context) ([]core.ImageInfo, error) {
	out := []core.ImageInfo{}
	for _, t := range sv.Store.Images() {
		info := core.ImageInfo{Ref: t.Repo + ":" + t.Tag, Digest: t.Digest.String(), MediaType: t.MediaType,
			Size: sv.Store.ImageSize(t.Digest), Pinned: t.Pinned}
		if !t.LastUsed.IsZero() {
			info.LastUsed = core.NewTime(t.LastUsed)
		}
		out = append(out, info)
	}
	return out, nil
}

// RemoveImage implements core.ImageService.
func (sv *Service) RemoveImage(ctx context.Context, ref string) error {
	n, err := parseImageName(ref)
	if err != nil {
		return core.Errorf(core.EINVALID, "%v", err)
	}
	repo, tag := repoTag(n, "")
	if err := sv.Store.Remove(repo, tag); err != nil {
		return err
	}
	if sv.Collector != nil {
		sv.Collector.Kick()
	}
	return nil
}

// ctxReader stops reading once ctx is done (the client went away).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
