package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"

	"github.com/edgeorch/edge/core"
)

// Registry serves the read side of the OCI distribution API (/v2/) from the
// Store, pulling through from upstream registries on a miss. It does no
// authentication: the API server wraps it.
//
// Repository names are full references (docker.io/library/busybox,
// 127.0.0.1:5000/app); a short one is normalised as Docker does (busybox ->
// docker.io/library/busybox). When a node uses the master as a mirror of a
// registry, containerd names the registry in the query (`?ns=docker.io`) and
// the repository is then ns/name.
//
// A blob is fetched from upstream once: concurrent requests for it share
// one fetch and read the bytes as they are written to the store; the last
// byte is released only once the digest has been checked, so no client
// ever receives a complete blob that was not verified.
type Registry struct {
	Store *Store
	// Registries are the mirrors, credentials and TLS settings of
	// upstreams (nil: pull from the registry each reference names).
	Registries *RegistriesConfig
	Log        *slog.Logger
	// TagTTL is how long a stored tag is served before its upstream is
	// asked (HEAD) whether it moved; when the upstream cannot be reached,
	// the stored tag is served anyway. Negative: stored tags are never
	// re-checked [5m].
	TagTTL time.Duration
	// Platform is what an index resolves to for a client that accepts no
	// index (as registries do, linux/amd64) [linux/amd64].
	PlatformOS, PlatformArch string
	// Dial opens upstream connections, behind the guard that refuses hosts
	// nothing named (nil: net.Dialer). Tests record dials with it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// StallTimeout ends an upstream blob transfer that sends nothing for
	// that long [60s].
	StallTimeout time.Duration

	up        *upstream
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	mu        sync.Mutex
	flights   map[digest.Digest]*flight
	checked   map[string]time.Time // repo:tag -> when upstream last confirmed it
	manifests singleflight.Group

	clients       sync.Map     // client name -> *clientStats
	waiters       atomic.Int64 // requests following a blob in flight
	blobFetches   atomic.Int64 // upstream blob GETs started
	bytesUpstream atomic.Int64
	bytesServed   atomic.Int64
}

// Open prepares the registry.
func (r *Registry) Open() error {
	if r.Store == nil {
		return errors.New("images: registry needs a store")
	}
	if r.Log == nil {
		r.Log = slog.Default()
	}
	if r.TagTTL == 0 {
		r.TagTTL = 5 * time.Minute
	}
	if r.PlatformOS == "" {
		r.PlatformOS, r.PlatformArch = "linux", "amd64"
	}
	if r.StallTimeout == 0 {
		r.StallTimeout = 60 * time.Second
	}
	r.up = newUpstream(r.Registries, r.Dial)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.flights = map[digest.Digest]*flight{}
	r.checked = map[string]time.Time{}
	return nil
}

// Close ends upstream transfers and waits for them. It is idempotent.
func (r *Registry) Close() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.wg.Wait()
	r.up.close()
	return r.Store.Flush()
}

// Pulling reports whether blobs are being pulled through from upstream
// (the garbage collector waits for them).
func (r *Registry) Pulling() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.flights) > 0
}

// Stats returns counters for /metrics.
func (r *Registry) Stats() map[string]float64 {
	blobs, size, _ := r.Store.Usage()
	out := map[string]float64{
		"edge_registry_upstream_blob_fetches_total": float64(r.blobFetches.Load()),
		"edge_registry_blob_waiters":                float64(r.waiters.Load()),
		"edge_registry_upstream_bytes_total":        float64(r.bytesUpstream.Load()),
		"edge_registry_served_bytes_total":          float64(r.bytesServed.Load()),
		"edge_content_blobs":                        float64(blobs),
		"edge_content_bytes":                        float64(size),
	}
	r.clients.Range(func(k, v any) bool {
		c := v.(*clientStats)
		l := fmt.Sprintf("{client=%q}", k)
		out["edge_registry_client_blob_requests_total"+l] = float64(c.blobGets.Load())
		out["edge_registry_client_blob_bytes_total"+l] = float64(c.blobBytes.Load())
		return true
	})
	return out
}

