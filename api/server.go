// Package api is the master's HTTPS API (a Kubernetes-shaped REST subset
// with bearer tokens) and the Go client that edgectl and the agent use.
// Errors cross it as {"code","message"} and become *core.Error again on the
// client side. It must never decide cluster behaviour itself: that lives in
// core.
package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"github.com/edgeorch/edge/core"
)

// Server serves the API. Configure the fields, then Open.
type Server struct {
	Addr    string
	PKI     *PKI
	Store   core.Store
	Tokens  core.TokenStore
	Bus     core.Bus
	Log     *slog.Logger
	Now     func() time.Time
	Version string
	// MQTTURL returns the broker URL to hand a joining agent, given the host
	// it used to reach the API.
	MQTTURL func(apiHost string) string
	// NodeCredential is called when a node is issued MQTT credentials, with
	// the hash of the password (the embedded broker's auth reads it).
	NodeCredential func(node, hash string)
	// Metrics returns extra figures for /metrics.
	Metrics func() map[string]float64

	// Limits; zero takes the default in brackets. Streams (watch, logs -f)
	// are exempt from WriteTimeout: each of their writes gets its own.
	MaxConns     int           // open connections; more wait to be accepted [1024]
	IdleTimeout  time.Duration // keep-alive connections with no request [60s]
	WriteTimeout time.Duration // writing one response, or one stream write [60s]
	ReadTimeout  time.Duration // reading one request, body included [5m]

	ln     net.Listener
	srv    *http.Server
	wg     sync.WaitGroup
	mu     sync.Mutex
	admins map[string]bool // cache of verified admin token hashes
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
		ErrorLog: slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug)}
	ln := netutil.LimitListener(s.ln, s.MaxConns)
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
	if s.IdleTimeout == 0 {
		s.IdleTimeout = 60 * time.Second
	}
	if s.WriteTimeout == 0 {
		s.WriteTimeout = 60 * time.Second
	}
	if s.ReadTimeout == 0 {
		s.ReadTimeout = 5 * time.Minute
	}
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
	mux.HandleFunc("GET /api/v1/{resource}", s.admin(s.handleList))
	mux.HandleFunc("GET /api/v1/{resource}/{name}", s.admin(s.handleGet))
	mux.HandleFunc("DELETE /api/v1/{resource}/{name}", s.admin(s.handleDelete))
	mux.HandleFunc("POST /api/v1/apply", s.admin(s.handleApply))
	mux.HandleFunc("POST /api/v1/delete", s.admin(s.handleDeleteManifests))
	mux.HandleFunc("GET /api/v1/pods/{name}/log", s.admin(s.handleLogs))
	mux.HandleFunc("POST /api/v1/nodes/{name}/{action}", s.admin(s.handleNodeAction))
	mux.HandleFunc("POST /api/v1/tokens", s.admin(s.handleCreateToken))
	mux.HandleFunc("POST /api/v1/deployments/{name}/undo", s.admin(s.handleUndo))
	mux.HandleFunc("GET /metrics", s.admin(s.handleMetrics))
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
		hash := HashSecret(tok)
		s.mu.Lock()
		ok := s.admins[hash]
		s.mu.Unlock()
		if !ok {
			if _, err := s.Tokens.FindToken(r.Context(), core.TokenAdmin, hash); err != nil {
				Error(w, core.Errorf(core.EUNAUTHORIZED, "the token was refused: it is not an admin token of this master"))
				return
			}
			s.mu.Lock()
			s.admins[hash] = true
			s.mu.Unlock()
		}
		h(w, r)
	}
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

// JoinRequest is an agent's request to join.
type JoinRequest struct {
	Node string `json:"node"`
}

