package core

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryStore is a Store kept in memory: transactions whose reads see
// their own writes, all or nothing commits, optimistic concurrency on
// resourceVersion, generation bumped by spec changes, bounded watches.
//
// On its own it is a working store for tests and tools that need no
// durability, as raft's MemoryStorage is, not a mock; it never does I/O.
// With Persist set it is the memory half of a durable store: sqlite.DB
// serves every read from it and writes each commit through Persist, so the
// two share one implementation of these semantics, and the conformance
// suite in core/storetest holds both to them.
//
// The zero value is ready to use; set the exported fields before the first
// call. A store with Persist must be started with Load.
type MemoryStore struct {
	// Now stamps creationTimestamp (default time.Now).
	Now func() time.Time
	// WatchBuffer is how many events a watcher may fall behind before its
	// channel is closed (default 4096).
	WatchBuffer int
	// NewUID makes the uid of each created object (default: a counter,
	// which keeps tests deterministic).
	NewUID func() string
	// Persist, when set, is called by every commit that changes something,
	// one at a time and before the changes become visible; if it fails,
	// the commit fails and nothing changes.
	Persist func(ctx context.Context, c Commit) error

	once     sync.Once
	writeMu  sync.Mutex // one transaction at a time
	mu       sync.RWMutex
	sortMu   sync.Mutex // guards sorted, which readers fill under mu.RLock
	objects  map[Kind]map[memName]*memEntry
	sorted   map[Kind][]Object           // per kind, by namespace/name; nil when stale
	byNode   map[string]map[memName]bool // pods per node
	about    map[string]map[memName]bool // events per involved object uid
	rev      int64
	uids     uint64 // guarded by writeMu
	watchers map[*memWatcher]struct{}
	writes   atomic.Int64
}

// Commit is what a transaction changed, handed to MemoryStore.Persist.
type Commit struct {
	// Rev is the store revision after the commit.
	Rev int64
	// Objects holds each changed object by key; nil means deleted.
	Objects map[Key]Object
	// Raw holds the JSON of each object in Objects that is not deleted.
	Raw map[Key][]byte
}

type memName struct{ ns, name string }

// memEntry is a stored object and its JSON at commit, which serves ListRaw
// and lets Verify find objects changed in place afterwards.
type memEntry struct {
	obj Object
	raw []byte
}

type memWatcher struct {
	ch chan WatchEvent
}

var (
	_ Store     = (*MemoryStore)(nil)
	_ RawLister = (*MemoryStore)(nil)
)

// NewMemoryStore returns an empty store holding the default namespace.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{Now: time.Now}
}

func (s *MemoryStore) init() {
	s.once.Do(func() {
		s.setup()
		if err := s.ensureDefaultNamespace(); err != nil {
			panic(err) // an empty store cannot refuse its first object
		}
	})
}

func (s *MemoryStore) setup() {
	s.objects = map[Kind]map[memName]*memEntry{}
	for _, k := range Kinds {
		s.objects[k] = map[memName]*memEntry{}
	}
	s.sorted = map[Kind][]Object{}
	s.byNode = map[string]map[memName]bool{}
	s.about = map[string]map[memName]bool{}
	s.watchers = map[*memWatcher]struct{}{}
}

// ensureDefaultNamespace creates the default namespace, which always
// exists, unless it does.
func (s *MemoryStore) ensureDefaultNamespace() error {
	return s.update(context.Background(), func(tx Tx) error {
		if _, err := tx.Get(Key{Kind: KindNamespace, Name: DefaultNamespace}); ErrorCode(err) != ENOTFOUND {
			return err
		}
		ns := &Namespace{TypeMeta: TypeMeta{APIVersion: KindNamespace.APIVersion(), Kind: KindNamespace}}
		ns.Metadata.Name = DefaultNamespace
		ns.Status.Phase = "Active"
		return tx.Create(ns)
	})
}

