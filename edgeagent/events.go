package edgeagent

import (
	"bytes"
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

// eventQueue keeps pod events on disk until the broker has them, so events
// that happen while the master is away survive agent restarts and are
// delivered in order.
//
// Recording an event costs no disk access: add keeps it in memory and a
// writer goroutine (Agent.writeEvents) flushes whatever has piled up into
// one crash-safe file, named by its first event's id. Twenty pods starting
// at once so cost a few fsyncs, not eighty on the start path of every pod
// (on an SD card each is milliseconds). Only flushed events are sent; an
// agent killed within the few milliseconds before a flush loses those.
type eventQueue struct {
	dir string
	max int // oldest files dropped beyond this many events

	mu    sync.Mutex
	next  uint64          // id of the next event
	buf   []core.PodEvent // recorded, not yet on disk
	files []eventFile     // on disk, oldest first
	acked uint64          // highest id the broker has
}

// eventFile is one flushed batch.
type eventFile struct {
	first, last uint64
	n           int
}

func openEventQueue(dir string, max int) (*eventQueue, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	q := &eventQueue{dir: dir, max: max, next: 1}
	if b, err := os.ReadFile(filepath.Join(dir, "seq")); err == nil {
		q.next, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		q.next = max64(q.next, 1)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		first, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		events, err := readEventFile(filepath.Join(dir, e.Name()))
		if err != nil || len(events) == 0 {
			os.Remove(filepath.Join(dir, e.Name())) // torn before a crash: nothing to send
			continue
		}
		last := events[len(events)-1].ID
		q.files = append(q.files, eventFile{first: first, last: last, n: len(events)})
		q.next = max64(q.next, last+1)
	}
	sort.Slice(q.files, func(i, j int) bool { return q.files[i].first < q.files[j].first })
	return q, nil
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

func (q *eventQueue) path(first uint64) string {
	return filepath.Join(q.dir, fmt.Sprintf("%016d.json", first))
}

// readEventFile reads a batch (a JSON array), or a single event as agents
// before batching wrote them.
func readEventFile(path string) ([]core.PodEvent, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var events []core.PodEvent
	if b = bytes.TrimSpace(b); len(b) > 0 && b[0] == '{' {
		var e core.PodEvent
		err = json.Unmarshal(b, &e)
		events = []core.PodEvent{e}
	} else {
		err = json.Unmarshal(b, &events)
	}
	return events, err
}

// add records an event and returns its id; flush puts it on disk. Ids keep
// increasing across restarts, so the master can tell a repeat from a new
// event.
func (q *eventQueue) add(e core.PodEvent) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	e.ID = q.next
	q.next++
	q.buf = append(q.buf, e)
	return e.ID
}

// flush writes the recorded events to disk, at most MaxEventsPerMessage a
// file, and drops the oldest files beyond max events (a node offline for
// very long keeps the newest). It reports whether anything was written.
func (q *eventQueue) flush() (bool, error) {
	q.mu.Lock()
	buf := q.buf
	q.buf = nil
	q.mu.Unlock()
	if len(buf) == 0 {
		return false, nil
	}
	for len(buf) > 0 {
		n := min(len(buf), core.MaxEventsPerMessage)
		batch := buf[:n]
		b, err := json.Marshal(batch)
		if err == nil {
			err = fsutil.WriteFileAtomic(q.path(batch[0].ID), b, 0o600)
		}
		if err != nil {
			q.mu.Lock()
			q.buf = append(buf, q.buf...) // try again at the next flush
			q.mu.Unlock()
			return false, err
		}
		buf = buf[n:]
		q.mu.Lock()
		q.files = append(q.files, eventFile{first: batch[0].ID, last: batch[n-1].ID, n: n})
		q.mu.Unlock()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	total := 0
	for _, f := range q.files {
		total += f.n
	}
	for len(q.files) > 1 && total-q.files[0].n >= q.max {
		total -= q.files[0].n
		os.Remove(q.path(q.files[0].first))
		q.files = q.files[1:]
	}
	return true, nil
}

// pending returns up to n flushed, undelivered events, oldest first.
func (q *eventQueue) pending(n int) []core.PodEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []core.PodEvent
	for _, f := range q.files {
		if len(out) >= n {
			break
		}
		events, err := readEventFile(q.path(f.first))
		if err != nil {
			continue
		}
		for _, e := range events {
			if e.ID > q.acked && len(out) < n {
				out = append(out, e)
			}
		}
	}
	return out
}

// ack records that the broker has events (a prefix of pending) and removes
// the files it no longer needs. Before the last file goes, the next id is
// kept in "seq", so ids still increase after a restart.
func (q *eventQueue) ack(events []core.PodEvent) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range events {
		q.acked = max64(q.acked, e.ID)
	}
	for len(q.files) > 0 && q.files[0].last <= q.acked {
		if len(q.files) == 1 {
			if err := fsutil.WriteFileAtomic(filepath.Join(q.dir, "seq"), []byte(strconv.FormatUint(q.next, 10)), 0o600); err != nil {
				return // keep the file: it still carries the sequence
			}
		}
		os.Remove(q.path(q.files[0].first))
		q.files = q.files[1:]
	}
}

// event records what happened to a pod; the writer puts it on disk and the
// sender delivers it when it can.
func (w *podWorker) event(container, typ, reason, format string, args ...any) {
	a := w.a
	if a.events == nil {
		return
	}
	e := core.PodEvent{Time: core.NewTime(a.Now()), Namespace: w.namespace, Pod: w.name, UID: w.uid,
		Container: container, Type: typ, Reason: reason, Message: fmt.Sprintf(format, args...)}
	a.events.add(e)
	select {
	case a.eventsRecorded <- struct{}{}:
	default:
	}
}

// writeEvents flushes recorded events to disk as they come, and once more
// when the agent stops.
func (a *Agent) writeEvents() {
	defer a.wg.Done()
	flush := func() {
		wrote, err := a.events.flush()
		if err != nil {
			a.Log.Error("writing pod events failed; retrying", "err", err)
			return
		}
		if wrote {
			select {
			case a.eventsReady <- struct{}{}:
			default:
			}
		}
	}
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-a.ctx.Done():
			flush()
			return
		case <-a.eventsRecorded:
		case <-retry.C:
		}
		flush()
		a.events.mu.Lock()
		left := len(a.events.buf)
		a.events.mu.Unlock()
		if left > 0 {
			retry.Reset(time.Second) // the disk refused them
		}
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
			batch := a.events.pending(core.MaxEventsPerMessage)
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