// clientStats counts what one client (a node, or the admin) pulled: how
// many blob GETs, how many blob bytes served. A node that fetches a layer
// twice, or restarts one instead of resuming it, shows here.
type clientStats struct {
	blobGets, blobBytes atomic.Int64
}

// client returns the counters of req's client, as the API server named
// it (core.WithRequester); nil if unnamed.
func (r *Registry) client(req *http.Request) *clientStats {
	name := core.Requester(req.Context())
	if name == "" {
		return nil
	}
	if c, ok := r.clients.Load(name); ok {
		return c.(*clientStats)
	}
	c, _ := r.clients.LoadOrStore(name, &clientStats{})
	return c.(*clientStats)
}

// Distribution spec error codes.
const (
	errBlobUnknown     = "BLOB_UNKNOWN"
	errManifestUnknown = "MANIFEST_UNKNOWN"
	errNameUnknown     = "NAME_UNKNOWN"
	errNameInvalid     = "NAME_INVALID"
	errDigestInvalid   = "DIGEST_INVALID"
	errManifestInvalid = "MANIFEST_INVALID"
	errUnsupported     = "UNSUPPORTED"
	errUnauthorized    = "UNAUTHORIZED"
	errUnavailable     = "UNAVAILABLE"
)

// WriteError writes an error in the distribution spec's shape.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.Header().Del("Docker-Content-Digest")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]any{{"code": code, "message": msg}}})
}

// WriteUnauthorized refuses a request that has no valid credentials, with
// the challenge clients (containerd, skopeo, docker) answer with Basic.
func WriteUnauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Basic realm="edgemaster"`)
	WriteError(w, http.StatusUnauthorized, errUnauthorized, msg)
}

// writeCoreError maps a core error: ENOTFOUND to the "unknown" code given.
func (r *Registry) writeCoreError(w http.ResponseWriter, err error, unknown string) {
	msg := core.ErrorMessage(err)
	switch core.ErrorCode(err) {
	case core.ENOTFOUND, core.EUNAUTHORIZED: // an upstream that refuses us: not found, as Docker Hub says of private repos
		WriteError(w, http.StatusNotFound, unknown, msg)
	case core.EINVALID:
		WriteError(w, http.StatusBadGateway, errUnavailable, msg)
	case core.EUNAVAILABLE:
		WriteError(w, http.StatusServiceUnavailable, errUnavailable, msg)
	default:
		r.Log.Error("registry: internal error", "err", err)
		WriteError(w, http.StatusInternalServerError, "UNKNOWN", msg)
	}
}

// ServeHTTP serves /v2/.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		WriteError(w, http.StatusMethodNotAllowed, errUnsupported, "this registry is read-only: import images with edgectl image import")
		return
	}
	p, ok := strings.CutPrefix(req.URL.Path, "/v2/")
	if !ok {
		WriteError(w, http.StatusNotFound, errNameUnknown, "not a /v2/ path")
		return
	}
	if p == "" {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("{}\n"))
		return
	}
	segs := strings.Split(p, "/")
	n := len(segs)
	if n < 3 {
		WriteError(w, http.StatusNotFound, errNameUnknown, "want /v2/NAME/manifests/REF, /v2/NAME/blobs/DIGEST or /v2/NAME/tags/list")
		return
	}
	name, kind, last := strings.Join(segs[:n-2], "/"), segs[n-2], segs[n-1]
	ref, err := ResolveName(name, req.URL.Query().Get("ns"))
	if err != nil {
		WriteError(w, http.StatusBadRequest, errNameInvalid, err.Error())
		return
	}
	switch {
	case kind == "manifests":
		r.serveManifest(w, req, ref, last)
	case kind == "blobs":
		d, err := digest.Parse(last)
		if err == nil {
			err = CheckDigest(d)
		}
		if err != nil {
			WriteError(w, http.StatusBadRequest, errDigestInvalid, fmt.Sprintf("digest %q: %v", last, core.ErrorMessage(err)))
			return
		}
		r.serveBlob(w, req, ref, d)
	case kind == "tags" && last == "list":
		r.serveTags(w, req, ref, name)
	default:
		WriteError(w, http.StatusNotFound, errNameUnknown, "want /v2/NAME/manifests/REF, /v2/NAME/blobs/DIGEST or /v2/NAME/tags/list")
	}
}

// ResolveName turns a /v2/ repository name (and containerd's ns query, the
// registry host the master mirrors) into a registry host and path there.
func ResolveName(name, ns string) (Repository, error) {
	full := name
	if ns != "" {
		if err := checkHost(ns); err != nil {
			return Repository{}, fmt.Errorf("ns: %v", err)
		}
		full = ns + "/" + name
	}
	named, err := reference.ParseNormalizedNamed(full)
	if err != nil {
		return Repository{}, fmt.Errorf("repository name %q: %v", full, err)
	}
	if !reference.IsNameOnly(named) {
		return Repository{}, fmt.Errorf("repository name %q has a tag or digest", full)
	}
	host, path := reference.Domain(named), reference.Path(named)
	if ns != "" && host != ns && !(ns == "index.docker.io" && host == "docker.io") {
		// "a.b/c" with ns=x would otherwise be pulled from a.b.
		return Repository{}, fmt.Errorf("repository name %q: a registry host in the name and ns=%s", name, ns)
	}
	return Repository{Host: host, Path: path}, nil
}

func (r *Registry) serveTags(w http.ResponseWriter, req *http.Request, ref Repository, name string) {
	tags, err := r.Store.Tags(ref.String())
	if err != nil {
		WriteError(w, http.StatusNotFound, errNameUnknown, fmt.Sprintf("repository %s: no tags stored on the master (it lists what it holds)", ref))
		return
	}
	q := req.URL.Query()
	if last := q.Get("last"); last != "" {
		i := sort.SearchStrings(tags, last)
		if i < len(tags) && tags[i] == last {
			i++
		}
		tags = tags[i:]
	}
	if n, err := strconv.Atoi(q.Get("n")); err == nil && n >= 0 && n < len(tags) {
		tags = tags[:n]
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?n=%d&last=%s>; rel="next"`, name, n, tags[len(tags)-1]))
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"name": name, "tags": tags})
}