// Load starts the store with objects read back from durable storage, each
// with its JSON as stored, at revision rev; it then creates the default
// namespace if it is missing (through Persist). It must be the first call.
func (s *MemoryStore) Load(rev int64, objs []Object, raws [][]byte) error {
	if len(objs) != len(raws) {
		return Errorf(EINTERNAL, "load: %d objects but %d encodings", len(objs), len(raws))
	}
	var err error = Errorf(EINTERNAL, "load: the store is already in use")
	s.once.Do(func() {
		s.setup()
		s.rev = rev
		for i, o := range objs {
			m := o.GetMeta()
			k := KeyOf(o)
			if _, ok := s.objects[k.Kind]; !ok {
				err = Errorf(EINVALID, "load: unknown kind %q", k.Kind)
				return
			}
			s.objects[k.Kind][memName{m.Namespace, m.Name}] = &memEntry{obj: o, raw: raws[i]}
			s.indexPod(o, true)
		}
		err = s.ensureDefaultNamespace()
	})
	return err
}

func (s *MemoryStore) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// Close ends all watches. It is idempotent; the store stays usable.
func (s *MemoryStore) Close() error {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		close(w.ch)
		delete(s.watchers, w)
	}
	return nil
}

// Writes returns how many write transactions were committed, counting the
// creation of the default namespace.
func (s *MemoryStore) Writes() int64 {
	s.init()
	return s.writes.Load()
}

