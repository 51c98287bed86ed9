package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/edgeorch/edge/core"
)

// CreateToken implements core.TokenStore.
func (db *DB) CreateToken(ctx context.Context, t *core.Token) error {
	err := db.writeToken(ctx, "INSERT", t)
	if core.ErrorCode(err) == core.ECONFLICT {
		return core.Errorf(core.ECONFLICT, "token %q already exists", t.ID)
	}
	return err
}

// PutToken implements core.TokenStore.
func (db *DB) PutToken(ctx context.Context, t *core.Token) error {
	return db.writeToken(ctx, "INSERT OR REPLACE", t)
}

// writeToken stores t with insert, the statement's verb.
func (db *DB) writeToken(ctx context.Context, insert string, t *core.Token) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	now := db.Now().UTC()
	t.CreatedAt = core.NewTime(now)
	var expires any
	if t.ExpiresAt != nil {
		expires = t.ExpiresAt.UTC().Format(time.RFC3339)
	}
	_, err := db.db.ExecContext(ctx, insert+` INTO tokens (id, kind, hash, description, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
		t.ID, t.Kind, t.Hash, t.Description, now.Format(time.RFC3339), expires)
	if err != nil {
		return mapError(err)
	}
	db.writes.Add(1)
	return nil
}

// FindToken implements core.TokenStore.
func (db *DB) FindToken(ctx context.Context, kind, hash string) (*core.Token, error) {
	t := &core.Token{Kind: kind, Hash: hash}
	var created string
	var expires sql.NullString
	err := db.db.QueryRowContext(ctx, `SELECT id, description, created_at, expires_at FROM tokens WHERE kind = ? AND hash = ?`, kind, hash).
		Scan(&t.ID, &t.Description, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, core.Errorf(core.EUNAUTHORIZED, "invalid %s token", kind)
	} else if err != nil {
		return nil, mapError(err)
	}
	if c, err := time.Parse(time.RFC3339, created); err == nil {
		t.CreatedAt = core.NewTime(c)
	}
	if expires.Valid {
		e, err := time.Parse(time.RFC3339, expires.String)
		if err != nil {
			return nil, err
		}
		t.ExpiresAt = core.NewTime(e)
		if db.Now().After(e) {
			return nil, core.Errorf(core.EUNAUTHORIZED, "%s token %q expired at %s", kind, t.ID, expires.String)
		}
	}
	return t, nil
}

// SetNodeCredential implements core.TokenStore.
func (db *DB) SetNodeCredential(ctx context.Context, node, hash string) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	_, err := db.db.ExecContext(ctx, `INSERT OR REPLACE INTO node_credentials (node, hash, created_at) VALUES (?, ?, ?)`,
		node, hash, db.Now().UTC().Format(time.RFC3339))
	if err != nil {
		return mapError(err)
	}
	db.writes.Add(1)
	return nil
}

// NodeCredentials implements core.TokenStore.
func (db *DB) NodeCredentials(ctx context.Context) (map[string]string, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT node, hash FROM node_credentials`)
	if err != nil {
		return nil, mapError(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var node, hash string
		if err := rows.Scan(&node, &hash); err != nil {
			return nil, err
		}
		out[node] = hash
	}
	return out, rows.Err()
}

// ListTokens implements core.TokenStore.
func (db *DB) ListTokens(ctx context.Context) ([]*core.Token, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT id, kind, description, created_at, expires_at FROM tokens ORDER BY id`)
	if err != nil {
		return nil, mapError(err)
	}
	defer rows.Close()
	var out []*core.Token
	for rows.Next() {
		t := &core.Token{}
		var created string
		var expires sql.NullString
		if err := rows.Scan(&t.ID, &t.Kind, &t.Description, &created, &expires); err != nil {
			return nil, err
		}
		if c, err := time.Parse(time.RFC3339, created); err == nil {
			t.CreatedAt = core.NewTime(c)
		}
		if e, err := time.Parse(time.RFC3339, expires.String); expires.Valid && err == nil {
			t.ExpiresAt = core.NewTime(e)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// DeleteToken implements core.TokenStore.
func (db *DB) DeleteToken(ctx context.Context, id string) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	res, err := db.db.ExecContext(ctx, `DELETE FROM tokens WHERE id = ?`, id)
	if err != nil {
		return mapError(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return core.Errorf(core.ENOTFOUND, "token %q not found (see edgectl token ls)", id)
	}
	db.writes.Add(1)
	return nil
}

// BindNodePassword implements core.TokenStore.
func (db *DB) BindNodePassword(ctx context.Context, node, hash string) (string, error) {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return "", mapError(err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO node_passwords (node, hash, created_at) VALUES (?, ?, ?)`,
		node, hash, db.Now().UTC().Format(time.RFC3339))
	if err != nil {
		return "", mapError(err)
	}
	var bound string
	if err := tx.QueryRowContext(ctx, `SELECT hash FROM node_passwords WHERE node = ?`, node).Scan(&bound); err != nil {
		return "", mapError(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return bound, nil // already bound: nothing written
	}
	if err := tx.Commit(); err != nil {
		return "", mapError(err)
	}
	db.writes.Add(1)
	return bound, nil
}

// NodePassword implements core.TokenStore.
func (db *DB) NodePassword(ctx context.Context, node string) (string, error) {
	var hash string
	err := db.db.QueryRowContext(ctx, `SELECT hash FROM node_passwords WHERE node = ?`, node).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return hash, mapError(err)
}

// DeleteNodeCredentials implements core.TokenStore.
func (db *DB) DeleteNodeCredentials(ctx context.Context, node string) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return mapError(err)
	}
	defer tx.Rollback()
	for _, q := range []string{`DELETE FROM node_passwords WHERE node = ?`, `DELETE FROM node_credentials WHERE node = ?`} {
		if _, err := tx.ExecContext(ctx, q, node); err != nil {
			return mapError(err)
		}
	}
	if err := tx.Commit(); err != nil {
		return mapError(err)
	}
	db.writes.Add(1)
	return nil
}
