package edgeagent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/net/netutil"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/peer"
)

// DefaultPeerPort is where agents serve their image content to LAN peers
// (edgeagent --peer-port); every node of a cluster uses the same one.
const DefaultPeerPort = 7445

// PeerContent is what a peer server reads: a node's content store.
type PeerContent interface {
	content.InfoProvider
	content.Provider
}

// PeerServer serves this node's image content to the other nodes of the
// cluster while the master is away: the read side of the OCI distribution
// API, limited to what is content-addressed (blobs and manifests by
// digest; a manifest by tag answers with the digest this node holds, which
// the fetching node checks like every byte it gets). It never writes,
// lists or deletes anything, and answers only TLS clients with a
// certificate signed by the cluster CA (another node's, see api.NodeCert).
type PeerServer struct {
	Addr    string
	TLS     *tls.Config // api.PeerServerTLS: client certificates required
	Content PeerContent
	// Resolve returns the manifest (or index) an image name points to on
	// this node (ENOTFOUND if it holds no such image).
	Resolve func(ctx context.Context, ref string) (ocispec.Descriptor, error)
	// Member reports whether a node (a client certificate's name) is in
	// the cluster as this node last knew it (nil: every certificate of
	// the cluster CA is): a deleted node's certificate stops working
	// once its peers hear of it.
	Member func(node string) bool
	// MaxConns caps the connections served at once; more wait to be
	// accepted [256].
	MaxConns int
	// MaxConnsPerHost caps those from one address (loopback exempt); more
	// are closed at once [16].
	MaxConnsPerHost int
	Log             *slog.Logger

	srv *http.Server
	ln  net.Listener
	wg  sync.WaitGroup

	mu     sync.Mutex
	served map[string]int64 // node -> blob and manifest bytes sent
}

// Open starts listening.
func (s *PeerServer) Open() error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return err
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s, TLSConfig: s.TLS, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(s.log().Handler(), slog.LevelDebug)}
	// Anyone on the LAN may connect before showing a certificate, each
	// connection held for up to the 10 s a handshake may take: a cap, or
	// a host opening thousands a second would run the node out of memory.
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = 256
	}
	perHost := s.MaxConnsPerHost
	if perHost <= 0 {
		perHost = 16
	}
	// And a share per address, so that one host cannot take every slot
	// and keep the other nodes out.
	limited := netutil.LimitListener(&peer.Listener{Listener: ln, Max: perHost, Exempt: net.IP.IsLoopback}, maxConns)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.srv.ServeTLS(limited, "", "")
	}()
	return nil
}

// ListenAddr is where the server listens (after Open).
func (s *PeerServer) ListenAddr() string { return s.ln.Addr().String() }

// Close stops the server and waits for it.
func (s *PeerServer) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	s.wg.Wait()
	s.srv = nil
	return nil
}

// Served returns the bytes of content sent to each node.
func (s *PeerServer) Served() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int64{}
	for k, v := range s.served {
		out[k] = v
	}
	return out
}

func (s *PeerServer) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

var (
	peerNameRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	peerTagRE  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)
	peerNSRE   = regexp.MustCompile(`^[A-Za-z0-9.-]+(?::[0-9]+)?$`)
)

func (s *PeerServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		peerError(w, http.StatusUnauthorized, "UNAUTHORIZED", "a node certificate of this cluster is required")
		return
	}
	node := r.TLS.PeerCertificates[0].Subject.CommonName
	if s.Member != nil && !s.Member(node) {
		s.log().Warn("refused a peer that is not in the cluster", "peer", node, "from", r.RemoteAddr)
		peerError(w, http.StatusForbidden, "DENIED", "node "+strconv.Quote(node)+" is not a member of this cluster")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		peerError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "read only")
		return
	}
	name, kind, ref, ok := parsePeerPath(r.URL.Path)
	if !ok {
		peerError(w, http.StatusNotFound, "NAME_UNKNOWN", "only /v2/NAME/blobs/DIGEST and /v2/NAME/manifests/DIGEST|TAG are served")
		return
	}
	ctx := r.Context()
	var desc ocispec.Descriptor
	d, err := digest.Parse(ref)
	switch {
	case err == nil:
		desc.Digest = d
	case kind == "manifests" && peerTagRE.MatchString(ref):
		full := name + ":" + ref
		if ns := r.URL.Query().Get("ns"); ns != "" {
			if !peerNSRE.MatchString(ns) {
				peerError(w, http.StatusBadRequest, "NAME_INVALID", "bad ns")
				return
			}
			full = ns + "/" + full
		}
		desc, err = s.Resolve(ctx, core.NormalizeImage(full))
		if err != nil {
			peerError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "no such image on this node")
			return
		}
	default:
		peerError(w, http.StatusBadRequest, "DIGEST_INVALID", "not a digest")
		return
	}
	info, err := s.Content.Info(ctx, desc.Digest)
	if err != nil {
		if errdefs.IsNotFound(err) {
			code := "BLOB_UNKNOWN"
			if kind == "manifests" {
				code = "MANIFEST_UNKNOWN"
			}
			peerError(w, http.StatusNotFound, code, "not on this node")
			return
		}
		peerError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	desc.Size = info.Size
	ra, err := s.Content.ReaderAt(ctx, desc)
	if err != nil {
		peerError(w, http.StatusNotFound, "BLOB_UNKNOWN", "not on this node")
		return
	}
	defer ra.Close()
	rd := io.NewSectionReader(ra, 0, info.Size)
	w.Header().Set("Docker-Content-Digest", desc.Digest.String())
	w.Header().Set("Etag", `"`+desc.Digest.String()+`"`)
	if kind == "manifests" {
		mt := desc.MediaType
		if mt == "" {
			mt = sniffManifestType(rd)
		}
		w.Header().Set("Content-Type", mt)
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, "", time.Time{}, rd)
	if r.Method == http.MethodGet && cw.n > 0 {
		s.mu.Lock()
		if s.served == nil {
			s.served = map[string]int64{}
		}
		s.served[node] += cw.n
		s.mu.Unlock()
		s.log().Info("served image content to a peer", "peer", node, "digest", desc.Digest.String(), "bytes", cw.n, "range", r.Header.Get("Range"))
	}
}

