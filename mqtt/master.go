package mqtt

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/edgeorch/edge/core"
)

// Master is the master's side of the protocol. With Broker set it talks
// inline to the embedded broker; otherwise it connects to URL.
type Master struct {
	Broker *Broker
	URL    string
	TLS    *tls.Config // for an external ssl:// broker
	Sink   core.ReportSink
	Log    *slog.Logger
	// LogTimeout is how long to wait for an agent to answer a log request.
	LogTimeout time.Duration
	// LogQueue is how many chunks (32 KiB each) of a log stream may wait
	// for a slow reader before the stream is ended (default 64).
	LogQueue int

	conn    conn
	epoch   string
	mu      sync.Mutex
	streams map[string]*stream
	pending map[string]*pendingNode
	order   []string
	wake    chan struct{}
	closing bool // set by Close, under mu: nothing may join wg after it
	limit   logLimiter
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// pendingNode coalesces what arrived for a node while the worker was busy:
// reports are snapshots, so only the latest matters.
type pendingNode struct {
	online *bool
	report []byte          // the latest report, undecoded
	events []core.PodEvent // not coalesced: each one counts, in order
}

var _ core.Bus = (*Master)(nil)

// Open connects and subscribes.
func (m *Master) Open() error {
	if m.Log == nil {
		m.Log = slog.Default()
	}
	if m.LogTimeout == 0 {
		m.LogTimeout = 10 * time.Second
	}
	if m.LogQueue == 0 {
		m.LogQueue = 64
	}
	m.streams = map[string]*stream{}
	m.pending = map[string]*pendingNode{}
	m.wake = make(chan struct{}, 1)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.epoch = randomID()
	if m.Broker != nil {
		m.conn = &inlineConn{s: m.Broker.Server()}
	} else {
		pc, err := dialExternal(m.URL, m.TLS)
		if err != nil {
			return err
		}
		m.conn = pc
	}
	for filter, fn := range map[string]func(string, []byte){
		topicPrefix + "+/report":  m.onReport,
		topicPrefix + "+/online":  m.onOnline,
		topicPrefix + "+/events":  m.onEvents,
		topicPrefix + "+/reply/+": m.onReply,
	} {
		if err := m.conn.subscribe(filter, fn); err != nil {
			m.conn.close()
			return err
		}
	}
	m.wg.Add(1)
	go m.work()
	// Ask every agent for a fresh report: this master may have missed some.
	return m.conn.publish(topicEpoch, []byte(m.epoch), true)
}

// Close stops the worker and disconnects; idempotent.
func (m *Master) Close() error {
	if m.cancel == nil {
		return nil
	}
	m.cancel()
	m.mu.Lock()
	m.closing = true // no goroutine starts from here on
	for id, s := range m.streams {
		s.pw.CloseWithError(io.ErrUnexpectedEOF)
		s.stop()
		delete(m.streams, id)
	}
	m.mu.Unlock()
	m.wg.Wait()
	m.conn.close()
	m.cancel = nil
	return nil
}

// spawn runs f in a goroutine Close waits for, unless Close has begun.
func (m *Master) spawn(f func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
	return true
}

// Stats returns bytes received and sent by the embedded broker; -1 when an
// external broker carries the traffic.
func (m *Master) Stats() (in, out int64) { return m.conn.stats() }

// PublishDesired implements core.Bus.
func (m *Master) PublishDesired(ctx context.Context, ds *core.DesiredState) error {
	b, err := json.Marshal(ds)
	if err != nil {
		return err
	}
	if err := m.conn.publish(topicDesired(ds.Node), b, true); err != nil {
		return core.Errorf(core.EUNAVAILABLE, "publish desired state of node %q: %v", ds.Node, err)
	}
	return nil
}

// PublishNetwork implements core.Bus.
func (m *Master) PublishNetwork(ctx context.Context, ns *core.NetworkState) error {
	b, err := json.Marshal(ns)
	if err != nil {
		return err
	}
	if err := m.conn.publish(topicNetwork, b, true); err != nil {
		return core.Errorf(core.EUNAVAILABLE, "publish the network state: %v", err)
	}
	return nil
}

func (m *Master) enqueue(node string, f func(p *pendingNode)) {
	m.mu.Lock()
	p := m.pending[node]
	if p == nil {
		p = &pendingNode{}
		m.pending[node] = p
		m.order = append(m.order, node)
	}
	f(p)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Master) onReport(topic string, payload []byte) {
	node, _, _ := parseNodeTopic(topic)
	// Its shape is checked at once (a scan, no allocation), so nothing too
	// large is kept; it is decoded by the worker, and of a flood of reports
	// from one node only the latest ever is (they are snapshots).
	if err := checkShape("report", payload, maxReportBytes, maxReportValues); err != nil {
		m.limit.warn(m.Log, node, "mqtt: refused a report", "node", node, "err", core.ErrorMessage(err))
		return
	}
	raw := append([]byte(nil), payload...)
	m.enqueue(node, func(p *pendingNode) { p.report = raw })
}

// reportInterval is the least time between two stores of one node's report.
const reportInterval = 50 * time.Millisecond

// maxPendingEvents bounds the events waiting for the store per node.
const maxPendingEvents = 10 * core.MaxEventsPerMessage

func (m *Master) onEvents(topic string, payload []byte) {
	node, _, _ := parseNodeTopic(topic)
	events, err := decodeEvents(payload)
	if err != nil {
		m.limit.warn(m.Log, node, "mqtt: refused events", "node", node, "err", core.ErrorMessage(err))
		return
	}
	m.enqueue(node, func(p *pendingNode) { p.events = m.appendEvents(node, p.events, events) })
}

// appendEvents queues events behind queued ones, dropping the oldest beyond
// maxPendingEvents (only while the store keeps failing, or a node floods).
func (m *Master) appendEvents(node string, queued, events []core.PodEvent) []core.PodEvent {
	queued = append(queued, events...)
	if n := len(queued) - maxPendingEvents; n > 0 {
		m.limit.warn(m.Log, node, "mqtt: dropping events the store could not take", "node", node, "dropped", n)
		queued = append([]core.PodEvent(nil), queued[n:]...)
	}
	return queued
}

func (m *Master) onOnline(topic string, payload []byte) {
	node, _, _ := parseNodeTopic(topic)
	online := string(payload) == Online
	if len(payload) == 0 {
		return // a cleared retained message
	}
	m.enqueue(node, func(p *pendingNode) { p.online = &online })
}

// work hands what agents sent to the sink, one node at a time, in arrival order.
func (m *Master) work() {
	defer m.wg.Done()
	failures := 0
	// A node's reports are stored at most every reportInterval: they are
	// snapshots, so one held back is replaced by the next, and a node that
	// floods them costs the SD card at most that many writes.
	due := map[string]time.Time{}
	held := map[string][]byte{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.wake:
		case <-timer.C:
		}
		now := time.Now()
		for node, rep := range held {
			if !now.Before(due[node]) {
				m.enqueue(node, func(q *pendingNode) {
					if q.report == nil {
						q.report = rep
					}
				})
				delete(held, node)
			}
		}
		for {
			m.mu.Lock()
			if len(m.order) == 0 {
				m.mu.Unlock()
				break
			}
			node := m.order[0]
			m.order = m.order[1:]
			p := m.pending[node]
			delete(m.pending, node)
			m.mu.Unlock()
			// Liveness first: a report stored while its node still looks
			// lost would have its pods marked not ready right after.
			var err error
			if p.online != nil {
				err = m.Sink.NodeOnline(m.ctx, node, *p.online)
			}
			if len(p.events) > 0 && err == nil {
				err = m.Sink.NodeEvents(m.ctx, node, p.events)
			}
			if p.report != nil && time.Now().Before(due[node]) {
				held[node], p.report = p.report, nil
			}
			if p.report != nil && err == nil {
				due[node] = time.Now().Add(reportInterval)
				// The topic, which the ACL guards, says who reports.
				if rep, derr := decodeReport(node, p.report); derr != nil {
					m.limit.warn(m.Log, node, "mqtt: refused a report", "node", node, "err", core.ErrorMessage(derr))
				} else {
					err = m.Sink.NodeReport(m.ctx, rep)
				}
			}
			if err != nil && m.ctx.Err() == nil {
				failures++
				if failures == 1 || failures%100 == 0 {
					m.Log.Error("storing agent report failed", "node", node, "err", err, "failures", failures)
				}
				// Keep it for another try unless something newer arrived.
				m.enqueue(node, func(q *pendingNode) {
					q.events = m.appendEvents(node, p.events, q.events)
					if q.report == nil {
						q.report = p.report
					}
					if q.online == nil {
						q.online = p.online
					}
				})
				select {
				case <-time.After(200 * time.Millisecond):
				case <-m.ctx.Done():
					return
				}
				break
			} else if err == nil && failures > 0 {
				m.Log.Info("storing agent reports recovered", "after", failures)
				failures = 0
			}
		}
		var next time.Time
		for node := range held {
			if next.IsZero() || due[node].Before(next) {
				next = due[node]
			}
		}
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), time.Millisecond))
		}
	}
}

