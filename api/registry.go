package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/edgeorch/edge/core"
)

// registryAuth lets a /v2/ request through if it carries
//
//   - the admin token, as a Bearer token (skopeo --registry-token) or as
//     the password of Basic auth with any username (skopeo --creds
//     admin:TOKEN, docker login);
//   - a node's credential as Basic auth: username the node's name,
//     password its current MQTT password (credentials.json in the agent's
//     data dir, issued at join, revoked when the node is deleted).
//
// Anything else gets 401 UNAUTHORIZED with a Basic challenge, in the
// distribution spec's error shape. Responses are written under a deadline
// per write rather than the server's WriteTimeout, so a large layer over a
// slow link is not cut while it moves.
func (s *Server) registryAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client, ok := s.registryClient(r)
		if !ok {
			msg := "authentication required: the admin token (Bearer, or Basic with any user name), or a node's name and credential (Basic)"
			if r.Header.Get("Authorization") != "" {
				msg = "the credentials were refused: not an admin token of this master, nor a node's current credential"
			}
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
			w.Header().Set("WWW-Authenticate", `Basic realm="edgemaster"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]any{{"code": "UNAUTHORIZED", "message": msg}}})
			return
		}
		dw := &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: s.WriteTimeout}
		dw.rc.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		h.ServeHTTP(dw, r.WithContext(core.WithRequester(r.Context(), client)))
	})
}

// registryClient names who a /v2/ request comes from ("admin", or the
// node's name: the registry counts what each pulls); ok is false if its
// credentials are not admitted.
func (s *Server) registryClient(r *http.Request) (client string, ok bool) {
	if tok := bearer(r); tok != "" {
		return "admin", s.isAdmin(r.Context(), tok)
	}
	user, pass, ok := r.BasicAuth()
	if !ok || pass == "" {
		return "", false
	}
	if s.Auth != nil && s.Auth.CheckMQTT(user, pass) {
		return user, true
	}
	return "admin", s.isAdmin(r.Context(), pass)
}

// deadlineWriter pushes the write deadline forward as a response moves
// (at most once a second: it is not free).
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	last    time.Time
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if now := time.Now(); now.Sub(d.last) > time.Second {
		d.rc.SetWriteDeadline(now.Add(d.timeout))
		d.last = now
	}
	return d.ResponseWriter.Write(p)
}

func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }
