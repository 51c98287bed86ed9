package api

import (
	"context"
	"crypto/subtle"
	"sync"

	"github.com/edgeorch/edge/core"
)

// NodeAuth issues, checks and revokes what a node authenticates with:
//
//   - its node password, which the agent makes up at its first join and
//     keeps in its data dir; the master binds the node's name to it, so a
//     join token alone does not let anyone take over an existing node (and
//     its desired state, env values included);
//   - the MQTT password issued at every join, checked by the broker.
//
// Deleting a node revokes both and disconnects it.
type NodeAuth struct {
	Tokens core.TokenStore
	// Disconnect ends a revoked node's broker session (nil: no embedded
	// broker to tell).
	Disconnect func(node string)
	// MaxNodes caps the nodes a join token can bring in (0: no cap): every
	// node costs a broker session and a place in every controller pass.
	MaxNodes int

	mu    sync.RWMutex
	creds map[string]string // node -> MQTT password hash, as in the store
}

// Load reads every node's MQTT credential from the store.
func (a *NodeAuth) Load(ctx context.Context) error {
	creds, err := a.Tokens.NodeCredentials(ctx)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.creds = creds
	a.mu.Unlock()
	return nil
}

// Join checks node's password against the one bound to its name (binding
// it if the name is new) and issues a new MQTT password. A wrong node
// password is EUNAUTHORIZED, with a message naming the node.
//
// A node that joined before node passwords existed has an MQTT credential
// but no password: its first join since must prove it is that node with
// its current MQTT password (proof), or anyone with the join token could
// bind the name first.
func (a *NodeAuth) Join(ctx context.Context, node, nodePassword, proof string) (mqttPassword string, err error) {
	if len(nodePassword) < 16 || len(nodePassword) > 256 {
		return "", core.Errorf(core.EINVALID, "join of node %q: the node password must be 16 to 256 characters (agents make one up at their first join)", node)
	}
	hash := HashSecret(nodePassword)
	if a.MaxNodes > 0 && !a.hasCredential(node) {
		a.mu.RLock()
		n := len(a.creds)
		a.mu.RUnlock()
		if n >= a.MaxNodes {
			return "", core.Errorf(core.EUNAVAILABLE, "join of node %q: the cluster has %d nodes, the most it takes (--max-nodes); delete nodes first", node, n)
		}
	}
	if bound, err := a.Tokens.NodePassword(ctx, node); err != nil {
		return "", err
	} else if bound == "" && a.hasCredential(node) && !a.CheckMQTT(node, proof) {
		return "", core.Errorf(core.EUNAUTHORIZED,
			"node %q joined before node passwords were kept: join from its own machine (its agent proves itself with its saved credentials), or delete the node first (edgectl delete node %s)", node, node)
	}
	bound, err := a.Tokens.BindNodePassword(ctx, node, hash)
	if err != nil {
		return "", err
	}
	if subtle.ConstantTimeCompare([]byte(bound), []byte(hash)) != 1 {
		return "", core.Errorf(core.EUNAUTHORIZED,
			"node %q is already registered by another machine (its node password differs): choose another --name, or if this machine replaces it, delete the node first (edgectl delete node %s)", node, node)
	}
	password := NewSecret()
	ph := HashSecret(password)
	if err := a.Tokens.SetNodeCredential(ctx, node, ph); err != nil {
		return "", err
	}
	a.mu.Lock()
	if a.creds == nil {
		a.creds = map[string]string{}
	}
	a.creds[node] = ph
	a.mu.Unlock()
	return password, nil
}

// Known reports whether node has a credential (it has not been revoked).
func (a *NodeAuth) Known(node string) bool { return a.hasCredential(node) }

func (a *NodeAuth) hasCredential(node string) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	_, ok := a.creds[node]
	return ok
}

// CheckMQTT reports whether password is node's current MQTT password (the
// embedded broker's authentication).
func (a *NodeAuth) CheckMQTT(node, password string) bool {
	a.mu.RLock()
	h, ok := a.creds[node]
	a.mu.RUnlock()
	return ok && subtle.ConstantTimeCompare([]byte(h), []byte(HashSecret(password))) == 1
}

// Revoke forgets node's credentials and ends its broker session. Revoking
// an unknown node is not an error.
func (a *NodeAuth) Revoke(ctx context.Context, node string) error {
	if err := a.Tokens.DeleteNodeCredentials(ctx, node); err != nil {
		return err
	}
	a.mu.Lock()
	delete(a.creds, node)
	a.mu.Unlock()
	if a.Disconnect != nil {
		a.Disconnect(node)
	}
	return nil
}
