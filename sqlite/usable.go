package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Usable opens a scratch database in dir the way Open does (WAL), writes,
// reads it back and removes it: edgemaster check's proof that SQLite works
// on that filesystem (WAL needs shared memory and locks that some network
// and FUSE filesystems lack).
func Usable(dir string) (err error) {
	f, err := os.CreateTemp(dir, ".edge-check-*.db")
	if err != nil {
		return err
	}
	path := f.Name()
	f.Close()
	defer func() {
		for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
			os.Remove(p)
		}
	}()
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode %q, not wal", mode)
	}
	if _, err := db.Exec("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('edge')"); err != nil {
		return err
	}
	var v string
	if err := db.QueryRow("SELECT v FROM t").Scan(&v); err != nil {
		return err
	}
	if v != "edge" {
		return fmt.Errorf("read %q back, wrote %q", v, "edge")
	}
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return fmt.Errorf("checkpoint into %s: %w", filepath.Base(path), err)
	}
	return nil
}
