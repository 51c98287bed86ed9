// Package sqlite implements core.Store and core.TokenStore on SQLite.
//
// Every object is kept twice: as JSON in SQLite (the durable copy, in WAL
// mode) and decoded in memory (the copy every read is served from). An
// Update that changes nothing issues no SQL at all, so an idle cluster does
// not wear out an SD card. This package must never hold state that is not
// in the database once Update has returned.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/mattn/go-sqlite3"
)

//go:embed migration/*.sql
var migrationFS embed.FS

// DB is a SQLite-backed store. Configure the exported fields, then Open.
type DB struct {
	Path string
	Now  func() time.Time
	// SecretsKey (32 bytes) encrypts Secrets at rest; nil stores them
	// plain (tests). See LoadOrCreateKey.
	SecretsKey []byte

	db  *sql.DB
	mem *core.MemoryStore // every read is served from it; commits persist here first

	writeMu sync.Mutex   // token writes, one at a time
	writes  atomic.Int64 // token writes committed
}

// NewDB returns a store for the database file at path.
func NewDB(path string) *DB {
	return &DB{Path: path, Now: time.Now}
}

var (
	_ core.Store      = (*DB)(nil)
	_ core.RawLister  = (*DB)(nil)
	_ core.TokenStore = (*DB)(nil)
)

// Open opens (creating if needed) the database, migrates it and loads every
// object into memory.
func (db *DB) Open() error {
	if db.Path == "" {
		return fmt.Errorf("sqlite: database path required")
	}
	dsn := "file:" + db.Path + "?_journal_mode=WAL&_synchronous=NORMAL&_foreign_keys=on&_busy_timeout=5000&_txlock=immediate"
	var err error
	if db.db, err = sql.Open("sqlite3", dsn); err != nil {
		return err
	}
	// One connection: SQLite serialises writers anyway, reads come from memory.
	db.db.SetMaxOpenConns(1)
	if err := db.migrate(); err != nil {
		db.db.Close()
		return fmt.Errorf("migrate %s: %w", db.Path, err)
	}
	db.mem = &core.MemoryStore{
		Now:     func() time.Time { return db.Now() },
		NewUID:  newUID,
		Persist: db.commit,
	}
	if err := db.load(); err != nil {
		db.db.Close()
		return fmt.Errorf("load %s: %w", db.Path, err)
	}
	return nil
}

// Close closes the database and ends all watches. It is idempotent.
func (db *DB) Close() error {
	if db.mem != nil {
		db.mem.Close()
	}
	if db.db != nil {
		err := db.db.Close()
		db.db = nil
		return err
	}
	return nil
}

// Writes returns how many write transactions were committed since Open,
// objects and tokens.
func (db *DB) Writes() int64 { return db.mem.Writes() + db.writes.Load() }

// Revision returns the current store revision.
func (db *DB) Revision() int64 { return db.mem.Revision() }

// Get implements core.Store.
func (db *DB) Get(ctx context.Context, k core.Key) (core.Object, error) { return db.mem.Get(ctx, k) }

// List implements core.Store.
func (db *DB) List(ctx context.Context, kind core.Kind, ns string) ([]core.Object, error) {
	return db.mem.List(ctx, kind, ns)
}

// ListRaw is List with each object's JSON (core.RawLister).
func (db *DB) ListRaw(ctx context.Context, kind core.Kind, ns string) ([]core.Object, [][]byte, error) {
	return db.mem.ListRaw(ctx, kind, ns)
}

// Watch implements core.Store.
func (db *DB) Watch() (<-chan core.WatchEvent, func()) { return db.mem.Watch() }

// Update implements core.Store. An Update that changes nothing issues no SQL.
func (db *DB) Update(ctx context.Context, fn func(core.Tx) error) error {
	return db.mem.Update(ctx, fn)
}

