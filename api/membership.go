package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/backoff"
	"github.com/edgeorch/edge/internal/fsutil"
)

// Credentials are what joining yields. The agent keeps them so that,
// restarted while the master is down, it can still reach the broker when
// the master returns.
type Credentials struct {
	Master string `json:"master"` // the --master it joined with ("" when found by mDNS)
	// API is the master's API URL as last joined (given or found by
	// mDNS): where the node pulls images (its /v2/). Files written before
	// it existed lack it.
	API      string `json:"api,omitempty"`
	CAHash   string `json:"caHash"`
	Node     string `json:"node"`
	MQTTURL  string `json:"mqttURL"`
	Password string `json:"mqttPassword"`
	CACert   string `json:"caCert"`
}

// Membership is an agent's side of joining: it keeps the node password
// (made up at the first join, the node's identity from then on) and the
// last credentials in the data dir, and joins with the token when it has
// none that fit.
type Membership struct {
	Token string // join token
	// Version is the agent's, sent when joining: a master that does not
	// serve it refuses, saying which side to upgrade.
	Version string
	Master  string // API URL; "" finds the master with Discover
	Node    string
	DataDir string
	Log     *slog.Logger
	// Discover finds the API URL of the master whose CA has caHash.
	Discover func(ctx context.Context, caHash string) (string, error)
	// Backoff paces join attempts (default 1s to 30s, jittered).
	Backoff backoff.Backoff
}

func (m *Membership) credPath() string     { return filepath.Join(m.DataDir, "credentials.json") }
func (m *Membership) passwordPath() string { return filepath.Join(m.DataDir, "node-password") }

// Credentials returns the saved credentials if they are for this token's
// master, this node and this --master; otherwise it joins, retrying until
// the master answers. A refusal (wrong token, name taken by another
// machine) is returned at once: retrying would not help.
func (m *Membership) Credentials(ctx context.Context) (*Credentials, error) {
	jt, err := ParseJoinToken(m.Token)
	if err != nil {
		return nil, err
	}
	proof := ""
	if b, err := os.ReadFile(m.credPath()); err == nil {
		var c Credentials
		if json.Unmarshal(b, &c) == nil && c.CAHash == jt.CAHash && c.Node == m.Node && (m.Master == "" || m.Master == c.Master) {
			if _, err := os.Stat(m.passwordPath()); err == nil {
				if c.API != "" || c.Master != "" {
					return &c, nil
				}
				// Found by mDNS and saved before the API URL was kept: join
				// again (with the node password) to learn where to pull from.
				return m.join(ctx, jt, "")
			}
			// Joined before node passwords were kept: join once more, with
			// the saved credential as proof, to bind one.
			proof = c.Password
		}
	}
	return m.join(ctx, jt, proof)
}

// Rejoin forgets the saved credentials and joins again: the broker keeps
// refusing them (the master's data was reset or restored).
func (m *Membership) Rejoin(ctx context.Context) (*Credentials, error) {
	jt, err := ParseJoinToken(m.Token)
	if err != nil {
		return nil, err
	}
	os.Remove(m.credPath())
	return m.join(ctx, jt, "")
}

// join joins with the token; proof is the node's current MQTT password, if
// it has one (see NodeAuth.Join).
func (m *Membership) join(ctx context.Context, jt JoinToken, proof string) (*Credentials, error) {
	password, err := m.nodePassword()
	if err != nil {
		return nil, err
	}
	failures := 0
	for {
		c, err := m.joinOnce(ctx, jt, password, proof)
		if err == nil {
			m.Backoff.Reset()
			b, _ := json.Marshal(c)
			if err := fsutil.WriteFileAtomic(m.credPath(), b, 0o600); err != nil {
				return nil, err
			}
			return c, nil
		}
		if code := core.ErrorCode(err); code == core.EUNAUTHORIZED || code == core.EINVALID || ctx.Err() != nil {
			return nil, err
		}
		failures++
		if failures == 1 || failures%10 == 0 {
			m.log().Warn("joining the master failed; retrying", "err", ErrorString(err), "attempts", failures)
		}
		if !m.Backoff.Sleep(ctx) {
			return nil, ctx.Err()
		}
	}
}

func (m *Membership) joinOnce(ctx context.Context, jt JoinToken, password, proof string) (*Credentials, error) {
	master := m.Master
	if master == "" {
		if m.Discover == nil {
			return nil, core.Errorf(core.EINVALID, "no master URL and no way to discover one")
		}
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		url, err := m.Discover(fctx, jt.CAHash)
		cancel()
		if err != nil {
			return nil, core.Errorf(core.EUNAVAILABLE, "%v", err)
		}
		master = url
		m.log().Info("found the master by mDNS", "url", master)
	}
	resp, err := NewClient(master, jt.String(), PinnedTLS(jt.CAHash)).JoinWith(ctx, JoinRequest{Node: m.Node, NodePassword: password, MQTTPassword: proof,
		Version: m.Version, Protocol: core.ProtocolVersion})
	if err != nil {
		return nil, err
	}
	m.log().Info("joined the cluster", "master", master)
	return &Credentials{Master: m.Master, API: master, CAHash: jt.CAHash, Node: m.Node, MQTTURL: resp.MQTTURL, Password: resp.MQTTPassword, CACert: resp.CACert}, nil
}

// nodePassword returns the node password, making one up (and keeping it,
// crash-safely) at the first join.
func (m *Membership) nodePassword() (string, error) {
	b, err := os.ReadFile(m.passwordPath())
	if err == nil {
		if p := strings.TrimSpace(string(b)); len(p) >= 16 {
			return p, nil
		}
		return "", core.Errorf(core.EINVALID, "%s is damaged; if this machine is the node, restore it, else remove it and delete the node on the master (edgectl delete node %s)", m.passwordPath(), m.Node)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	p := NewSecret() + NewSecret()
	if err := fsutil.WriteFileAtomic(m.passwordPath(), []byte(p+"\n"), 0o600); err != nil {
		return "", err
	}
	return p, nil
}

func (m *Membership) log() *slog.Logger {
	if m.Log == nil {
		return slog.Default()
	}
	return m.Log
}
