package edgeagent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/fsutil"
)

// eventQueue keeps pod events on disk until the broker has them: one file
// per event, written crash-safely and named by a sequence number, so events
// that happen while the master is away survive agent restarts and are
// delivered in order. Events are rare (container starts and exits), so a
// few fsyncs each cost little even on an SD card.
type eventQueue struct {
	dir string
	max int // oldest dropped beyond this

	mu   sync.Mutex
	next uint64
}

func openEventQueue(dir string, max int) (*eventQueue, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	q := &eventQueue{dir: dir, max: max, next: 1}
	if b, err := os.ReadFile(filepath.Join(dir, "seq")); err == nil {
		q.next, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	for _, id := range q.ids() {
		q.next = max64(q.next, id+1)
	}
	return q, nil
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

func (q *eventQueue) path(id uint64) string {
	return filepath.Join(q.dir, fmt.Sprintf("%016d.json", id))
}

// ids returns the queued event ids in order.
func (q *eventQueue) ids() []uint64 {
	entries, _ := os.ReadDir(q.dir)
	var ids []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		if id, err := strconv.ParseUint(name, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// add queues an event and returns its id. The sequence survives restarts
// (its own file), so the master can tell a repeat from a new event.
func (q *eventQueue) add(e core.PodEvent) (uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e.ID = q.next
	q.next++
	if err := fsutil.WriteFileAtomic(filepath.Join(q.dir, "seq"), []byte(strconv.FormatUint(q.next, 10)), 0o600); err != nil {
		return 0, err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	if err := fsutil.WriteFileAtomic(q.path(e.ID), b, 0o600); err != nil {
		return 0, err
	}
	if ids := q.ids(); len(ids) > q.max {
		for _, id := range ids[:len(ids)-q.max] {
			os.Remove(q.path(id)) // a node offline for very long keeps the newest
		}
	}
	return e.ID, nil
}

// pending returns up to n queued events, oldest first.
func (q *eventQueue) pending(n int) []core.PodEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []core.PodEvent
	for _, id := range q.ids() {
		if len(out) == n {
			break
		}
		b, err := os.ReadFile(q.path(id))
		if err != nil {
			continue
		}
		var e core.PodEvent
		if json.Unmarshal(b, &e) != nil {
			os.Remove(q.path(id)) // a torn file from before a crash: nothing to send
			continue
		}
		out = append(out, e)
	}
	return out
}

// ack removes delivered events.
func (q *eventQueue) ack(events []core.PodEvent) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range events {
		os.Remove(q.path(e.ID))
	}
}

// event records what happened to a pod; the sender delivers it when it can.
func (w *podWorker) event(container, typ, reason, format string, args ...any) {
	a := w.a
	if a.events == nil {
		return
	}
	e := core.PodEvent{Time: core.NewTime(a.Now()), Namespace: w.namespace, Pod: w.name, UID: w.uid,
		Container: container, Type: typ, Reason: reason, Message: fmt.Sprintf(format, args...)}
	if _, err := a.events.add(e); err != nil {
		a.Log.Error("recording an event failed", "pod", w.namespace+"/"+w.name, "reason", reason, "err", err)
		return
	}
	select {
	case a.eventsReady <- struct{}{}:
	default:
	}
}

// sendEvents delivers queued events in order whenever connected.
func (a *Agent) sendEvents() {
	defer a.wg.Done()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.eventsReady:
		case <-retry.C:
		}
		for a.Reporter != nil {
			batch := a.events.pending(100)
			if len(batch) == 0 {
				break
			}
			if err := a.Reporter.Events(batch); err != nil {
				retry.Reset(5 * time.Second) // and at the next (re)connection
				break
			}
			a.events.ack(batch)
		}
	}
}
