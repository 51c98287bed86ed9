// Package api is the master's HTTPS API (a Kubernetes-shaped REST subset
// with bearer tokens) and the Go client that edgectl and the agent use.
// Errors cross it as {"code","message"} and become *core.Error again on the
// client side. It must never decide cluster behaviour itself: that lives in
// core.
package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/peer"
)

// Server serves the API. Configure the fields, then Open.
type Server struct {
	Addr   string
	PKI    *PKI
	Store  core.Store
	Tokens core.TokenStore
	Bus    core.Bus
	// Network is the cluster's address plan: services get their cluster
	// IPs and node ports from it (zero: core.DefaultNetworkConfig).
	Network core.NetworkConfig
	Log     *slog.Logger
	Now     func() time.Time
	Version string
	// MQTTURL returns the broker URL to hand a joining agent, given the host
	// it used to reach the API.
	MQTTURL func(apiHost string) string
	// Auth issues, checks and revokes node credentials.
	Auth *NodeAuth
	// Bootstrap keeps the admin token and admin.conf; nil: the admin token
	// cannot be rotated through the API.
	Bootstrap *Bootstrap
	// Metrics returns extra figures for /metrics.
	Metrics func() map[string]float64
	// Registry serves the OCI distribution API's read side under /v2/
	// (nil: no registry). The server authenticates its clients: see
	// registryAuth.
	Registry http.Handler
	// Images imports, lists and removes the registry's images (nil: the
	// image endpoints answer not found).
	Images core.ImageService

	// Limits; zero takes the default in brackets. Streams (watch, logs -f)
	// are exempt from WriteTimeout: each of their writes gets its own.
	MaxConns      int           // open connections; more wait to be accepted [1024]
	MaxConnsPerIP int           // of those, from one remote address (loopback exempt); more are closed [64]
	IdleTimeout   time.Duration // keep-alive connections with no request [60s]
	WriteTimeout  time.Duration // writing one response, or one stream write [60s]
	ReadTimeout   time.Duration // reading one request, body included [5m]
	// JoinRate is how many joins a second the API takes, in bursts of up to
	// ten times that; more are refused as unavailable (agents retry with
	// backoff). A whole fleet joins once; a join token is no licence to
	// create nodes as fast as a CPU can. Negative: no limit [20].
	JoinRate float64

	ln       net.Listener
	srv      *http.Server
	wg       sync.WaitGroup
	mu       sync.Mutex
	admins   map[string]bool // cache of verified admin token hashes
	adminGen int             // bumped when tokens are revoked or rotated
	joins    tokenBucket
}

// Open starts listening.
func (s *Server) Open() (err error) {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	s.admins = map[string]bool{}
	s.setLimits()
	if s.ln, err = net.Listen("tcp", s.Addr); err != nil {
		return fmt.Errorf("api: listen on %s: %w", s.Addr, err)
	}
	// Idle keep-alive connections used to be held forever (3,000 of them
	// cost 85 MB); now they go after IdleTimeout, and no more than MaxConns
	// are open at once.
	s.srv = &http.Server{Handler: s.Handler(), TLSConfig: s.PKI.ServerTLS(),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: s.ReadTimeout, WriteTimeout: s.WriteTimeout,
		IdleTimeout: s.IdleTimeout, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug),
		// HTTP/1.1 only: an HTTP/2 connection that never sends a request is
		// held for the idle timeout, not the header timeout, and nothing here
		// needs multiplexing.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	ln := netutil.LimitListener(&peer.Listener{Listener: s.ln, Max: s.MaxConnsPerIP, Exempt: net.IP.IsLoopback}, s.MaxConns)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Log.Error("api server stopped", "err", err)
		}
	}()
	return nil
}

func (s *Server) setLimits() {
	if s.MaxConns == 0 {
		s.MaxConns = 1024
	}
	if s.MaxConnsPerIP == 0 {
		s.MaxConnsPerIP = 64
	}
	if s.IdleTimeout == 0 {
		s.IdleTimeout = 60 * time.Second
	}
	if s.WriteTimeout == 0 {
		s.WriteTimeout = 60 * time.Second
	}
	if s.ReadTimeout == 0 {
		s.ReadTimeout = 5 * time.Minute
	}
	if s.JoinRate == 0 {
		s.JoinRate = 20
	}
	s.joins = tokenBucket{rate: s.JoinRate, burst: 10 * s.JoinRate, now: s.Now}
}

// tokenBucket allows rate events a second in bursts of burst; a negative
// rate allows everything.
type tokenBucket struct {
	rate, burst float64
	now         func() time.Time
	mu          sync.Mutex
	tokens      float64
	last        time.Time
}

