package edgeagent

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/backoff"
)

// Mirror is the registry a node pulls every image through: the master's
// /v2/, standing in for every registry host. containerd's mirror
// convention names the registry an image comes from in the query
// (?ns=docker.io), which the master's registry reads.
type Mirror struct {
	Host string      // host:port of the master's API
	TLS  *tls.Config // trusts the cluster CA (and nothing else)
	// Username and Password are the node's credential for /v2/: its name
	// and its MQTT password.
	Username, Password string
	// StallTimeout ends a transfer that receives nothing for that long, so
	// that a link that died silently is noticed [30s].
	StallTimeout time.Duration
	// Peers are the other nodes to fetch from when the master cannot be
	// reached (nil: none), tried in turn; PeerTLS shows this node's
	// certificate and trusts the cluster CA only. A peer never gets the
	// node's credential, and everything it sends is checked against its
	// digest like what the master sends.
	Peers   func() []Peer
	PeerTLS *tls.Config
}

// Peer is another node that may hold an image: its name (what its
// certificate must say) and the host:port of its peer server.
type Peer struct {
	Name, Host string
}

// pullMirror is a Mirror made ready: its HTTP clients and hosts.
type pullMirror struct {
	host   string
	client *http.Client
	header http.Header

	peers   func() []Peer
	peerTLS *tls.Config
	stall   time.Duration
	mu      sync.Mutex
	peerCli map[Peer]*http.Client
}

func newPullMirror(m *Mirror) *pullMirror {
	stall := m.StallTimeout
	if stall <= 0 {
		stall = 30 * time.Second
	}
	h := http.Header{}
	// Sent up front: the master would only answer 401 first, a round trip
	// per connection on a slow link.
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(m.Username+":"+m.Password)))
	pm := &pullMirror{host: m.Host, client: &http.Client{Transport: pullTransport(m.TLS, 10*time.Second, stall)}, header: h, stall: stall}
	if m.Peers != nil && m.PeerTLS != nil {
		pm.peers, pm.peerTLS, pm.peerCli = m.Peers, m.PeerTLS, map[Peer]*http.Client{}
	}
	return pm
}

// peerDialTimeout is how long a peer gets to take a connection: a LAN's
// round trip is milliseconds, and each attempt asks the peers in turn, so
// every node that is switched off or unplugged would otherwise cost each
// attempt the master's 10 s.
const peerDialTimeout = 3 * time.Second

func pullTransport(tlsConfig *tls.Config, dial, stall time.Duration) *http.Transport {
	dialer := &net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: nil, // the master and the peers are on the LAN: no proxy from the environment
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &stallConn{Conn: c, timeout: stall}, nil
		},
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute, // the master may be pulling through from upstream
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
	}
}

// peerHosts is the resolver's RegistryHosts for one peer: its client
// accepts only a certificate of the cluster CA naming that peer.
func (m *pullMirror) peerHosts(p Peer) docker.RegistryHosts {
	m.mu.Lock()
	c := m.peerCli[p]
	if c == nil {
		cfg := m.peerTLS.Clone()
		verify := cfg.VerifyPeerCertificate // the cluster CA's chain
		cfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
			if verify != nil {
				if err := verify(raw, chains); err != nil {
					return err
				}
			}
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			if leaf.Subject.CommonName != p.Name {
				return fmt.Errorf("peer at %s is %q, not %q", p.Host, leaf.Subject.CommonName, p.Name)
			}
			return nil
		}
		c = &http.Client{Transport: pullTransport(cfg, peerDialTimeout, m.stall)}
		m.peerCli[p] = c
	}
	m.mu.Unlock()
	return func(string) ([]docker.RegistryHost, error) {
		return []docker.RegistryHost{{
			Client:       c,
			Host:         p.Host,
			Scheme:       "https",
			Path:         "/v2",
			Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
		}}, nil
	}
}

// hosts is the resolver's RegistryHosts: the master for every registry.
func (m *pullMirror) hosts(string) ([]docker.RegistryHost, error) {
	return []docker.RegistryHost{{
		Client:       m.client,
		Host:         m.host,
		Scheme:       "https",
		Path:         "/v2",
		Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
		Header:       m.header,
	}}, nil
}