// JoinResponse carries what an agent needs to talk to the broker.
type JoinResponse struct {
	Node         string `json:"node"`
	MQTTURL      string `json:"mqttURL"`
	MQTTUsername string `json:"mqttUsername,omitempty"`
	MQTTPassword string `json:"mqttPassword,omitempty"`
	CACert       string `json:"caCert"`
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	jt, err := ParseJoinToken(bearer(r))
	if err != nil {
		Error(w, core.Errorf(core.EUNAUTHORIZED, "%s", core.ErrorMessage(err)))
		return
	}
	if jt.CAHash != s.PKI.CAHash() {
		Error(w, core.Errorf(core.EUNAUTHORIZED, "the join token is for another master (CA hash mismatch)"))
		return
	}
	if _, err := s.Tokens.FindToken(r.Context(), core.TokenJoin, HashSecret(jt.ID+"."+jt.Secret)); err != nil {
		Error(w, core.Errorf(core.EUNAUTHORIZED, "the join token was refused: %s", core.ErrorMessage(err)))
		return
	}
	var req JoinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		Error(w, core.Errorf(core.EINVALID, "join request: %v", err))
		return
	}
	n := &core.Node{TypeMeta: core.TypeMeta{Kind: core.KindNode}, Metadata: core.ObjectMeta{Name: req.Node}}
	if err := core.Validate(n); err != nil {
		Error(w, core.Errorf(core.EINVALID, "node name %q: %s", req.Node, core.ErrorMessage(err)))
		return
	}
	password := NewSecret()
	hash := HashSecret(password)
	if err := s.Tokens.SetNodeCredential(r.Context(), req.Node, hash); err != nil {
		Error(w, err)
		return
	}
	if s.NodeCredential != nil {
		s.NodeCredential(req.Node, hash)
	}
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	s.Log.Info("node joined", "node", req.Node, "from", r.RemoteAddr)
	writeJSON(w, JoinResponse{Node: req.Node, MQTTURL: s.MQTTURL(host), MQTTUsername: NodeUsername(req.Node),
		MQTTPassword: password, CACert: string(s.PKI.CAPEM)})
}

// NodeUsername is the MQTT user name of a node's agent.
func NodeUsername(node string) string { return "node:" + node }

func parseResource(r *http.Request) (core.Kind, string, error) {
	kind, err := core.ParseKind(r.PathValue("resource"))
	if err != nil {
		return "", "", err
	}
	ns := r.URL.Query().Get("namespace")
	if !kind.Namespaced() {
		ns = ""
	} else if ns == "" && r.URL.Query().Get("allNamespaces") == "" {
		ns = core.DefaultNamespace
	}
	return kind, ns, nil
}

// List is the JSON shape of a list: {"apiVersion":"v1","kind":"List","items":[...]}.
type List struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	kind, ns, err := parseResource(r)
	if err != nil {
		Error(w, err)
		return
	}
	sel, err := core.ParseSelector(r.URL.Query().Get("labelSelector"))
	if err != nil {
		Error(w, err)
		return
	}
	if r.URL.Query().Get("watch") != "" {
		s.watch(w, r, kind, ns, "", sel)
		return
	}
	var objs []core.Object
	var raws [][]byte
	if rl, ok := s.Store.(core.RawLister); ok {
		objs, raws, err = rl.ListRaw(r.Context(), kind, ns)
	} else {
		objs, err = s.Store.List(r.Context(), kind, ns)
	}
	if err != nil {
		Error(w, err)
		return
	}
	// Written by hand: the store keeps each object's JSON, and encoding
	// 10,000 pods again for every `get pods` would dominate its latency.
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(`{"apiVersion":"v1","kind":"List","items":[`)
	first := true
	for i, o := range objs {
		if !core.MatchLabels(sel, o.GetMeta().Labels) {
			continue
		}
		var b []byte
		if raws != nil && raws[i] != nil {
			b = raws[i]
		} else if b, err = json.Marshal(o); err != nil {
			return
		}
		if !first {
			bw.WriteByte(',')
		}
		first = false
		bw.Write(b)
	}
	bw.WriteString("]}\n")
	bw.Flush()
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	kind, ns, err := parseResource(r)
	if err != nil {
		Error(w, err)
		return
	}
	if r.URL.Query().Get("watch") != "" {
		s.watch(w, r, kind, ns, r.PathValue("name"), nil)
		return
	}
	obj, err := s.Store.Get(r.Context(), core.Key{Kind: kind, Namespace: ns, Name: r.PathValue("name")})
	if err != nil {
		Error(w, err)
		return
	}
	writeJSON(w, obj)
}