// accepts reports whether an Accept header list admits mediaType (no
// Accept header admits anything).
func accepts(h []string, mediaType string) bool {
	any := false
	for _, v := range h {
		for _, part := range strings.Split(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			any = true
			if mt == mediaType || mt == "*/*" || mt == "application/*" {
				return true
			}
		}
	}
	return !any
}

func (r *Registry) serveManifest(w http.ResponseWriter, req *http.Request, ref Repository, tagOrDigest string) {
	isDigest := strings.Contains(tagOrDigest, ":")
	if isDigest {
		d, err := digest.Parse(tagOrDigest)
		if err == nil {
			err = CheckDigest(d)
		}
		if err != nil {
			WriteError(w, http.StatusBadRequest, errDigestInvalid, fmt.Sprintf("digest %q: %v", tagOrDigest, core.ErrorMessage(err)))
			return
		}
	} else if !reference.TagRegexp.MatchString(tagOrDigest) || len(tagOrDigest) > 128 {
		WriteError(w, http.StatusBadRequest, errManifestInvalid, fmt.Sprintf("tag %q is not a valid tag", tagOrDigest))
		return
	}
	mt, data, d, err := r.getManifest(req.Context(), ref, tagOrDigest)
	if err != nil {
		r.writeCoreError(w, err, errManifestUnknown)
		return
	}
	if IsIndex(mt) && !accepts(req.Header.Values("Accept"), mt) {
		// A client that takes no index gets one platform's manifest, as
		// from Docker Hub.
		p, err := ParseManifest(mt, data)
		if err != nil {
			r.writeCoreError(w, err, errManifestUnknown)
			return
		}
		desc, ok := p.SelectPlatform(r.PlatformOS, r.PlatformArch, "")
		if !ok {
			WriteError(w, http.StatusNotFound, errManifestUnknown, fmt.Sprintf("%s:%s is an index with no %s/%s manifest, and the client accepts no index", ref, tagOrDigest, r.PlatformOS, r.PlatformArch))
			return
		}
		if mt, data, d, err = r.getManifest(req.Context(), ref, desc.Digest.String()); err != nil {
			r.writeCoreError(w, err, errManifestUnknown)
			return
		}
	}
	w.Header().Set("Content-Type", mt)
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Header().Set("ETag", `"`+d.String()+`"`)
	if req.Method == http.MethodHead {
		return
	}
	w.Write(data)
}