// stream is one log request's answer, reassembled in sequence order. The
// broker calls accept from the agent's connection: it must never block, or
// the whole connection stalls (keepalives time out, the node flaps, its pods
// get replaced). Data goes through a bounded queue to a copying goroutine;
// a reader too slow for it ends the stream instead.
type stream struct {
	node    string
	pw      *io.PipeWriter
	next    int
	early   map[int]chunk
	started chan struct{}
	once    sync.Once
	err     *core.Error
	queue   chan chunk
	ended   bool
	failed  chan struct{} // closed when the reader fell too far behind
	quit    chan struct{}
	stopped sync.Once
	// mu serialises accept: a node's replies come from one broker goroutine,
	// but a session taken over on reconnect may overlap another; and err is
	// read by Logs.
	mu sync.Mutex
}

// stop ends the copying goroutine.
func (s *stream) stop() { s.stopped.Do(func() { close(s.quit) }) }

// maxEarly bounds the chunks kept while an earlier one is missing.
const maxEarly = 256

func (m *Master) onReply(topic string, payload []byte) {
	node, rest, _ := parseNodeTopic(topic)
	id := rest[len("reply/"):]
	c, err := decodeChunk(payload)
	if err != nil {
		m.limit.warn(m.Log, node, "mqtt: refused a log reply", "node", node, "err", err)
		return
	}
	m.mu.Lock()
	s := m.streams[id]
	m.mu.Unlock()
	if s == nil || s.node != node {
		return
	}
	if !s.accept(*c) {
		// Tell the agent to stop sending, off the broker's goroutine.
		m.spawn(func() { m.cancelStream(node, id) })
	}
}

