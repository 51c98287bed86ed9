package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/edgeorch/edge/core"
)

// NewSecret returns a random 128-bit secret in hex.
func NewSecret() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// HashSecret returns the SHA-256 of a secret; only hashes are stored.
func HashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// JoinToken is a parsed "K10<ca-hash>::<id>.<secret>" token, the format k3s
// users know: the CA hash lets an agent verify the master before it sends
// anything.
type JoinToken struct {
	CAHash, ID, Secret string
}

func (t JoinToken) String() string { return "K10" + t.CAHash + "::" + t.ID + "." + t.Secret }

// ParseJoinToken parses a join token.
func ParseJoinToken(s string) (JoinToken, error) {
	s = strings.TrimSpace(s)
	bad := core.Errorf(core.EINVALID, "malformed join token: want K10<ca-sha256>::<id>.<secret>, as written to the master's data dir (join-token) or printed by 'edgectl token create'")
	rest, ok := strings.CutPrefix(s, "K10")
	if !ok {
		return JoinToken{}, bad
	}
	hash, cred, ok := strings.Cut(rest, "::")
	if !ok || len(hash) != 64 {
		return JoinToken{}, bad
	}
	if _, err := hex.DecodeString(hash); err != nil {
		return JoinToken{}, bad
	}
	id, secret, ok := strings.Cut(cred, ".")
	if !ok || id == "" || secret == "" {
		return JoinToken{}, bad
	}
	return JoinToken{CAHash: strings.ToLower(hash), ID: id, Secret: secret}, nil
}