// getManifest returns a manifest from the store, or pulls it through.
func (r *Registry) getManifest(ctx context.Context, ref Repository, tagOrDigest string) (string, []byte, digest.Digest, error) {
	repo := ref.String()
	if d, err := digest.Parse(tagOrDigest); err == nil {
		if info, err := r.Store.Manifest(repo, d); err == nil {
			if data, err := r.Store.ReadManifest(d); err == nil {
				return info.MediaType, data, d, nil
			}
		}
		return r.pullManifest(ctx, ref, tagOrDigest)
	}
	tag := tagOrDigest
	t, err := r.Store.Tag(repo, tag)
	if err != nil {
		return r.pullManifest(ctx, ref, tag)
	}
	r.Store.Touch(repo, tag)
	// An imported (pinned) tag is the cluster's own: an upstream tag of the
	// same name never replaces it.
	if r.TagTTL > 0 && !t.Pinned && !r.fresh(repo, tag) {
		// Short: on a link that is down, the stored tag is the answer, and
		// the next check waits another TagTTL.
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		now, err := r.up.manifestDigest(cctx, ref, tag)
		cancel()
		switch {
		case err != nil:
			r.markChecked(repo, tag)
			r.Log.Info("registry: upstream cannot say whether the tag moved; serving the stored one", "image", repo+":"+tag, "err", err)
		case now != t.Digest:
			r.Log.Info("registry: tag moved upstream", "image", repo+":"+tag, "from", t.Digest, "to", now)
			if mt, data, d, err := r.pullManifest(ctx, ref, tag); err == nil {
				return mt, data, d, nil
			}
		default:
			r.markChecked(repo, tag)
		}
	}
	info, err := r.Store.Manifest(repo, t.Digest)
	if err != nil {
		return r.pullManifest(ctx, ref, tag)
	}
	data, err := r.Store.ReadManifest(t.Digest)
	if err != nil {
		return r.pullManifest(ctx, ref, tag)
	}
	return info.MediaType, data, t.Digest, nil
}

func (r *Registry) fresh(repo, tag string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Since(r.checked[repo+":"+tag]) < r.TagTTL
}

func (r *Registry) markChecked(repo, tag string) {
	r.mu.Lock()
	r.checked[repo+":"+tag] = time.Now()
	r.mu.Unlock()
}

type pulledManifest struct {
	mt   string
	data []byte
	d    digest.Digest
}

// pullManifest fetches a manifest once for all who ask at the same time,
// and stores it (by digest, and under its tag).
func (r *Registry) pullManifest(ctx context.Context, ref Repository, tagOrDigest string) (string, []byte, digest.Digest, error) {
	ch := r.manifests.DoChan(ref.String()+"@"+tagOrDigest, func() (any, error) {
		fctx, cancel := context.WithTimeout(r.ctx, 2*time.Minute)
		defer cancel()
		mt, data, err := r.up.manifest(fctx, ref, tagOrDigest)
		if err != nil {
			return nil, err
		}
		tag := tagOrDigest
		if strings.Contains(tag, ":") {
			tag = ""
		}
		d, err := r.Store.PutManifest(ref.String(), tag, mt, data)
		if err != nil {
			return nil, err
		}
		if tag != "" {
			r.markChecked(ref.String(), tag)
		}
		r.Log.Debug("registry: pulled manifest", "image", ref.String(), "ref", tagOrDigest, "digest", d, "mediaType", mt)
		return pulledManifest{mt, data, d}, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return "", nil, "", res.Err
		}
		p := res.Val.(pulledManifest)
		return p.mt, p.data, p.d, nil
	case <-ctx.Done():
		return "", nil, "", core.Errorf(core.EUNAVAILABLE, "%v", ctx.Err())
	}
}