func (b *tokenBucket) allow() bool {
	if b.rate < 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if b.last.IsZero() {
		b.tokens = b.burst
	} else {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// streamWriter writes a long-lived response (a watch, a followed log):
// every write gets its own deadline, so a client that stops reading is
// dropped after WriteTimeout while one that reads slowly is not.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (s *Server) stream(w http.ResponseWriter) *streamWriter {
	sw := &streamWriter{w: w, rc: http.NewResponseController(w), timeout: s.WriteTimeout}
	sw.rc.SetWriteDeadline(time.Time{}) // the server's deadline counts from the request
	return sw
}

func (sw *streamWriter) Write(p []byte) (int, error) {
	sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
	return sw.w.Write(p)
}

// Flush sends what was written, under the same deadline.
func (sw *streamWriter) Flush() error {
	sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
	return sw.rc.Flush()
}

// Address returns the address the server listens on.
func (s *Server) Address() string { return s.ln.Addr().String() }

// Close stops the server, ending open watches and log streams.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	s.wg.Wait()
	s.srv = nil
	return nil
}

// Handler returns the HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /version", s.handleVersion)
	mux.HandleFunc("POST /api/v1/join", s.handleJoin)
	mux.HandleFunc("POST /api/v1/node-certificate", s.handleNodeCertificate) // the node's own credential
	mux.HandleFunc("GET /api/v1/{resource}", s.admin(s.handleList))
	mux.HandleFunc("GET /api/v1/{resource}/{name}", s.admin(s.handleGet))
	mux.HandleFunc("DELETE /api/v1/{resource}/{name}", s.admin(s.handleDelete))
	mux.HandleFunc("POST /api/v1/apply", s.admin(s.handleApply))
	mux.HandleFunc("POST /api/v1/delete", s.admin(s.handleDeleteManifests))
	mux.HandleFunc("GET /api/v1/pods/{name}/log", s.admin(s.handleLogs))
	mux.HandleFunc("POST /api/v1/nodes/{name}/{action}", s.admin(s.handleNodeAction))
	mux.HandleFunc("POST /api/v1/tokens", s.admin(s.handleCreateToken))
	mux.HandleFunc("GET /api/v1/tokens", s.admin(s.handleListTokens))
	mux.HandleFunc("DELETE /api/v1/tokens/{id}", s.admin(s.handleDeleteToken))
	mux.HandleFunc("POST /api/v1/tokens/rotate-admin", s.admin(s.handleRotateAdmin))
	mux.HandleFunc("POST /api/v1/deployments/{name}/undo", s.admin(s.handleUndo))
	mux.HandleFunc("GET /metrics", s.admin(s.handleMetrics))
	mux.HandleFunc("POST /api/v1/images/import", s.admin(s.handleImportImages))
	mux.HandleFunc("GET /api/v1/images", s.admin(s.handleListImages))
	mux.HandleFunc("DELETE /api/v1/images", s.admin(s.handleRemoveImage))
	mux.HandleFunc("POST /api/v1/images/prefetch", s.admin(s.handlePrefetch))
	if s.Registry != nil {
		mux.Handle("/v2/", s.registryAuth(s.Registry))
	}
	// Profiles for a live master, behind the admin token like everything else.
	mux.HandleFunc("GET /debug/pprof/", s.admin(pprof.Index))
	mux.HandleFunc("GET /debug/pprof/profile", s.admin(pprof.Profile))
	mux.HandleFunc("GET /debug/pprof/heap", s.admin(pprof.Handler("heap").ServeHTTP))
	return mux
}

// Error writes err as JSON with the HTTP status for its code.
func Error(w http.ResponseWriter, err error) {
	code := core.ErrorCode(err)
	status := map[string]int{
		core.EINVALID: http.StatusBadRequest, core.ENOTFOUND: http.StatusNotFound, core.ECONFLICT: http.StatusConflict,
		core.EUNAUTHORIZED: http.StatusUnauthorized, core.EUNAVAILABLE: http.StatusServiceUnavailable,
	}[code]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	msg := core.ErrorMessage(err)
	if code == core.EINTERNAL {
		slog.Error("api: internal error", "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(&core.Error{Code: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	t, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(t)
}

func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		if tok == "" {
			Error(w, core.Errorf(core.EUNAUTHORIZED, "no token: pass --token or use a config with one (admin.conf in the master's data dir)"))
			return
		}
		if !s.isAdmin(r.Context(), tok) {
			Error(w, core.Errorf(core.EUNAUTHORIZED, "the token was refused: it is not an admin token of this master"))
			return
		}
		h(w, r)
	}
}

// isAdmin reports whether tok is an admin token (verified hashes are
// cached until tokens are revoked or rotated).
func (s *Server) isAdmin(ctx context.Context, tok string) bool {
	hash := HashSecret(tok)
	s.mu.Lock()
	ok, gen := s.admins[hash], s.adminGen
	s.mu.Unlock()
	if ok {
		return true
	}
	if _, err := s.Tokens.FindToken(ctx, core.TokenAdmin, hash); err != nil {
		return false
	}
	s.mu.Lock()
	if s.adminGen == gen { // not revoked or rotated while we looked
		s.admins[hash] = true
	}
	s.mu.Unlock()
	return true
}

// VersionInfo is what GET /version returns.
type VersionInfo struct {
	Version string `json:"version"`
	GoOS    string `json:"os,omitempty"`
	GoArch  string `json:"arch,omitempty"`
}

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, VersionInfo{Version: s.Version})
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	m := map[string]float64{}
	if s.Metrics != nil {
		m = s.Metrics()
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	for _, k := range names {
		fmt.Fprintf(w, "%s %v\n", k, m[k])
	}
}
