package mqtt

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edge/internal/peer"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// guardedListener is the broker's TCP listener. Before a connection reaches
// mochi it must, within ConnectTimeout, finish its TLS handshake and send a
// whole CONNECT packet of at most maxConnect bytes: mochi itself allocates
// whatever length a fixed header claims before it authenticates anyone (a
// 5-byte header claiming 256 MiB was enough to grow it by that much), and
// waits forever on a client that says nothing.
type guardedListener struct {
	id, addr   string
	tls        *tls.Config
	timeout    time.Duration
	maxConnect int
	maxConns   int64 // every open connection, authenticated or not
	maxPending int64 // connections still in their handshake
	// maxPendingPerIP keeps one peer from taking every handshake slot
	// (loopback is exempt: it is the master's own host).
	maxPendingPerIP int
	log             *slog.Logger

	ln      net.Listener
	conns   atomic.Int64
	pending atomic.Int64
	closed  atomic.Bool
	refused atomic.Int64   // connections dropped by a guard
	hs      sync.WaitGroup // handshakes in progress; mochi owns the rest
	mu      sync.Mutex
	open    map[net.Conn]struct{} // still in their handshake, closed on Close
	byIP    map[string]int        // handshakes in progress per remote address
}

var _ listeners.Listener = (*guardedListener)(nil)

func (l *guardedListener) ID() string       { return l.id }
func (l *guardedListener) Protocol() string { return "tcp" }

func (l *guardedListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *guardedListener) Init(log *slog.Logger) error {
	var err error
	l.ln, err = net.Listen("tcp", l.addr)
	l.open = map[net.Conn]struct{}{}
	l.byIP = map[string]int{}
	return err
}

// Serve accepts connections until Close, handing each that passes the
// guards to establish.
func (l *guardedListener) Serve(establish listeners.EstablishFn) {
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if l.closed.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		if l.conns.Load() >= l.maxConns || l.pending.Load() >= l.maxPending || !l.admit(raw) {
			l.refused.Add(1)
			raw.Close()
			continue
		}
		l.conns.Add(1)
		l.pending.Add(1)
		l.hs.Add(1)
		go func() {
			defer l.conns.Add(-1)
			conn, err := l.handshake(raw)
			l.pending.Add(-1)
			l.release(raw)
			l.hs.Done()
			if err != nil {
				l.refused.Add(1)
				l.log.Debug("mqtt: dropped a connection before CONNECT", "remote", raw.RemoteAddr(), "err", err)
				raw.Close()
				return
			}
			if err := establish(l.id, conn); err != nil && !l.closed.Load() {
				l.log.Debug("mqtt: client connection ended", "remote", raw.RemoteAddr(), "err", err)
			}
		}()
	}
}

// admit counts a handshake against its peer's share, or refuses it.
func (l *guardedListener) admit(c net.Conn) bool {
	ip := peerIP(c)
	if ip == nil || ip.IsLoopback() || l.maxPendingPerIP <= 0 {
		return true
	}
	key := peer.Key(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byIP[key] >= l.maxPendingPerIP {
		return false
	}
	l.byIP[key]++
	return true
}

func (l *guardedListener) release(c net.Conn) {
	ip := peerIP(c)
	if ip == nil || ip.IsLoopback() || l.maxPendingPerIP <= 0 {
		return
	}
	key := peer.Key(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byIP[key]--; l.byIP[key] <= 0 {
		delete(l.byIP, key)
	}
}

func peerIP(c net.Conn) net.IP {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP
	}
	return nil
}

// handshake runs TLS and reads the CONNECT packet under one deadline and
// returns a connection that replays that packet to mochi.
func (l *guardedListener) handshake(raw net.Conn) (net.Conn, error) {
	l.mu.Lock()
	if l.closed.Load() {
		l.mu.Unlock()
		return nil, net.ErrClosed
	}
	l.open[raw] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.open, raw)
		l.mu.Unlock()
	}()
	raw.SetDeadline(time.Now().Add(l.timeout))
	conn := raw
	if l.tls != nil {
		tc := tls.Server(raw, l.tls)
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	br := bufio.NewReaderSize(conn, 512)
	packet, err := readConnect(br, l.maxConnect)
	if err != nil {
		return nil, err
	}
	// mochi sets its own deadline (1.5 keepalives) once it has parsed the
	// CONNECT; until then ours still holds.
	return &replayConn{Conn: conn, r: io.MultiReader(packet, br)}, nil
}

// readConnect reads one MQTT CONNECT packet (fixed header, remaining
// length, body) and returns its bytes. It refuses any other first packet
// and a CONNECT longer than max before reading its body.
func readConnect(r *bufio.Reader, max int) (io.Reader, error) {
	first, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	if first>>4 != 1 {
		return nil, fmt.Errorf("first packet is type %d, not CONNECT", first>>4)
	}
	buf := []byte{first}
	length, mult := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return nil, errors.New("malformed remaining length")
		}
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		buf = append(buf, b)
		length += int(b&0x7f) * mult
		if length > max {
			return nil, fmt.Errorf("CONNECT claims more than %d bytes", max)
		}
		if b&0x80 == 0 {
			break
		}
		mult *= 128
	}
	body := make([]byte, len(buf)+length)
	copy(body, buf)
	if _, err := io.ReadFull(r, body[len(buf):]); err != nil {
		return nil, err
	}
	return bytes.NewReader(body), nil
}

// replayConn is a connection whose first bytes come from r.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Close stops accepting, ends handshakes in progress and lets mochi close
// its clients.
func (l *guardedListener) Close(closeClients listeners.CloseFn) {
	if !l.closed.CompareAndSwap(false, true) {
		return
	}
	closeClients(l.id)
	if l.ln != nil {
		l.ln.Close()
	}
	l.mu.Lock()
	for c := range l.open {
		c.Close()
	}
	l.mu.Unlock()
	l.hs.Wait()
}