// watch streams newline-delimited events: first the current objects as
// ADDED, then changes, until the client goes away.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, kind core.Kind, ns, name string, sel map[string]string) {
	events, stop := s.Store.Watch()
	defer stop()
	objs, err := s.Store.List(r.Context(), kind, ns)
	if err != nil {
		Error(w, err)
		return
	}
	match := func(o core.Object) bool {
		m := o.GetMeta()
		return o.GetTypeMeta().Kind == kind && (ns == "" || m.Namespace == ns) && (name == "" || m.Name == name) && core.MatchLabels(sel, m.Labels)
	}
	w.Header().Set("Content-Type", "application/json")
	sw := s.stream(w)
	enc := json.NewEncoder(sw)
	for _, o := range objs {
		if match(o) {
			if err := enc.Encode(core.WatchEvent{Type: core.Added, Object: o}); err != nil {
				return
			}
		}
	}
	if sw.Flush() != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-events:
			if !ok {
				return // fell behind; the client lists and watches again
			}
			if !match(ev.Object) {
				continue
			}
			if err := enc.Encode(ev); err != nil {
				return
			}
			if sw.Flush() != nil {
				return
			}
		}
	}
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	kind, ns, err := parseResource(r)
	if err != nil {
		Error(w, err)
		return
	}
	k := core.Key{Kind: kind, Namespace: ns, Name: r.PathValue("name")}
	if err := core.Delete(r.Context(), s.Store, k, s.Now()); err != nil {
		Error(w, err)
		return
	}
	writeJSON(w, []core.ApplyResult{{Kind: kind, Name: k.Name, Action: "deleted"}})
}

// ApplyRequest carries manifest files as the user gave them.
type ApplyRequest struct {
	Files []core.ManifestFile `json:"files"`
}

// ApplyResponse lists what happened to each object, and for a delete what
// could not be deleted.
type ApplyResponse struct {
	Results []core.ApplyResult `json:"results"`
	Errors  []string           `json:"errors,omitempty"`
}

func decodeFiles(r *http.Request) ([]core.Object, error) {
	var req ApplyRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 32<<20)).Decode(&req); err != nil {
		return nil, core.Errorf(core.EINVALID, "request body: %v", err)
	}
	objs, err := core.DecodeManifests(req.Files)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, core.Errorf(core.EINVALID, "no objects found in %s", fileNames(req.Files))
	}
	return objs, nil
}