// Revision returns the current store revision.
func (s *MemoryStore) Revision() int64 {
	s.init()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// Verify reports stored objects that were changed in place after they were
// committed. Get, List and watch events hand out shared objects that must
// be cloned before any change (see Store); a test calls Verify after the
// code under test ran to prove it kept to that.
func (s *MemoryStore) Verify() error {
	s.init()
	s.mu.RLock()
	defer s.mu.RUnlock()
	var bad []string
	for kind, m := range s.objects {
		for k, e := range m {
			b, err := json.Marshal(e.obj)
			if err != nil || !bytes.Equal(b, e.raw) {
				bad = append(bad, Key{Kind: kind, Namespace: k.ns, Name: k.name}.String())
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return Errorf(EINTERNAL, "stored objects changed in place (clone before changing): %s", strings.Join(bad, ", "))
}

// Get implements Store.
func (s *MemoryStore) Get(ctx context.Context, k Key) (Object, error) {
	s.init()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.get(k)
}

func (s *MemoryStore) get(k Key) (Object, error) {
	m, ok := s.objects[k.Kind]
	if !ok {
		return nil, Errorf(EINVALID, "unknown kind %q", k.Kind)
	}
	if e, ok := m[memName{k.Namespace, k.Name}]; ok {
		return e.obj, nil
	}
	return nil, Errorf(ENOTFOUND, "%s not found", k)
}

// List implements Store.
func (s *MemoryStore) List(ctx context.Context, kind Kind, ns string) ([]Object, error) {
	s.init()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.list(kind, ns, nil)
}

// ListRaw is List with each object's JSON (RawLister).
func (s *MemoryStore) ListRaw(ctx context.Context, kind Kind, ns string) ([]Object, [][]byte, error) {
	s.init()
	s.mu.RLock()
	defer s.mu.RUnlock()
	objs, err := s.list(kind, ns, nil)
	if err != nil {
		return nil, nil, err
	}
	raws := make([][]byte, len(objs))
	for i, o := range objs {
		m := o.GetMeta()
		raws[i] = s.objects[kind][memName{m.Namespace, m.Name}].raw
	}
	return objs, raws, nil
}

func sortByNamespaceName[T Object](l []T) {
	sort.Slice(l, func(i, j int) bool {
		a, b := l[i].GetMeta(), l[j].GetMeta()
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
}

// sortedList returns all committed objects of kind in order. Callers hold
// s.mu (a read lock will do); the list is rebuilt at most once per change.
func (s *MemoryStore) sortedList(kind Kind) []Object {
	s.sortMu.Lock()
	l := s.sorted[kind]
	s.sortMu.Unlock()
	if l != nil {
		return l
	}
	m := s.objects[kind]
	l = make([]Object, 0, len(m))
	for _, e := range m {
		l = append(l, e.obj)
	}
	sortByNamespaceName(l)
	s.sortMu.Lock()
	s.sorted[kind] = l
	s.sortMu.Unlock()
	return l
}

// list returns the objects of kind in ns ("" for all), seen through a
// transaction's overlay (nil value: deleted).
func (s *MemoryStore) list(kind Kind, ns string, overlay map[Key]Object) ([]Object, error) {
	if _, ok := s.objects[kind]; !ok {
		return nil, Errorf(EINVALID, "unknown kind %q", kind)
	}
	changed := false
	for k := range overlay {
		if k.Kind == kind {
			changed = true
			break
		}
	}
	base := s.sortedList(kind)
	out := make([]Object, 0, len(base))
	for _, o := range base {
		m := o.GetMeta()
		if ns != "" && m.Namespace != ns {
			continue
		}
		if changed {
			if _, ok := overlay[Key{Kind: kind, Namespace: m.Namespace, Name: m.Name}]; ok {
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
	sortByNamespaceName(out)
	return out, nil
}

// podsOnNode returns the pods bound to node, seen through overlay.
func (s *MemoryStore) podsOnNode(node string, overlay map[Key]Object) []*Pod {
	return indexed(s, KindPod, s.byNode[node], overlay, func(p *Pod) bool { return p.Spec.NodeName == node })
}

// eventsAbout returns the events about uid, seen through overlay.
func (s *MemoryStore) eventsAbout(uid string, overlay map[Key]Object) []*EventObj {
	return indexed(s, KindEvent, s.about[uid], overlay, func(e *EventObj) bool { return e.InvolvedObject.UID == uid })
}

// indexed returns the committed objects of kind named in an index entry,
// seen through overlay: those the transaction changed or deleted are left
// out, and its own objects of kind that match are added. Sorted by
// namespace and name.
func indexed[T Object](s *MemoryStore, kind Kind, names map[memName]bool, overlay map[Key]Object, match func(T) bool) []T {
	var out []T
	for k := range names {
		if _, ok := overlay[Key{Kind: kind, Namespace: k.ns, Name: k.name}]; ok {
			continue
		}
		out = append(out, s.objects[kind][k].obj.(T))
	}
	for k, o := range overlay {
		if t, ok := o.(T); ok && k.Kind == kind && match(t) {
			out = append(out, t)
		}
	}
	sortByNamespaceName(out)
	return out
}

// indexPod adds (or removes) a pod in the pods-by-node index, or an event
// in the events-by-object index.
func (s *MemoryStore) indexPod(obj Object, add bool) {
	var idx map[string]map[memName]bool
	var key string
	switch o := obj.(type) {
	case *Pod:
		idx, key = s.byNode, o.Spec.NodeName
	case *EventObj:
		idx, key = s.about, o.InvolvedObject.UID
	}
	if idx == nil || key == "" {
		return
	}
	m := obj.GetMeta()
	k := memName{m.Namespace, m.Name}
	if !add {
		delete(idx[key], k)
		if len(idx[key]) == 0 {
			delete(idx, key)
		}
		return
	}
	if idx[key] == nil {
		idx[key] = map[memName]bool{}
	}
	idx[key][k] = true
}

// Watch implements Store.
func (s *MemoryStore) Watch() (<-chan WatchEvent, func()) {
	s.init()
	n := s.WatchBuffer
	if n <= 0 {
		n = 4096
	}
	w := &memWatcher{ch: make(chan WatchEvent, n)}
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	return w.ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.watchers[w]; ok {
			delete(s.watchers, w)
			close(w.ch)
		}
	}
}

// Update implements Store.
func (s *MemoryStore) Update(ctx context.Context, fn func(Tx) error) error {
	s.init()
	return s.update(ctx, fn)
}

func (s *MemoryStore) update(ctx context.Context, fn func(Tx) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	// A transaction that does not commit gives back the uids it took, so
	// a rolled-back one (a dry run) leaves no trace at all.
	uids, committed := s.uids, false
	defer func() {
		if !committed {
			s.uids = uids
		}
	}()
	t := &memTx{s: s, now: s.now(), overlay: map[Key]Object{}}
	err := func() error {
		// Writers are serialised by writeMu, so the committed state cannot
		// change under fn; the read lock keeps Watch and Close out while
		// letting readers in.
		s.mu.RLock()
		defer s.mu.RUnlock()
		t.rev = s.rev
		defer func() { t.done = true }()
		return fn(t)
	}()
	if err != nil {
		return err
	}
	if len(t.events) == 0 {
		return nil // nothing changed: nothing to commit
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	raws := make(map[Key][]byte, len(t.overlay))
	for k, o := range t.overlay {
		if o == nil {
			continue
		}
		b, err := json.Marshal(o)
		if err != nil {
			return err
		}
		raws[k] = b
	}
	if s.Persist != nil {
		if err := s.Persist(ctx, Commit{Rev: t.rev, Objects: t.overlay, Raw: raws}); err != nil {
			return err
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for k, o := range t.overlay {
		nk := memName{k.Namespace, k.Name}
		if old, ok := s.objects[k.Kind][nk]; ok {
			s.indexPod(old.obj, false)
		}
		if o == nil {
			delete(s.objects[k.Kind], nk)
		} else {
			s.objects[k.Kind][nk] = &memEntry{obj: o, raw: raws[k]}
			s.indexPod(o, true)
		}
		s.sortMu.Lock()
		delete(s.sorted, k.Kind)
		s.sortMu.Unlock()
	}
	s.rev = t.rev
	committed = true
	for w := range s.watchers {
		for _, ev := range t.events {
			select {
			case w.ch <- ev:
				continue
			default: // too far behind: it must list again
				delete(s.watchers, w)
				close(w.ch)
			}
			break
		}
	}
	s.writes.Add(1)
	return nil
}

// memTx is a transaction: changes collect in an overlay over the committed
// objects and replace them at once when fn returns nil.
type memTx struct {
	s       *MemoryStore
	now     time.Time
	overlay map[Key]Object // nil value: deleted
	events  []WatchEvent
	rev     int64
	done    bool
}

func (t *memTx) check() {
	if t.done {
		panic("core: MemoryStore transaction used after its Update returned")
	}
}

func (t *memTx) Get(k Key) (Object, error) {
	t.check()
	if o, ok := t.overlay[k]; ok {
		if o == nil {
			return nil, Errorf(ENOTFOUND, "%s not found", k)
		}
		return o, nil
	}
	return t.s.get(k)
}

func (t *memTx) List(kind Kind, ns string) ([]Object, error) {
	t.check()
	return t.s.list(kind, ns, t.overlay)
}

func (t *memTx) PodsOnNode(node string) ([]*Pod, error) {
	t.check()
	return t.s.podsOnNode(node, t.overlay), nil
}

func (t *memTx) EventsAbout(uid string) ([]*EventObj, error) {
	t.check()
	return t.s.eventsAbout(uid, t.overlay), nil
}

func (t *memTx) Create(obj Object) error {
	k := KeyOf(obj)
	if _, err := t.Get(k); err == nil {
		return Errorf(ECONFLICT, "%s already exists", k)
	} else if ErrorCode(err) != ENOTFOUND {
		return err
	}
	m := obj.GetMeta()
	if t.s.NewUID != nil {
		m.UID = t.s.NewUID()
	} else {
		t.s.uids++
		m.UID = fmt.Sprintf("00000000-0000-4000-8000-%012x", t.s.uids)
	}
	m.Generation = 1
	m.CreationTimestamp = NewTime(t.now)
	t.write(Added, k, obj)
	return nil
}

func (t *memTx) Put(obj Object) error {
	k := KeyOf(obj)
	old, err := t.Get(k)
	if err != nil {
		return err
	}
	om, m := old.GetMeta(), obj.GetMeta()
	if m.ResourceVersion != "" && m.ResourceVersion != om.ResourceVersion {
		return Errorf(ECONFLICT, "%s was changed by someone else (resourceVersion %s, now %s); get it again and retry",
			k, m.ResourceVersion, om.ResourceVersion)
	}
	m.UID, m.CreationTimestamp, m.Generation = om.UID, om.CreationTimestamp, om.Generation
	if !JSONEqual(SpecOf(old), SpecOf(obj)) {
		m.Generation++
	}
	t.write(Modified, k, obj)
	return nil
}

func (t *memTx) Delete(k Key) error {
	old, err := t.Get(k)
	if err != nil {
		return err
	}
	t.overlay[k] = nil
	t.rev++
	t.events = append(t.events, WatchEvent{Type: Deleted, Object: old})
	return nil
}

func (t *memTx) write(typ EventType, k Key, obj Object) {
	t.rev++
	obj.GetMeta().ResourceVersion = strconv.FormatInt(t.rev, 10)
	t.overlay[k] = obj
	t.events = append(t.events, WatchEvent{Type: typ, Object: obj})
}