// stallConn fails a read that waits longer than timeout: a link that died
// without a reset (a Pi's Wi-Fi gone) would otherwise hang a pull forever.
type stallConn struct {
	net.Conn
	timeout time.Duration
}

func (c *stallConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(p)
}

// SetMirror makes the node pull every image through m (the master's
// registry); nil pulls from each image's own registry. The wiring calls it
// once it has the node's credentials, and again if they change.
func (a *Agent) SetMirror(m *Mirror) {
	a.mirrorMu.Lock()
	a.mirror = m
	a.mirrorMu.Unlock()
	if r, ok := a.rt.(*containerdRuntime); ok {
		r.setMirror(m)
	}
}

func (r *containerdRuntime) setMirror(m *Mirror) {
	if m == nil {
		r.mirror.Store(nil)
		return
	}
	r.mirror.Store(newPullMirror(m))
}

// pullLeaseTTL is how long what an unfinished pull fetched is kept for the
// next attempt to resume from, when no attempt finishes it.
const pullLeaseTTL = 24 * time.Hour

// pullLease holds what the pulls of ref fetch until one completes: a
// lease of its own, the same across attempts and agent restarts, so that
// containerd's garbage collector never takes a half-fetched layer that the
// next attempt would resume (containerd's per-pull lease ends with the
// attempt).
func (r *containerdRuntime) pullLease(ctx context.Context, ref string) (context.Context, string, error) {
	sum := sha256.Sum256([]byte(ref))
	id := "edge-pull-" + hex.EncodeToString(sum[:8])
	_, err := r.client.LeasesService().Create(ctx, leases.WithID(id), leases.WithExpiration(pullLeaseTTL),
		leases.WithLabel("edge.image", ref))
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return ctx, "", err
	}
	return leases.WithLease(ctx, id), id, nil
}

// PullImage pulls ref (through the mirror, if set), resuming what an
// earlier attempt fetched. containerd's fetch writes each blob to an ingest
// named after its digest and, when one holds data, asks the registry for
// the rest only (HTTP Range); every blob is checked against its digest
// before it is committed, and a blob already in the content store (shared
// by another image) is not fetched again. A transfer cut after it made
// progress is retried here, with backoff, for as long as ctx lasts and
// each attempt gets further; one that cannot reach the registry at all
// returns, so that the caller reports it and retries on its own schedule.
func (r *containerdRuntime) PullImage(ctx context.Context, ref string, progress func(core.PullProgress)) (core.ContainerImage, error) {
	ctx = r.ns(ctx)
	// Two pods (or a prefetch) may pull one image at once: the lease goes
	// when the last of them is done, not under the feet of the others
	// (taken and dropped under pullsMu).
	r.pullsMu.Lock()
	ctx, lease, err := r.pullLease(ctx, ref)
	if err != nil {
		r.pullsMu.Unlock()
		return core.ContainerImage{}, coreError(err)
	}
	if r.pulls == nil {
		r.pulls = map[string]int{}
	}
	r.pulls[lease]++
	r.pullsMu.Unlock()
	defer func() {
		r.pullsMu.Lock()
		r.pulls[lease]--
		if r.pulls[lease] == 0 {
			delete(r.pulls, lease)
		}
		r.pullsMu.Unlock()
	}()
	t := &pullTracker{size: map[digest.Digest]int64{}, have: map[digest.Digest]int64{}}
	if progress != nil {
		progress(core.PullProgress{})
		stop := t.report(r.pullReportEvery, progress)
		defer stop()
	}
	b := backoff.Backoff{Min: time.Second, Max: 30 * time.Second}
	for {
		before := t.fetched.Load()
		img, err := r.pullAny(ctx, ref, t)
		if err == nil {
			// The image holds its content now.
			r.pullsMu.Lock()
			if r.pulls[lease] == 1 {
				if err := r.client.LeasesService().Delete(context.WithoutCancel(ctx), leases.Lease{ID: lease}); err != nil && !errdefs.IsNotFound(err) {
					r.log().Warn("removing a pull's lease failed; it expires by itself", "image", ref, "err", err)
				}
			}
			r.pullsMu.Unlock()
			return imageOf(img), nil
		}
		if bad, got := digestMismatch(err); bad != "" {
			r.discardIngest(context.WithoutCancel(ctx), bad)
			return core.ContainerImage{}, core.Errorf(core.EINVALID,
				"blob %s as received does not match its digest (it hashes to %s): refused and discarded; the registry's copy (the master's) is corrupt or the transfer was altered", bad, got)
		}
		if ctx.Err() != nil || !transient(err) {
			return core.ContainerImage{}, pullFailure(err)
		}
		if t.fetched.Load() == before {
			// Nothing came through: the link (or the master) is down.
			msg := err.Error()
			if p := t.snapshot(); p.Total > 0 && p.Done > 0 {
				msg += fmt.Sprintf(" (%.1f/%.1f MB kept: the next attempt resumes there)", float64(p.Done)/1e6, float64(p.Total)/1e6)
			}
			return core.ContainerImage{}, &core.Error{Code: core.EUNAVAILABLE, Message: msg}
		}
		d := b.Next()
		t.setRetry(fmt.Sprintf("transfer cut (%v); resuming in %s", shortErr(err), d.Round(time.Second)))
		select {
		case <-ctx.Done():
			return core.ContainerImage{}, pullFailure(err)
		case <-time.After(d):
		}
	}
}

