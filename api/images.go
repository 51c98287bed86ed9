package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/edgeorch/edge/core"
)

// Images: import (the request body is the archive), list, remove and
// prefetch. The import's body may take longer than ReadTimeout to arrive
// over a slow link: its read deadline moves as bytes come, as the
// registry's write deadline does.

func (s *Server) imagesOr404(w http.ResponseWriter) bool {
	if s.Images == nil {
		Error(w, core.Errorf(core.ENOTFOUND, "this master keeps no images"))
		return false
	}
	return true
}

func (s *Server) handleImportImages(w http.ResponseWriter, r *http.Request) {
	if !s.imagesOr404(w) {
		return
	}
	rc := http.NewResponseController(w)
	body := &deadlineReader{r: r.Body, rc: rc, timeout: s.ReadTimeout}
	res, err := s.Images.ImportImages(r.Context(), body, r.URL.Query().Get("name"))
	if err != nil {
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			err = core.Errorf(core.EUNAVAILABLE, "the archive stopped arriving for %v: nothing was imported", s.ReadTimeout)
		} else if r.Context().Err() == nil {
			// Refused before its end: read the rest (for a minute at most),
			// or closing the connection on unread bytes resets it and the
			// client never sees why.
			rc.SetReadDeadline(time.Now().Add(time.Minute))
			io.Copy(io.Discard, r.Body)
		}
		Error(w, err)
		return
	}
	s.Log.Info("images imported", "images", len(res.Images), "new-blobs", res.Blobs, "bytes", res.Bytes)
	writeJSON(w, res)
}

func (s *Server) handleListImages(w http.ResponseWriter, r *http.Request) {
	if !s.imagesOr404(w) {
		return
	}
	imgs, err := s.Images.ListImages(r.Context())
	if err != nil {
		Error(w, err)
		return
	}
	nodes, err := core.ListAs[*core.Node](r.Context(), s.Store, core.KindNode, "")
	if err != nil {
		Error(w, err)
		return
	}
	for i := range imgs {
		for _, n := range nodes {
			if n.HasImage(imgs[i].Ref) {
				imgs[i].Nodes = append(imgs[i].Nodes, n.Metadata.Name)
			}
		}
		sort.Strings(imgs[i].Nodes)
	}
	writeJSON(w, map[string]any{"items": imgs})
}

func (s *Server) handleRemoveImage(w http.ResponseWriter, r *http.Request) {
	if !s.imagesOr404(w) {
		return
	}
	ref := r.URL.Query().Get("ref")
	if ref == "" {
		Error(w, core.Errorf(core.EINVALID, "ref is required"))
		return
	}
	if err := s.Images.RemoveImage(r.Context(), ref); err != nil {
		Error(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// PrefetchRequest asks nodes to pull an image in the background.
type PrefetchRequest struct {
	Image    string            `json:"image"`
	Selector map[string]string `json:"selector,omitempty"`
}

// PrefetchResponse names the nodes asked.
type PrefetchResponse struct {
	Nodes []string `json:"nodes"`
}

func (s *Server) handlePrefetch(w http.ResponseWriter, r *http.Request) {
	var req PrefetchRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		Error(w, core.Errorf(core.EINVALID, "prefetch request: %v", err))
		return
	}
	nodes, err := core.Prefetch(r.Context(), s.Store, req.Image, req.Selector)
	if err != nil {
		Error(w, err)
		return
	}
	writeJSON(w, PrefetchResponse{Nodes: nodes})
}

// deadlineReader pushes the read deadline forward as a body arrives (at
// most once a second).
type deadlineReader struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
	last    time.Time
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(d.last) > time.Second {
		d.rc.SetReadDeadline(now.Add(d.timeout))
		d.last = now
	}
	return d.r.Read(p)
}

// Images returns the images the master stores.
func (c *Client) Images(ctx context.Context) ([]core.ImageInfo, error) {
	var out struct {
		Items []core.ImageInfo `json:"items"`
	}
	err := c.doJSON(ctx, "GET", "/api/v1/images", nil, nil, &out)
	return out.Items, err
}

// ImportImages sends an image archive; name names an image that has
// none of its own ("" for none).
func (c *Client) ImportImages(ctx context.Context, archive io.Reader, size int64, name string) (*core.ImageImport, error) {
	q := url.Values{}
	if name != "" {
		q.Set("name", name)
	}
	req, err := http.NewRequestWithContext(ctx, "POST", c.Server+"/api/v1/images/import?"+q.Encode(), archive)
	if err != nil {
		return nil, err
	}
	if size >= 0 {
		req.ContentLength = size
	}
	req.Header.Set("Content-Type", "application/x-tar")
	var out core.ImageImport
	if err := c.doRequest(req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveImage removes an image tag from the master's store.
func (c *Client) RemoveImage(ctx context.Context, ref string) error {
	return c.doJSON(ctx, "DELETE", "/api/v1/images", url.Values{"ref": {ref}}, nil, nil)
}

// Prefetch asks the nodes selector matches to pull image.
func (c *Client) Prefetch(ctx context.Context, image string, selector map[string]string) ([]string, error) {
	var out PrefetchResponse
	err := c.doJSON(ctx, "POST", "/api/v1/images/prefetch", nil, PrefetchRequest{Image: image, Selector: selector}, &out)
	return out.Nodes, err
}
