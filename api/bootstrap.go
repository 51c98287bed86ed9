package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/fsutil"
)

// Token IDs of the secrets kept in the master's data dir.
const (
	AdminTokenID = "admin"
	JoinTokenID  = "default"
)

// Bootstrap keeps the master's own secrets: the admin token in admin.conf
// and the default join token in join-token, both in the data dir. The files
// are the truth and are written before the store learns of a secret, so a
// first start that fails half-way (a port taken) leaves a data dir the next
// start completes, and a lost admin.conf is replaced by starting again (the
// store then forgets the old token).
type Bootstrap struct {
	DataDir string
	PKI     *PKI
	Tokens  core.TokenStore
	Log     *slog.Logger

	mu    sync.Mutex
	admin string
}

// AdminConfPath is where edgectl's config for this master lives.
func (b *Bootstrap) AdminConfPath() string { return filepath.Join(b.DataDir, "admin.conf") }

// JoinTokenPath is where the default join token lives.
func (b *Bootstrap) JoinTokenPath() string { return filepath.Join(b.DataDir, "join-token") }

// revokedPath marks a revoked default join token, so that a restart does
// not make it valid again from its file.
func (b *Bootstrap) revokedPath() string { return filepath.Join(b.DataDir, "join-token.revoked") }

// RevokeJoin forgets the default join token in the data dir (the caller
// deletes it from the store): the file goes, and a marker keeps the next
// start from making a new one. Remove the marker and restart for a new
// default token; 'edgectl token create' makes others.
func (b *Bootstrap) RevokeJoin() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := fsutil.WriteFileAtomic(b.revokedPath(), []byte("the default join token was revoked; remove this file and restart the master for a new one\n"), 0o600); err != nil {
		return err
	}
	if err := os.Remove(b.JoinTokenPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Ensure makes sure admin.conf and join-token exist (creating secrets on
// first start) and that the store accepts exactly the tokens they hold.
// apiAddr is the API's listen address, for admin.conf's server URL.
func (b *Bootstrap) Ensure(ctx context.Context, apiAddr string) (JoinToken, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cfg, err := LoadConfig(b.AdminConfPath()); err == nil && cfg.Token != "" {
		b.admin = cfg.Token
	} else {
		b.admin = NewSecret() + NewSecret()
		if err := b.writeAdminConf(apiAddr); err != nil {
			return JoinToken{}, err
		}
	}
	if err := b.ensureToken(ctx, AdminTokenID, core.TokenAdmin, b.admin, b.AdminConfPath()); err != nil {
		return JoinToken{}, err
	}
	var join JoinToken
	if _, err := os.Stat(b.revokedPath()); err == nil {
		if _, err := os.Stat(b.JoinTokenPath()); errors.Is(err, os.ErrNotExist) {
			// The default join token was revoked: it must not come back.
			if err := b.Tokens.DeleteToken(ctx, JoinTokenID); err != nil && core.ErrorCode(err) != core.ENOTFOUND {
				return join, err
			}
			return join, nil
		}
	}
	if data, err := os.ReadFile(b.JoinTokenPath()); err == nil {
		if join, err = ParseJoinToken(string(data)); err != nil {
			return join, fmt.Errorf("%s: %v", b.JoinTokenPath(), ErrorString(err))
		}
		if join.CAHash != b.PKI.CAHash() {
			return join, fmt.Errorf("%s pins another CA than %s; remove the token file to make a new one", b.JoinTokenPath(), filepath.Join(b.DataDir, "ca.crt"))
		}
	} else {
		join = JoinToken{CAHash: b.PKI.CAHash(), ID: JoinTokenID, Secret: NewSecret()}
		if err := fsutil.WriteFileAtomic(b.JoinTokenPath(), []byte(join.String()+"\n"), 0o600); err != nil {
			return join, err
		}
	}
	return join, b.ensureToken(ctx, join.ID, core.TokenJoin, join.ID+"."+join.Secret, b.JoinTokenPath())
}

// ensureToken makes the store hold secret under id, replacing another
// secret there: the file wins.
func (b *Bootstrap) ensureToken(ctx context.Context, id, kind, secret, file string) error {
	hash := HashSecret(secret)
	if _, err := b.Tokens.FindToken(ctx, kind, hash); err == nil {
		return nil
	}
	if list, err := b.Tokens.ListTokens(ctx); err == nil {
		for _, t := range list {
			if t.ID == id && b.Log != nil {
				b.Log.Warn("the store held another token than the data dir: the file wins, the old token no longer works", "token", id, "file", file)
			}
		}
	}
	return b.Tokens.PutToken(ctx, &core.Token{ID: id, Kind: kind, Hash: hash, Description: "kept in " + file})
}

// WriteAdminConf (re)writes admin.conf for the API listening at addr.
func (b *Bootstrap) WriteAdminConf(addr string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.writeAdminConf(addr)
}

func (b *Bootstrap) writeAdminConf(addr string) error {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("api address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	cfg := &Config{Server: "https://" + net.JoinHostPort(host, p), Token: b.admin,
		CertificateAuthorityData: base64.StdEncoding.EncodeToString(b.PKI.CAPEM)}
	if old, err := os.ReadFile(b.AdminConfPath()); err == nil && string(old) == string(cfg.Marshal()) {
		return nil
	}
	return fsutil.WriteFileAtomic(b.AdminConfPath(), cfg.Marshal(), 0o600)
}

// RotateAdmin replaces the admin token: admin.conf gets the new one first,
// then the store; the old one stops working at once. addr is the API's
// address for admin.conf.
func (b *Bootstrap) RotateAdmin(ctx context.Context, addr string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.admin
	b.admin = NewSecret() + NewSecret()
	if err := b.writeAdminConf(addr); err != nil {
		b.admin = old
		return "", err
	}
	if err := b.Tokens.PutToken(ctx, &core.Token{ID: AdminTokenID, Kind: core.TokenAdmin, Hash: HashSecret(b.admin),
		Description: "kept in " + b.AdminConfPath()}); err != nil {
		return "", fmt.Errorf("%s holds the new admin token but the store could not take it (restart the master to finish): %w", b.AdminConfPath(), err)
	}
	return b.admin, nil
}