// peerBadFor is how long a peer that sent a blob not matching its
// digest is left out of pulls.
const peerBadFor = 10 * time.Minute

// pullAny pulls ref through the master; when the master cannot be
// reached at all, from the LAN peers in turn, each asked once. A peer
// whose blob does not match its digest is refused (the download
// discarded, the next peer asked) and left out for peerBadFor. When no
// peer could give the image, the master's error is returned, with what
// each peer said.
func (r *containerdRuntime) pullAny(ctx context.Context, ref string, t *pullTracker) (containerd.Image, error) {
	m := r.mirror.Load()
	if m == nil {
		return r.pullOnce(ctx, ref, t, nil)
	}
	t.setSource("")
	before := t.fetched.Load()
	img, err := r.pullOnce(ctx, ref, t, m.hosts)
	if err == nil || m.peers == nil || ctx.Err() != nil || !transient(err) || t.fetched.Load() != before {
		return img, err
	}
	var notes []string
	for _, p := range m.peers() {
		if r.peers.isBad(p.Name, time.Now()) {
			notes = append(notes, p.Name+": left out (it sent a corrupt blob lately)")
			continue
		}
		t.setSource("peer " + p.Name)
		from := t.fetched.Load()
		img, perr := r.pullOnce(ctx, ref, t, m.peerHosts(p))
		if perr == nil {
			r.log().Info("pulled an image from a LAN peer: the master is unreachable", "image", ref, "peer", p.Name, "bytes", t.fetched.Load()-from)
			return img, nil
		}
		if ctx.Err() != nil {
			return nil, perr
		}
		if bad, got := digestMismatch(perr); bad != "" {
			r.discardIngest(context.WithoutCancel(ctx), bad)
			t.forget(digest.Digest(bad))
			r.peers.markBad(p.Name, time.Now().Add(peerBadFor))
			r.log().Warn("refused a blob from a LAN peer: it does not match its digest; asking the next peer", "image", ref, "peer", p.Name, "blob", bad, "hashes_to", got)
			t.setRetry(fmt.Sprintf("refused blob %s from peer %s: it does not match its digest", bad, p.Name))
			notes = append(notes, fmt.Sprintf("%s: blob %s does not match its digest (it hashes to %s): refused and discarded", p.Name, bad, got))
			continue
		}
		notes = append(notes, p.Name+": "+shortErr(perr))
	}
	t.setSource("")
	return nil, &peersFailed{master: err, notes: notes}
}

// peersFailed is a pull that could reach neither the master nor a peer
// that had the image.
type peersFailed struct {
	master error
	notes  []string
}

func (e *peersFailed) Error() string {
	if len(e.notes) == 0 {
		return e.master.Error() + "; no LAN peer known to ask"
	}
	return e.master.Error() + "; LAN peers: " + strings.Join(e.notes, "; ")
}

func (e *peersFailed) Unwrap() error { return e.master }

// badPeers remembers the peers that sent a corrupt blob, until when.
type badPeers struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func (b *badPeers) markBad(name string, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.until == nil {
		b.until = map[string]time.Time{}
	}
	b.until[name] = until
}

func (b *badPeers) isBad(name string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.until[name]
	if ok && !now.Before(u) {
		delete(b.until, name)
		return false
	}
	return ok
}

func (r *containerdRuntime) pullOnce(ctx context.Context, ref string, t *pullTracker, hosts docker.RegistryHosts) (containerd.Image, error) {
	var resolver remotes.Resolver
	if hosts != nil {
		resolver = docker.NewResolver(docker.ResolverOptions{Hosts: hosts})
	} else {
		resolver = docker.NewResolver(docker.ResolverOptions{})
	}
	return r.client.Pull(ctx, ref, containerd.WithPullUnpack,
		containerd.WithResolver(trackingResolver{Resolver: resolver, t: t}),
		containerd.WithImageHandlerWrapper(t.wrap))
}

func (r *containerdRuntime) log() *slog.Logger {
	if r.logger != nil {
		return r.logger
	}
	return slog.Default()
}

var commitDigestRE = regexp.MustCompile(`unexpected commit digest (sha256:[0-9a-f]{64}), expected (sha256:[0-9a-f]{64})`)

// digestMismatch returns the digest a blob should have had and the one it
// had, if err is the content store refusing a blob that did not match.
func digestMismatch(err error) (want, got string) {
	if m := commitDigestRE.FindStringSubmatch(err.Error()); m != nil {
		return m[2], m[1]
	}
	return "", ""
}

// discardIngest drops the ingest of blob d: it holds the whole, wrong
// content, and a retry would otherwise find it complete and commit it
// (and fail) again without fetching anything.
func (r *containerdRuntime) discardIngest(ctx context.Context, d string) {
	cs := r.client.ContentStore()
	sts, err := cs.ListStatuses(ctx)
	if err != nil {
		return
	}
	for _, st := range sts {
		if st.Expected.String() == d || strings.HasSuffix(st.Ref, d) {
			if err := cs.Abort(ctx, st.Ref); err != nil && !errdefs.IsNotFound(err) {
				r.log().Warn("discarding a corrupt download failed", "ref", st.Ref, "err", err)
			}
		}
	}
}

// transient reports whether err is a transfer cut short (the link, not
// the registry's answer): worth resuming at once.
func transient(err error) bool {
	var ne net.Error
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.As(err, &ne),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE):
		return true
	}
	s := err.Error()
	for _, m := range []string{"connection reset", "broken pipe", "unexpected EOF", "i/o timeout", "connection refused",
		"no route to host", "network is unreachable", "TLS handshake", "failed to read expected number of bytes"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// pullFailure gives a failed pull its code: the registry said it has no
// such image (ENOTFOUND), could not be reached (EUNAVAILABLE), or else.
func pullFailure(err error) error {
	if errdefs.IsNotFound(err) {
		return &core.Error{Code: core.ENOTFOUND, Message: err.Error()}
	}
	if transient(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &core.Error{Code: core.EUNAVAILABLE, Message: err.Error()}
	}
	return coreError(err)
}

// shortErr is the end of an error chain (the part that says what broke).
func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s)-i > 8 {
		return s[i+2:]
	}
	return s
}

// pullTracker follows a pull's bytes across its attempts: what the image
// needs (its manifest's config and layers), what the node holds of each
// (committed, or in an ingest being resumed), and how many bytes came over
// the link.
type pullTracker struct {
	fetched atomic.Int64 // received over the link, all attempts

	mu     sync.Mutex
	size   map[digest.Digest]int64
	have   map[digest.Digest]int64
	retry  string
	source string // "peer NAME" while a peer is asked; "" for the master
}