// accept takes one chunk; false means the stream failed (its reader is too
// slow, or the agent sent too far out of order) and the agent should stop.
func (s *stream) accept(c chunk) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.Seq < s.next || s.ended {
		return true // a QoS 1 duplicate, or after the end (or the failure) was handled
	}
	if len(s.early) >= maxEarly {
		s.fail()
		return false
	}
	s.early[c.Seq] = c
	for {
		c, ok := s.early[s.next]
		if !ok {
			return true
		}
		delete(s.early, s.next)
		s.next++
		if c.Error != "" {
			s.err = &core.Error{Code: c.Code, Message: c.Error}
			if s.err.Code == "" {
				s.err.Code = core.EINTERNAL
			}
			c.EOF = true
		}
		s.once.Do(func() { close(s.started) })
		select {
		case s.queue <- c:
		default:
			s.fail()
			return false
		}
		if c.EOF {
			s.ended = true
			close(s.queue)
			return true
		}
	}
}

func (s *stream) fail() {
	s.ended = true
	close(s.failed)
	s.once.Do(func() { close(s.started) })
}

func (s *stream) copy() {
	for {
		var c chunk
		var ok bool
		select {
		case c, ok = <-s.queue:
			if !ok {
				return
			}
		case <-s.failed:
			s.pw.CloseWithError(core.Errorf(core.EUNAVAILABLE, "log stream ended: the reader was too slow to keep up"))
			return
		case <-s.quit:
			return
		}
		if c.Error != "" {
			s.pw.CloseWithError(&core.Error{Code: core.EUNAVAILABLE, Message: c.Error})
			return
		}
		if len(c.Data) > 0 {
			if _, err := s.pw.Write(c.Data); err != nil {
				return
			}
		}
		if c.EOF {
			s.pw.Close()
			return
		}
	}
}