func fileNames(files []core.ManifestFile) string {
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

func (s *Server) handleApply(w http.ResponseWriter, r *http.Request) {
	objs, err := decodeFiles(r)
	if err != nil {
		Error(w, err)
		return
	}
	results, err := core.Apply(r.Context(), s.Store, objs, s.Now())
	if err != nil {
		Error(w, err)
		return
	}
	writeJSON(w, ApplyResponse{Results: results})
}

func (s *Server) handleDeleteManifests(w http.ResponseWriter, r *http.Request) {
	objs, err := decodeFiles(r)
	if err != nil {
		Error(w, err)
		return
	}
	var results []core.ApplyResult
	var errs []string
	for _, o := range objs {
		k := core.KeyOf(o)
		if err := core.Delete(r.Context(), s.Store, k, s.Now()); err != nil {
			errs = append(errs, core.ErrorMessage(err))
			continue
		}
		results = append(results, core.ApplyResult{Kind: k.Kind, Name: k.Name, Action: "deleted"})
	}
	if len(errs) > 0 && len(results) == 0 {
		Error(w, core.Errorf(core.ENOTFOUND, "%s", strings.Join(errs, "; ")))
		return
	}
	writeJSON(w, ApplyResponse{Results: results, Errors: errs})
}

func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ns := q.Get("namespace")
	if ns == "" {
		ns = core.DefaultNamespace
	}
	obj, err := s.Store.Get(r.Context(), core.Key{Kind: core.KindPod, Namespace: ns, Name: r.PathValue("name")})
	if err != nil {
		Error(w, err)
		return
	}
	pod := obj.(*core.Pod)
	if pod.Spec.NodeName == "" {
		Error(w, core.Errorf(core.EINVALID, "pod %q is not scheduled to a node yet: no logs", pod.Metadata.Name))
		return
	}
	req := core.LogRequest{Namespace: ns, Pod: pod.Metadata.Name, Container: q.Get("container"), Follow: q.Get("follow") == "true", Tail: -1}
	if req.Container == "" {
		if len(pod.Spec.Containers) > 1 {
			names := []string{}
			for _, c := range pod.Spec.Containers {
				names = append(names, c.Name)
			}
			Error(w, core.Errorf(core.EINVALID, "pod %q has several containers: pick one with -c (%s)", pod.Metadata.Name, strings.Join(names, ", ")))
			return
		}
		req.Container = pod.Spec.Containers[0].Name
	}
	if t := q.Get("tail"); t != "" {
		if req.Tail, err = strconv.Atoi(t); err != nil {
			Error(w, core.Errorf(core.EINVALID, "tail %q is not a number", t))
			return
		}
	}
	rc, err := s.Bus.Logs(r.Context(), pod.Spec.NodeName, req)
	if err != nil {
		Error(w, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	sw := s.stream(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if _, werr := sw.Write(buf[:n]); werr != nil {
				return // closing rc ends the stream at the agent
			}
			if sw.Flush() != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *Server) handleNodeAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	var results []core.ApplyResult
	err := s.Store.Update(r.Context(), func(tx core.Tx) error {
		results = nil
		obj, err := tx.Get(core.Key{Kind: core.KindNode, Name: name})
		if err != nil {
			return err
		}
		n := core.Clone(obj.(*core.Node))
		switch action {
		case "cordon", "drain":
			n.Spec.Unschedulable = true
		case "uncordon":
			n.Spec.Unschedulable = false
		default:
			return core.Errorf(core.EINVALID, "unknown node action %q (cordon, uncordon, drain)", action)
		}
		verb := map[string]string{"cordon": "cordoned", "drain": "cordoned", "uncordon": "uncordoned"}[action]
		if n.Spec.Unschedulable == obj.(*core.Node).Spec.Unschedulable {
			verb = "already " + verb
		} else if err := tx.Put(n); err != nil {
			return err
		}
		results = append(results, core.ApplyResult{Kind: core.KindNode, Name: name, Action: verb})
		if action != "drain" {
			return nil
		}
		pods, err := core.TxListAs[*core.Pod](tx, core.KindPod, "")
		if err != nil {
			return err
		}
		sort.Slice(pods, func(i, j int) bool { return pods[i].Metadata.Name < pods[j].Metadata.Name })
		for _, p := range pods {
			if p.Spec.NodeName != name || p.Terminating() {
				continue
			}
			if o := p.Owner(); o != nil && o.Kind == core.KindDaemonSet {
				continue // DaemonSet pods stay, as kubectl drain --ignore-daemonsets
			}
			c := core.Clone(p)
			c.Metadata.DeletionTimestamp = core.NewTime(s.Now())
			if err := tx.Put(c); err != nil {
				return err
			}
			results = append(results, core.ApplyResult{Kind: core.KindPod, Name: p.Metadata.Name, Action: "evicted"})
		}
		return nil
	})
	if err != nil {
		Error(w, err)
		return
	}
	writeJSON(w, results)
}

// UndoResponse says which revision a deployment rolled back to.
type UndoResponse struct {
	Revision int64 `json:"revision"`
}

func (s *Server) handleUndo(w http.ResponseWriter, r *http.Request) {
	ns := r.URL.Query().Get("namespace")
	if ns == "" {
		ns = core.DefaultNamespace
	}
	var to int64
	if v := r.URL.Query().Get("toRevision"); v != "" {
		var err error
		if to, err = strconv.ParseInt(v, 10, 64); err != nil || to < 0 {
			Error(w, core.Errorf(core.EINVALID, "toRevision %q is not a revision number", v))
			return
		}
	}
	rev, err := core.Undo(r.Context(), s.Store, core.Key{Kind: core.KindDeployment, Namespace: ns, Name: r.PathValue("name")}, to)
	if err != nil {
		Error(w, err)
		return
	}
	writeJSON(w, UndoResponse{Revision: rev})
}

// TokenRequest asks for a new join token.
type TokenRequest struct {
	TTL         string `json:"ttl,omitempty"`
	Description string `json:"description,omitempty"`
}

// TokenResponse carries the new token; the secret is shown only once.
type TokenResponse struct {
	Token     string     `json:"token"`
	ExpiresAt *core.Time `json:"expiresAt,omitempty"`
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil && err != io.EOF {
		Error(w, core.Errorf(core.EINVALID, "token request: %v", err))
		return
	}
	jt := JoinToken{CAHash: s.PKI.CAHash(), ID: NewSecret()[:6], Secret: NewSecret()}
	t := &core.Token{ID: jt.ID, Kind: core.TokenJoin, Hash: HashSecret(jt.ID + "." + jt.Secret), Description: req.Description}
	if req.TTL != "" && req.TTL != "0" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < 0 {
			Error(w, core.Errorf(core.EINVALID, "ttl %q: want a duration such as 24h or 30m", req.TTL))
			return
		}
		t.ExpiresAt = core.NewTime(s.Now().Add(d))
	}
	if err := s.Tokens.CreateToken(r.Context(), t); err != nil {
		Error(w, err)
		return
	}
	writeJSON(w, TokenResponse{Token: jt.String(), ExpiresAt: t.ExpiresAt})
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
