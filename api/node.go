package api

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/edgeorch/edge/core"
)

// JoinRequest is an agent's request to join.
type JoinRequest struct {
	Node string `json:"node"`
	// NodePassword is the agent's own secret, made up at its first join and
	// kept in its data dir; the master binds the node's name to it.
	NodePassword string `json:"nodePassword"`
	// MQTTPassword is the agent's current MQTT password, if it has one:
	// proof of identity for a node that joined before node passwords.
	MQTTPassword string `json:"mqttPassword,omitempty"`
	// Version and Protocol are the agent's (core.CheckAgentVersion).
	Version  string `json:"version,omitempty"`
	Protocol int    `json:"protocol,omitempty"`
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
	if !s.joins.allow() {
		Error(w, core.Errorf(core.EUNAVAILABLE, "too many joins at once; try again shortly"))
		return
	}
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
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		Error(w, core.Errorf(core.EINVALID, "join request: %v", err))
		return
	}
	if req.Version != "" || req.Protocol != 0 {
		if err := core.CheckAgentVersion(s.Version, req.Version, req.Protocol); err != nil {
			s.Log.Warn("refused a join: version skew", "node", req.Node, "agent", req.Version, "master", s.Version)
			Error(w, err)
			return
		}
	}
	n := &core.Node{TypeMeta: core.TypeMeta{Kind: core.KindNode}, Metadata: core.ObjectMeta{Name: req.Node}}
	if err := core.Validate(n); err != nil {
		Error(w, core.Errorf(core.EINVALID, "node name %q: %s", req.Node, core.ErrorMessage(err)))
		return
	}
	password, err := s.Auth.Join(r.Context(), req.Node, req.NodePassword, req.MQTTPassword)
	if err != nil {
		if core.ErrorCode(err) == core.EUNAUTHORIZED {
			s.Log.Warn("refused a join under a taken node name", "node", req.Node, "from", r.RemoteAddr)
		}
		Error(w, err)
		return
	}
	if err := core.RegisterNode(r.Context(), s.Store, req.Node, s.Now()); err != nil {
		Error(w, err)
		return
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

func (s *Server) handleNodeAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	var results []core.ApplyResult
	var err error
	switch action {
	case "cordon", "uncordon":
		results, err = core.Cordon(r.Context(), s.Store, name, action == "cordon")
	case "drain":
		results, err = core.Drain(r.Context(), s.Store, name, s.Now())
	case "taint":
		spec := r.URL.Query().Get("spec")
		remove := strings.HasSuffix(spec, "-")
		spec = strings.TrimSuffix(spec, "-")
		var t core.Taint
		if remove && !strings.Contains(spec, ":") { // KEY- removes every effect of KEY
			t = core.Taint{Key: spec}
		} else if t, err = core.ParseTaint(spec); err != nil {
			break
		}
		results, err = core.TaintNode(r.Context(), s.Store, name, t, remove, s.Now())
	default:
		err = core.Errorf(core.EINVALID, "unknown node action %q (cordon, uncordon, drain, taint)", action)
	}
	if err != nil {
		Error(w, err)
		return
	}
	writeJSON(w, results)
}

// deleteNode revokes a node's credentials (which disconnects its agent)
// before removing the object: a deleted node must not keep talking to the
// broker, and a delete that fails half-way can simply be repeated.
func (s *Server) deleteNode(r *http.Request, name string) error {
	k := core.Key{Kind: core.KindNode, Name: name}
	_, err := s.Store.Get(r.Context(), k)
	if core.ErrorCode(err) == core.ENOTFOUND && !s.Auth.Known(name) {
		return err
	} else if err != nil && core.ErrorCode(err) != core.ENOTFOUND {
		return err
	}
	// A credential without an object (a join whose registration failed)
	// is revoked all the same.
	if err := s.Auth.Revoke(r.Context(), name); err != nil {
		return err
	}
	s.Log.Info("node deleted: credentials revoked", "node", name)
	if err := core.Delete(r.Context(), s.Store, k, s.Now()); core.ErrorCode(err) != core.ENOTFOUND {
		return err
	}
	return nil
}