// Logs implements core.Bus.
func (m *Master) Logs(ctx context.Context, node string, req core.LogRequest) (io.ReadCloser, error) {
	id := randomID()
	pr, pw := io.Pipe()
	s := &stream{node: node, pw: pw, early: map[int]chunk{}, started: make(chan struct{}), queue: make(chan chunk, m.LogQueue),
		failed: make(chan struct{}), quit: make(chan struct{})}
	if !m.spawn(s.copy) {
		return nil, core.Errorf(core.EUNAVAILABLE, "the master is shutting down")
	}
	m.mu.Lock()
	m.streams[id] = s
	m.mu.Unlock()
	done := func() {
		m.mu.Lock()
		delete(m.streams, id)
		m.mu.Unlock()
		s.stop()
		pw.CloseWithError(io.EOF)
	}
	b, _ := json.Marshal(command{Type: "logs", ID: id, Logs: req})
	if err := m.conn.publish(topicCmd(node), b, false); err != nil {
		done()
		return nil, core.Errorf(core.EUNAVAILABLE, "ask node %q for logs: %v", node, err)
	}
	select {
	case <-s.started:
		s.mu.Lock()
		serr := s.err
		s.mu.Unlock()
		if serr != nil {
			done()
			return nil, serr
		}
		select {
		case <-s.failed:
			done()
			return nil, core.Errorf(core.EUNAVAILABLE, "node %q sent its log out of order", node)
		default:
		}
	case <-time.After(m.LogTimeout):
		done()
		m.cancelStream(node, id)
		return nil, core.Errorf(core.EUNAVAILABLE, "node %q did not answer the log request within %s: is its agent connected?", node, m.LogTimeout)
	case <-ctx.Done():
		done()
		m.cancelStream(node, id)
		return nil, ctx.Err()
	}
	rc := &logReader{PipeReader: pr, close: func() { done(); m.cancelStream(node, id) }}
	if req.Follow {
		// Agents end a follow that is not pinged, so none outlives the master.
		m.spawn(func() {
			t := time.NewTicker(followPing)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					b, _ := json.Marshal(command{Type: "ping", ID: id})
					m.conn.publish(topicCmd(node), b, false)
				case <-rc.closed():
					return
				case <-m.ctx.Done():
					return
				}
			}
		})
	}
	return rc, nil
}

// followPing is how often the master confirms it still reads a follow.
const followPing = 10 * time.Second

func (m *Master) cancelStream(node, id string) {
	b, _ := json.Marshal(command{Type: "cancel", ID: id})
	m.conn.publish(topicCmd(node), b, false)
}

type logReader struct {
	*io.PipeReader
	once  sync.Once
	close func()
	done  chan struct{}
	mu    sync.Mutex
}

func (r *logReader) closed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		r.done = make(chan struct{})
	}
	return r.done
}

func (r *logReader) Close() error {
	r.once.Do(func() {
		r.close()
		r.PipeReader.Close()
		r.closed()
		r.mu.Lock()
		close(r.done)
		r.mu.Unlock()
	})
	return nil
}

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
