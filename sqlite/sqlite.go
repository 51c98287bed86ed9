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
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
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

	db      *sql.DB
	writeMu sync.Mutex // one writer at a time, as SQLite wants anyway

	mu       sync.RWMutex
	sortMu   sync.Mutex // guards sorted, which readers fill under mu.RLock
	objects  map[core.Kind]map[nsName]*entry
	sorted   map[core.Kind][]core.Object // per kind, by namespace/name; nil when stale
	byNode   map[string]map[nsName]bool  // pods per node
	about    map[string]map[nsName]bool  // events per involved object uid
	rev      int64
	watchers map[*watcher]struct{}

	writes atomic.Int64
}

type nsName struct{ ns, name string }

// entry is a cached object and its JSON, kept so that lists are served
// without encoding thousands of objects again.
type entry struct {
	obj core.Object
	raw []byte
}

type watcher struct {
	ch chan core.WatchEvent
}

// NewDB returns a store for the database file at path.
func NewDB(path string) *DB {
	return &DB{Path: path, Now: time.Now}
}

var (
	_ core.Store      = (*DB)(nil)
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
	if err := db.load(); err != nil {
		db.db.Close()
		return fmt.Errorf("load %s: %w", db.Path, err)
	}
	db.watchers = map[*watcher]struct{}{}
	// The default namespace always exists.
	return db.Update(context.Background(), func(tx core.Tx) error {
		if _, err := tx.Get(core.Key{Kind: core.KindNamespace, Name: core.DefaultNamespace}); core.ErrorCode(err) != core.ENOTFOUND {
			return err
		}
		ns, _ := core.NewObject(core.KindNamespace)
		ns.GetMeta().Name = core.DefaultNamespace
		ns.(*core.Namespace).Status.Phase = "Active"
		return tx.Create(ns)
	})
}

// Close closes the database and ends all watches. It is idempotent.
func (db *DB) Close() error {
	db.mu.Lock()
	for w := range db.watchers {
		close(w.ch)
		delete(db.watchers, w)
	}
	db.mu.Unlock()
	if db.db != nil {
		err := db.db.Close()
		db.db = nil
		return err
	}
	return nil
}

// Writes returns how many write transactions were committed since Open.
func (db *DB) Writes() int64 { return db.writes.Load() }

// Revision returns the current store revision.
func (db *DB) Revision() int64 {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.rev
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

func (db *DB) load() error {
	db.objects = map[core.Kind]map[nsName]*entry{}
	db.sorted = map[core.Kind][]core.Object{}
	db.byNode = map[string]map[nsName]bool{}
	db.about = map[string]map[nsName]bool{}
	for _, k := range core.Kinds {
		db.objects[k] = map[nsName]*entry{}
	}
	if err := db.db.QueryRow(`SELECT rv FROM revision WHERE id = 1`).Scan(&db.rev); err != nil {
		return err
	}
	rows, err := db.db.Query(`SELECT kind, namespace, name, data FROM objects`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var kind, ns, name string
		var data []byte
		if err := rows.Scan(&kind, &ns, &name, &data); err != nil {
			return err
		}
		obj, err := core.DecodeObject(core.Kind(kind), data)
		if err != nil {
			return fmt.Errorf("%s %s/%s: %w", kind, ns, name, err)
		}
		db.objects[core.Kind(kind)][nsName{ns, name}] = &entry{obj: obj, raw: data}
		db.indexPod(obj, true)
	}
	return rows.Err()
}

// Get implements core.Store.
func (db *DB) Get(ctx context.Context, k core.Key) (core.Object, error) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.get(k)
}

func (db *DB) get(k core.Key) (core.Object, error) {
	m, ok := db.objects[k.Kind]
	if !ok {
		return nil, core.Errorf(core.EINVALID, "unknown kind %q", k.Kind)
	}
	if e, ok := m[nsName{k.Namespace, k.Name}]; ok {
		return e.obj, nil
	}
	return nil, core.Errorf(core.ENOTFOUND, "%s not found", k)
}

// indexPod adds (or removes) a pod in the pods-by-node index, or an event
// in the events-by-object index.
func (db *DB) indexPod(obj core.Object, add bool) {
	var idx map[string]map[nsName]bool
	var key string
	switch o := obj.(type) {
	case *core.Pod:
		idx, key = db.byNode, o.Spec.NodeName
	case *core.EventObj:
		idx, key = db.about, o.InvolvedObject.UID
	}
	if idx == nil || key == "" {
		return
	}
	m := obj.GetMeta()
	k := nsName{m.Namespace, m.Name}
	if !add {
		delete(idx[key], k)
		if len(idx[key]) == 0 {
			delete(idx, key)
		}
		return
	}
	if idx[key] == nil {
		idx[key] = map[nsName]bool{}
	}
	idx[key][k] = true
}