func blobHeaders(w http.ResponseWriter, d digest.Digest) {
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+d.String()+`"`)
	w.Header().Set("Cache-Control", "max-age=31536000")
}

// serveStored serves a stored blob, Range requests included.
func (r *Registry) serveStored(w http.ResponseWriter, req *http.Request, f *os.File, d digest.Digest) {
	defer f.Close()
	blobHeaders(w, d)
	cw := &countingWriter{ResponseWriter: w, n: &r.bytesServed}
	if c := r.client(req); c != nil {
		cw.c = &c.blobBytes
	}
	http.ServeContent(cw, req, "", time.Time{}, f)
}

func (r *Registry) serveBlob(w http.ResponseWriter, req *http.Request, ref Repository, d digest.Digest) {
	if c := r.client(req); c != nil && req.Method == http.MethodGet {
		c.blobGets.Add(1)
	}
	if f, err := r.Store.OpenBlob(d); err == nil {
		r.serveStored(w, req, f, d)
		return
	}
	if req.Method == http.MethodHead {
		ctx, cancel := context.WithTimeout(req.Context(), 30*time.Second)
		defer cancel()
		resp, err := r.up.blob(ctx, ref, d, http.MethodHead)
		if err != nil {
			r.writeCoreError(w, err, errBlobUnknown)
			return
		}
		resp.Body.Close()
		blobHeaders(w, d)
		if resp.ContentLength >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		}
		return
	}
	fl := r.join(ref, d)
	r.waiters.Add(1)
	defer r.waiters.Add(-1)
	select {
	case <-fl.ready:
	case <-req.Context().Done():
		return
	}
	if req.Header.Get("Range") != "" {
		// A ranged read of a blob in flight waits for all of it.
		if err := fl.wait(req.Context()); err != nil {
			r.writeCoreError(w, err, errBlobUnknown)
			return
		}
		f, err := r.Store.OpenBlob(d)
		if err != nil {
			r.writeCoreError(w, err, errBlobUnknown)
			return
		}
		r.serveStored(w, req, f, d)
		return
	}
	r.follow(w, req, fl)
}

// flight is one upstream blob transfer, followed by every request for the
// blob while it runs.
type flight struct {
	d     digest.Digest
	ready chan struct{} // closed once the upstream answered (or failed)

	mu      sync.Mutex
	changed chan struct{} // closed (and replaced) at every step
	path    string        // the temp file
	size    int64         // -1: unknown
	written int64
	done    bool
	err     error
}

func (fl *flight) notifyLocked() {
	close(fl.changed)
	fl.changed = make(chan struct{})
}

// wait waits for the transfer to end and returns its error.
func (fl *flight) wait(ctx context.Context) error {
	for {
		fl.mu.Lock()
		done, err, ch := fl.done, fl.err, fl.changed
		fl.mu.Unlock()
		if done {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return core.Errorf(core.EUNAVAILABLE, "%v", ctx.Err())
		}
	}
}

// join returns the transfer of d, starting it if none runs.
func (r *Registry) join(ref Repository, d digest.Digest) *flight {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fl := r.flights[d]; fl != nil {
		return fl
	}
	fl := &flight{d: d, ready: make(chan struct{}), changed: make(chan struct{}), size: -1}
	r.flights[d] = fl
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := r.fetch(ref, fl)
		fl.mu.Lock()
		if !fl.done {
			fl.done, fl.err = true, err
			fl.notifyLocked()
		}
		fl.mu.Unlock()
		select {
		case <-fl.ready:
		default:
			close(fl.ready)
		}
		r.mu.Lock()
		delete(r.flights, d)
		r.mu.Unlock()
		if err != nil {
			r.Log.Warn("registry: blob pull failed", "image", ref.String(), "digest", d, "err", err)
		}
	}()
	return fl
}

