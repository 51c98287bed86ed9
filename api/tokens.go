package api

import (
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/edgeorch/edge/core"
)

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

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) {
	list, err := s.Tokens.ListTokens(r.Context())
	if err != nil {
		Error(w, err)
		return
	}
	if list == nil {
		list = []*core.Token{}
	}
	writeJSON(w, list)
}

// handleDeleteToken revokes a join token at once. The admin token is
// rotated, not removed: a master without one cannot be driven at all.
func (s *Server) handleDeleteToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	list, err := s.Tokens.ListTokens(r.Context())
	if err != nil {
		Error(w, err)
		return
	}
	for _, t := range list {
		if t.ID == id && t.Kind == core.TokenAdmin {
			Error(w, core.Errorf(core.EINVALID, "token %q is the admin token: rotate it with 'edgectl token rotate-admin' instead", id))
			return
		}
	}
	if id == JoinTokenID && s.Bootstrap != nil {
		// The data dir's file would bring it back at the next start.
		if err := s.Bootstrap.RevokeJoin(); err != nil {
			Error(w, err)
			return
		}
	}
	if err := s.Tokens.DeleteToken(r.Context(), id); err != nil {
		Error(w, err)
		return
	}
	s.forgetAdmins()
	s.Log.Info("token revoked", "token", id)
	writeJSON(w, []core.ApplyResult{{Kind: "Token", Name: id, Action: "deleted"}})
}

func (s *Server) handleRotateAdmin(w http.ResponseWriter, r *http.Request) {
	if s.Bootstrap == nil {
		Error(w, core.Errorf(core.EUNAVAILABLE, "this master cannot rotate its admin token through the API"))
		return
	}
	token, err := s.Bootstrap.RotateAdmin(r.Context(), s.Address())
	s.forgetAdmins()
	if err != nil {
		Error(w, err)
		return
	}
	s.Log.Info("admin token rotated", "admin.conf", s.Bootstrap.AdminConfPath())
	writeJSON(w, TokenResponse{Token: token})
}

// forgetAdmins drops the cache of accepted admin tokens, so a revoked or
// rotated one stops working with the next request.
func (s *Server) forgetAdmins() {
	s.mu.Lock()
	s.admins = map[string]bool{}
	s.adminGen++
	s.mu.Unlock()
}