// eventsAbout returns the events about uid, seen through overlay.
func (db *DB) eventsAbout(uid string, overlay map[core.Key]core.Object) []*core.EventObj {
	var out []*core.EventObj
	for k := range db.about[uid] {
		if _, ok := overlay[core.Key{Kind: core.KindEvent, Namespace: k.ns, Name: k.name}]; ok {
			continue
		}
		out = append(out, db.objects[core.KindEvent][k].obj.(*core.EventObj))
	}
	for k, o := range overlay {
		if e, ok := o.(*core.EventObj); ok && k.Kind == core.KindEvent && e.InvolvedObject.UID == uid {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Metadata.Namespace != out[j].Metadata.Namespace {
			return out[i].Metadata.Namespace < out[j].Metadata.Namespace
		}
		return out[i].Metadata.Name < out[j].Metadata.Name
	})
	return out
}

// List implements core.Store.
func (db *DB) List(ctx context.Context, kind core.Kind, ns string) ([]core.Object, error) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.list(kind, ns, nil)
}

// ListRaw is List with each object's JSON (core.RawLister).
func (db *DB) ListRaw(ctx context.Context, kind core.Kind, ns string) ([]core.Object, [][]byte, error) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	objs, err := db.list(kind, ns, nil)
	if err != nil {
		return nil, nil, err
	}
	raws := make([][]byte, len(objs))
	for i, o := range objs {
		m := o.GetMeta()
		raws[i] = db.objects[kind][nsName{m.Namespace, m.Name}].raw
	}
	return objs, raws, nil
}

// sortedList returns all objects of kind in order, from the cache. Callers
// hold db.mu; the cache is rebuilt under it at most once per change.
func (db *DB) sortedList(kind core.Kind) []core.Object {
	db.sortMu.Lock()
	l := db.sorted[kind]
	db.sortMu.Unlock()
	if l != nil {
		return l
	}
	m := db.objects[kind]
	l = make([]core.Object, 0, len(m))
	for _, e := range m {
		l = append(l, e.obj)
	}
	sortObjects(l)
	db.sortMu.Lock()
	db.sorted[kind] = l
	db.sortMu.Unlock()
	return l
}

func sortObjects(l []core.Object) {
	sort.Slice(l, func(i, j int) bool {
		a, b := l[i].GetMeta(), l[j].GetMeta()
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
}

func (db *DB) list(kind core.Kind, ns string, overlay map[core.Key]core.Object) ([]core.Object, error) {
	if _, ok := db.objects[kind]; !ok {
		return nil, core.Errorf(core.EINVALID, "unknown kind %q", kind)
	}
	changed := false
	for k := range overlay {
		if k.Kind == kind {
			changed = true
			break
		}
	}
	base := db.sortedList(kind)
	out := make([]core.Object, 0, len(base))
	for _, o := range base {
		m := o.GetMeta()
		if ns != "" && m.Namespace != ns {
			continue
		}
		if changed {
			if _, ok := overlay[core.Key{Kind: kind, Namespace: m.Namespace, Name: m.Name}]; ok {
				continue
			}
		}
		out = append(out, o)
	}
	if !changed {
		return out, nil
	}
	for k, o := range overlay {
		if k.Kind == kind && o != nil && (ns == "" || k.Namespace == ns) {
			out = append(out, o)
		}
	}
	sortObjects(out)
	return out, nil
}

// podsOnNode returns the pods bound to node, seen through overlay.
func (db *DB) podsOnNode(node string, overlay map[core.Key]core.Object) []*core.Pod {
	var out []*core.Pod
	for k := range db.byNode[node] {
		key := core.Key{Kind: core.KindPod, Namespace: k.ns, Name: k.name}
		if _, ok := overlay[key]; ok {
			continue
		}
		out = append(out, db.objects[core.KindPod][k].obj.(*core.Pod))
	}
	for k, o := range overlay {
		if p, ok := o.(*core.Pod); ok && k.Kind == core.KindPod && p.Spec.NodeName == node {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Metadata.Namespace != out[j].Metadata.Namespace {
			return out[i].Metadata.Namespace < out[j].Metadata.Namespace
		}
		return out[i].Metadata.Name < out[j].Metadata.Name
	})
	return out
}

// Watch implements core.Store.
func (db *DB) Watch() (<-chan core.WatchEvent, func()) {
	w := &watcher{ch: make(chan core.WatchEvent, 4096)}
	db.mu.Lock()
	db.watchers[w] = struct{}{}
	db.mu.Unlock()
	return w.ch, func() {
		db.mu.Lock()
		defer db.mu.Unlock()
		if _, ok := db.watchers[w]; ok {
			delete(db.watchers, w)
			close(w.ch)
		}
	}
}

// tx is a transaction: changes collect in an overlay over the cache and are
// written to SQLite in one transaction when fn returns nil.
type tx struct {
	db      *DB
	now     time.Time
	overlay map[core.Key]core.Object // nil value: deleted
	raw     map[core.Key][]byte      // JSON of written objects, from commit
	events  []core.WatchEvent
	rev     int64
}

// Update implements core.Store.
func (db *DB) Update(ctx context.Context, fn func(core.Tx) error) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	db.mu.RLock()
	t := &tx{db: db, now: db.Now(), overlay: map[core.Key]core.Object{}, raw: map[core.Key][]byte{}, rev: db.rev}
	err := fn(t)
	db.mu.RUnlock()
	if err != nil {
		return err
	}
	if len(t.events) == 0 {
		return nil // nothing changed: no SQL, no disk write
	}
	if err := db.commit(ctx, t); err != nil {
		return err
	}
	db.mu.Lock()
	for k, o := range t.overlay {
		nk := nsName{k.Namespace, k.Name}
		if old, ok := db.objects[k.Kind][nk]; ok {
			db.indexPod(old.obj, false)
		}
		if o == nil {
			delete(db.objects[k.Kind], nk)
		} else {
			db.objects[k.Kind][nk] = &entry{obj: o, raw: t.raw[k]}
			db.indexPod(o, true)
		}
		db.sortMu.Lock()
		delete(db.sorted, k.Kind)
		db.sortMu.Unlock()
	}
	db.rev = t.rev
	for w := range db.watchers {
		for _, ev := range t.events {
			select {
			case w.ch <- ev:
			default: // too far behind: it must list again
				delete(db.watchers, w)
				close(w.ch)
			}
			if _, ok := db.watchers[w]; !ok {
				break
			}
		}
	}
	db.mu.Unlock()
	db.writes.Add(1)
	return nil
}

func (db *DB) commit(ctx context.Context, t *tx) error {
	sqlTx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return mapError(err)
	}
	defer sqlTx.Rollback()
	for k, o := range t.overlay {
		if o == nil {
			if _, err := sqlTx.Exec(`DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?`, string(k.Kind), k.Namespace, k.Name); err != nil {
				return mapError(err)
			}
			continue
		}
		data, err := json.Marshal(o)
		if err != nil {
			return err
		}
		t.raw[k] = data
		m := o.GetMeta()
		rv, _ := strconv.ParseInt(m.ResourceVersion, 10, 64)
		if _, err := sqlTx.Exec(`INSERT OR REPLACE INTO objects (kind, namespace, name, uid, rv, data) VALUES (?, ?, ?, ?, ?, ?)`,
			string(k.Kind), k.Namespace, k.Name, m.UID, rv, data); err != nil {
			return mapError(err)
		}
	}
	if _, err := sqlTx.Exec(`UPDATE revision SET rv = ? WHERE id = 1`, t.rev); err != nil {
		return mapError(err)
	}
	return mapError(sqlTx.Commit())
}