// parsePeerPath splits /v2/NAME/(blobs|manifests)/REF.
func parsePeerPath(p string) (name, kind, ref string, ok bool) {
	rest, found := strings.CutPrefix(p, "/v2/")
	if !found {
		return "", "", "", false
	}
	for _, k := range []string{"blobs", "manifests"} {
		if i := strings.LastIndex(rest, "/"+k+"/"); i > 0 {
			name, ref = rest[:i], rest[i+len(k)+2:]
			if peerNameRE.MatchString(name) && ref != "" && !strings.Contains(ref, "/") {
				return name, k, ref, true
			}
			return "", "", "", false
		}
	}
	return "", "", "", false
}

// sniffManifestType reads a manifest's mediaType field (an OCI manifest
// or index may leave it out; then its shape says which).
func sniffManifestType(rd io.ReadSeeker) string {
	defer rd.Seek(0, io.SeekStart)
	var m struct {
		MediaType string            `json:"mediaType"`
		Manifests []json.RawMessage `json:"manifests"`
	}
	if json.NewDecoder(io.LimitReader(rd, 4<<20)).Decode(&m) != nil {
		return ocispec.MediaTypeImageManifest
	}
	switch {
	case m.MediaType != "":
		return m.MediaType
	case m.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	}
	return ocispec.MediaTypeImageManifest
}

func peerError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

// peerWriteStall ends a response whose client takes nothing for that long.
const peerWriteStall = time.Minute

// countingWriter counts what a response sends and keeps pushing its write
// deadline forward while the client reads (at most once a second), so a
// peer that stops reading does not hold the connection for ever.
type countingWriter struct {
	http.ResponseWriter
	n    int64
	last time.Time
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if now := time.Now(); now.Sub(c.last) > time.Second {
		http.NewResponseController(c.ResponseWriter).SetWriteDeadline(now.Add(peerWriteStall))
		c.last = now
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

var errNoPeerContent = errors.New("this node's runtime holds no image content to serve")

// PeerStore returns what a PeerServer of this node serves: containerd's
// content store and image names in the agent's namespace (call after
// Open).
func (a *Agent) PeerStore() (PeerContent, func(ctx context.Context, ref string) (ocispec.Descriptor, error), error) {
	r, ok := a.rt.(*containerdRuntime)
	if !ok {
		return nil, nil, errNoPeerContent
	}
	resolve := func(ctx context.Context, ref string) (ocispec.Descriptor, error) {
		img, err := r.client.ImageService().Get(r.ns(ctx), ref)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		return img.Target, nil
	}
	return nsContent{r}, resolve, nil
}

// nsContent is containerd's content store in the runtime's namespace.
type nsContent struct{ r *containerdRuntime }

func (c nsContent) Info(ctx context.Context, d digest.Digest) (content.Info, error) {
	return c.r.client.ContentStore().Info(c.r.ns(ctx), d)
}

func (c nsContent) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	return c.r.client.ContentStore().ReaderAt(c.r.ns(ctx), desc)
}

// Peers returns the other nodes of the last known network state (kept in
// the data dir: it outlives an agent restart while the master is away),
// with their peer servers at port, in PeerOrder.
func (a *Agent) Peers(port int) []Peer {
	ns := a.networkState()
	if ns == nil || port <= 0 {
		return nil
	}
	var out []Peer
	for _, n := range ns.Nodes {
		if n.Name == a.Name || n.IP == "" {
			continue
		}
		out = append(out, Peer{Name: n.Name, Host: net.JoinHostPort(n.IP, strconv.Itoa(port))})
	}
	return PeerOrder(a.Name, out)
}

// PeerOrder is the order node asks peers in: by name, starting at a place
// that depends on node's own name, so that the nodes of a LAN that lost
// its master do not all ask the same peer first.
func PeerOrder(node string, peers []Peer) []Peer {
	out := slices.Clone(peers)
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	if len(out) < 2 {
		return out
	}
	h := fnv.New32a()
	h.Write([]byte(node))
	k := int(h.Sum32() % uint32(len(out)))
	return append(append(make([]Peer, 0, len(out)), out[k:]...), out[:k]...)
}

// ClusterMember reports whether node is in the last known network state
// (true when none is known yet: the cluster CA's signature is then all
// there is to go by).
func (a *Agent) ClusterMember(node string) bool {
	ns := a.networkState()
	if ns == nil {
		return true
	}
	for _, n := range ns.Nodes {
		if n.Name == node {
			return true
		}
	}
	return false
}