// fetch pulls blob fl.d into the store.
func (r *Registry) fetch(ref Repository, fl *flight) error {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	r.blobFetches.Add(1)
	resp, err := r.up.blob(ctx, ref, fl.d, http.MethodGet)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	bw, err := r.Store.Writer(fl.d, resp.ContentLength)
	if err != nil {
		return err
	}
	defer bw.Close()
	fl.mu.Lock()
	fl.path, fl.size = bw.Path(), resp.ContentLength
	fl.mu.Unlock()
	close(fl.ready)
	stall := time.AfterFunc(r.StallTimeout, cancel)
	defer stall.Stop()
	buf := make([]byte, 1<<20)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			stall.Reset(r.StallTimeout)
			if _, err := bw.Write(buf[:n]); err != nil {
				return err
			}
			r.bytesUpstream.Add(int64(n))
			fl.mu.Lock()
			fl.written += int64(n)
			fl.notifyLocked()
			fl.mu.Unlock()
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil && r.ctx.Err() == nil {
				return core.Errorf(core.EUNAVAILABLE, "blob %s: upstream sent nothing for %v", fl.d, r.StallTimeout)
			}
			return core.Errorf(core.EUNAVAILABLE, "blob %s: %v", fl.d, rerr)
		}
	}
	// Commit under the flight's lock: a follower opens the temp file
	// under it too, so it never finds the file renamed away.
	fl.mu.Lock()
	defer fl.mu.Unlock()
	err = bw.Commit()
	fl.done, fl.err = true, err
	fl.notifyLocked()
	if err == nil {
		r.Log.Debug("registry: pulled blob", "image", ref.String(), "digest", fl.d, "size", fl.written)
	}
	return err
}

// follow streams a blob in flight to one client.
func (r *Registry) follow(w http.ResponseWriter, req *http.Request, fl *flight) {
	fl.mu.Lock()
	if fl.done {
		err := fl.err
		fl.mu.Unlock()
		if err != nil {
			r.writeCoreError(w, err, errBlobUnknown)
			return
		}
		f, err := r.Store.OpenBlob(fl.d)
		if err != nil {
			r.writeCoreError(w, err, errBlobUnknown)
			return
		}
		r.serveStored(w, req, f, fl.d)
		return
	}
	f, err := os.Open(fl.path)
	size := fl.size
	fl.mu.Unlock()
	if err != nil {
		r.writeCoreError(w, err, errBlobUnknown)
		return
	}
	defer f.Close()
	blobHeaders(w, fl.d)
	if size >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	buf := make([]byte, 256<<10)
	var off int64
	started := false
	for {
		fl.mu.Lock()
		avail, done, ferr, ch := fl.written, fl.done, fl.err, fl.changed
		fl.mu.Unlock()
		if done && ferr != nil {
			if !started {
				r.writeCoreError(w, ferr, errBlobUnknown)
				return
			}
			panic(http.ErrAbortHandler) // cut the response: the client must not take it as whole
		}
		if !done {
			avail-- // the last byte waits for the digest check
		}
		if off < avail {
			if !started {
				w.WriteHeader(http.StatusOK)
				started = true
			}
			n, err := io.CopyBuffer(w, io.NewSectionReader(f, off, avail-off), buf)
			off += n
			r.bytesServed.Add(n)
			if c := r.client(req); c != nil {
				c.blobBytes.Add(n)
			}
			if err != nil {
				return // the client went away
			}
			continue
		}
		if done {
			if !started {
				w.WriteHeader(http.StatusOK)
			}
			return
		}
		select {
		case <-ch:
		case <-req.Context().Done():
			return
		}
	}
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
	c *atomic.Int64 // the client's, if named
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	if c.c != nil {
		c.c.Add(int64(n))
	}
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