func (t *tx) Get(k core.Key) (core.Object, error) {
	if o, ok := t.overlay[k]; ok {
		if o == nil {
			return nil, core.Errorf(core.ENOTFOUND, "%s not found", k)
		}
		return o, nil
	}
	return t.db.get(k)
}

func (t *tx) List(kind core.Kind, ns string) ([]core.Object, error) {
	return t.db.list(kind, ns, t.overlay)
}

func (t *tx) PodsOnNode(node string) ([]*core.Pod, error) {
	return t.db.podsOnNode(node, t.overlay), nil
}

func (t *tx) EventsAbout(uid string) ([]*core.EventObj, error) {
	return t.db.eventsAbout(uid, t.overlay), nil
}

func (t *tx) Create(obj core.Object) error {
	k := core.KeyOf(obj)
	if _, err := t.Get(k); err == nil {
		return core.Errorf(core.ECONFLICT, "%s already exists", k)
	} else if core.ErrorCode(err) != core.ENOTFOUND {
		return err
	}
	m := obj.GetMeta()
	m.UID = newUID()
	m.Generation = 1
	m.CreationTimestamp = core.NewTime(t.now)
	t.write(core.Added, k, obj)
	return nil
}

func (t *tx) Put(obj core.Object) error {
	k := core.KeyOf(obj)
	old, err := t.Get(k)
	if err != nil {
		return err
	}
	om := old.GetMeta()
	m := obj.GetMeta()
	if m.ResourceVersion != "" && m.ResourceVersion != om.ResourceVersion {
		return core.Errorf(core.ECONFLICT, "%s was changed by someone else (resourceVersion %s, now %s); get it again and retry",
			k, m.ResourceVersion, om.ResourceVersion)
	}
	m.UID, m.CreationTimestamp, m.Generation = om.UID, om.CreationTimestamp, om.Generation
	if !core.JSONEqual(core.SpecOf(old), core.SpecOf(obj)) {
		m.Generation++
	}
	t.write(core.Modified, k, obj)
	return nil
}

func (t *tx) Delete(k core.Key) error {
	old, err := t.Get(k)
	if err != nil {
		return err
	}
	t.overlay[k] = nil
	t.rev++
	t.events = append(t.events, core.WatchEvent{Type: core.Deleted, Object: old})
	return nil
}

func (t *tx) write(typ core.EventType, k core.Key, obj core.Object) {
	t.rev++
	obj.GetMeta().ResourceVersion = strconv.FormatInt(t.rev, 10)
	t.overlay[k] = obj
	t.events = append(t.events, core.WatchEvent{Type: typ, Object: obj})
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