func (db *DB) migrate() error {
	if _, err := db.db.Exec(`CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY)`); err != nil {
		return err
	}
	names, err := fs.Glob(migrationFS, "migration/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	// A database a newer master migrated holds what this one would not
	// understand, and would lose on its next write: refused, not opened.
	rows, err := db.db.Query(`SELECT name FROM migrations`)
	if err != nil {
		return err
	}
	var newer []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		if i := sort.SearchStrings(names, name); i == len(names) || names[i] != name {
			newer = append(newer, name)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(newer) > 0 {
		return core.Errorf(core.EINVALID, "the database was written by a newer edgemaster (schema %s): run that version or newer; downgrades are not supported", strings.Join(newer, ", "))
	}
	// Each migration runs in its own transaction: one that fails leaves
	// the database as the last one left it.
	for _, name := range names {
		if err := db.migrateFile(name); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func (db *DB) migrateFile(name string) error {
	tx, err := db.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRow(`SELECT COUNT(*) FROM migrations WHERE name = ?`, name).Scan(&n); err != nil {
		return err
	} else if n != 0 {
		return nil
	}
	buf, err := fs.ReadFile(migrationFS, name)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(string(buf)); err != nil {
		return err
	}
	if _, err := tx.Exec(`INSERT INTO migrations (name) VALUES (?)`, name); err != nil {
		return err
	}
	return tx.Commit()
}

// load reads every object into the memory store, which then creates the
// default namespace if the database has none.
func (db *DB) load() error {
	var rev int64
	if err := db.db.QueryRow(`SELECT rv FROM revision WHERE id = 1`).Scan(&rev); err != nil {
		return err
	}
	rows, err := db.db.Query(`SELECT kind, namespace, name, data FROM objects`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var objs []core.Object
	var raws [][]byte
	for rows.Next() {
		var kind, ns, name string
		var data []byte
		if err := rows.Scan(&kind, &ns, &name, &data); err != nil {
			return err
		}
		if data, err = db.open(core.Kind(kind), kind+" "+ns+"/"+name, data); err != nil {
			return err
		}
		obj, err := core.DecodeObject(core.Kind(kind), data)
		if err != nil {
			return fmt.Errorf("%s %s/%s: %w", kind, ns, name, err)
		}
		objs = append(objs, obj)
		raws = append(raws, data)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows.Close() // the one connection is needed to create the default namespace
	return db.mem.Load(rev, objs, raws)
}

// commit writes one transaction's changes to SQLite (core.MemoryStore's
// Persist); the memory store applies them only if this succeeds.
func (db *DB) commit(ctx context.Context, c core.Commit) error {
	if db.db == nil {
		return core.Errorf(core.EUNAVAILABLE, "database %s is closed", db.Path)
	}
	sqlTx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return mapError(err)
	}
	defer sqlTx.Rollback()
	for k, o := range c.Objects {
		if o == nil {
			if _, err := sqlTx.Exec(`DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?`, string(k.Kind), k.Namespace, k.Name); err != nil {
				return mapError(err)
			}
			continue
		}
		m := o.GetMeta()
		rv, _ := strconv.ParseInt(m.ResourceVersion, 10, 64)
		data, err := db.seal(k.Kind, c.Raw[k])
		if err != nil {
			return err
		}
		if _, err := sqlTx.Exec(`INSERT OR REPLACE INTO objects (kind, namespace, name, uid, rv, data) VALUES (?, ?, ?, ?, ?, ?)`,
			string(k.Kind), k.Namespace, k.Name, m.UID, rv, data); err != nil {
			return mapError(err)
		}
	}
	if _, err := sqlTx.Exec(`UPDATE revision SET rv = ? WHERE id = 1`, c.Rev); err != nil {
		return mapError(err)
	}
	return mapError(sqlTx.Commit())
}

func newUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// mapError turns SQLite errors into coded errors by SQLite error code.
func mapError(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrConstraint:
			return core.Errorf(core.ECONFLICT, "conflict: %v", se)
		case sqlite3.ErrBusy, sqlite3.ErrLocked:
			return core.Errorf(core.EUNAVAILABLE, "database busy: %v", se)
		case sqlite3.ErrFull:
			return core.Errorf(core.EUNAVAILABLE, "disk full: %v", se)
		}
	}
	return err
}