// wrap sees each descriptor the pull handles: a manifest's children are
// what the image needs; a blob handled without error is held.
func (t *pullTracker) wrap(h images.Handler) images.Handler {
	return images.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		children, err := h.Handle(ctx, desc)
		if err != nil {
			return children, err
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if images.IsManifestType(desc.MediaType) {
			for _, c := range children {
				if !images.IsManifestType(c.MediaType) && !images.IsIndexType(c.MediaType) {
					t.size[c.Digest] = c.Size
				}
			}
		} else if n, ok := t.size[desc.Digest]; ok {
			t.have[desc.Digest] = n
		}
		return children, nil
	})
}

// forget drops what the node held of d (a download discarded).
func (t *pullTracker) forget(d digest.Digest) {
	t.mu.Lock()
	delete(t.have, d)
	t.mu.Unlock()
}

func (t *pullTracker) setSource(s string) {
	t.mu.Lock()
	t.source = s
	t.mu.Unlock()
}

func (t *pullTracker) setRetry(s string) {
	t.mu.Lock()
	t.retry = s
	t.mu.Unlock()
}

func (t *pullTracker) snapshot() core.PullProgress {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := core.PullProgress{Retry: t.retry, Source: t.source}
	for d, n := range t.size {
		p.Total += n
		p.Done += min(t.have[d], n)
	}
	return p
}

// report calls progress every interval while the figures change, from one
// goroutine; stop ends it and waits, so no call comes after.
func (t *pullTracker) report(interval time.Duration, progress func(core.PullProgress)) (stop func()) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		var last core.PullProgress
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if p := t.snapshot(); p != last {
				last = p
				progress(p)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// trackingResolver counts what its fetchers receive.
type trackingResolver struct {
	remotes.Resolver
	t *pullTracker
}

func (r trackingResolver) Fetcher(ctx context.Context, ref string) (remotes.Fetcher, error) {
	f, err := r.Resolver.Fetcher(ctx, ref)
	if err != nil {
		return nil, err
	}
	return trackingFetcher{f: f, t: r.t}, nil
}

type trackingFetcher struct {
	f remotes.Fetcher
	t *pullTracker
}

func (f trackingFetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := f.f.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	return &trackedReader{rc: rc, t: f.t, d: desc.Digest}, nil
}

// trackedReader counts a blob's bytes. It must stay an io.Seeker:
// containerd resumes a blob by seeking the fetcher's reader to the
// ingest's offset, which turns into a Range request; a reader that cannot
// seek would be read from the start and the bytes before the offset
// thrown away.
type trackedReader struct {
	rc io.ReadCloser
	t  *pullTracker
	d  digest.Digest
}

func (r *trackedReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if n > 0 {
		r.t.fetched.Add(int64(n))
		r.t.mu.Lock()
		r.t.have[r.d] += int64(n)
		r.t.mu.Unlock()
	}
	return n, err
}

func (r *trackedReader) Seek(offset int64, whence int) (int64, error) {
	s, ok := r.rc.(io.Seeker)
	if !ok {
		return 0, fmt.Errorf("fetcher for %s cannot resume: %w", r.d, errdefs.ErrNotImplemented)
	}
	off, err := s.Seek(offset, whence)
	if err == nil {
		r.t.mu.Lock()
		r.t.have[r.d] = off
		r.t.mu.Unlock()
	}
	return off, err
}

func (r *trackedReader) Close() error { return r.rc.Close() }

// pullMessage is a container's waiting message while its image comes.
func pullMessage(image string, p core.PullProgress) string {
	msg := fmt.Sprintf("Pulling image %q", image)
	if p.Source != "" {
		msg += " from " + p.Source
	}
	if p.Total > 0 {
		msg += fmt.Sprintf(": %.1f/%.1f MB", float64(p.Done)/1e6, float64(p.Total)/1e6)
	}
	if p.Retry != "" {
		msg += " (" + p.Retry + ")"
	}
	return msg
}
