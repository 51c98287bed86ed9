package clusterdns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/miekg/dns"
)

const (
	// DefaultTimeout is how long one upstream gets to answer.
	DefaultTimeout = 2 * time.Second
	// DefaultMaxForwards bounds the forwards in flight.
	DefaultMaxForwards = 64
	// forwardBudget bounds one query's forwarding across all upstreams:
	// glibc's stub gives up after 5 s, so a later answer is wasted.
	forwardBudget = 4 * time.Second
	// ednsSize is the UDP payload size we advertise (DNS flag day 2020).
	ednsSize = 1232
)

// Server answers cluster names from the last Update and forwards the rest.
type Server struct {
	// Addr is the listen address, host:port, for both UDP and TCP; port 0
	// picks a free one (see LocalAddr).
	Addr string
	// Upstreams are host:port of the resolvers for non-cluster names;
	// empty means the nameservers of ResolvConf. Our own address is
	// always dropped from them.
	Upstreams []string
	// ResolvConf is the node's resolv.conf path, default /etc/resolv.conf.
	ResolvConf string
	// FreeBind lets Start bind Addr before the address exists on any
	// interface (Linux IP_FREEBIND): the CNI bridge plugin only creates
	// the bridge and its gateway address for the node's first pod.
	FreeBind bool
	// Timeout is per upstream (DefaultTimeout); MaxForwards bounds the
	// forwards in flight (DefaultMaxForwards).
	Timeout     time.Duration
	MaxForwards int
	Log         *slog.Logger

	index atomic.Pointer[index]

	mu        sync.Mutex
	started   bool
	closed    bool
	local     string // bound address
	upstreams []string
	udp, tcp  *dns.Server
	ctx       context.Context // cancelled by Close, aborts forwards
	cancel    context.CancelFunc
	sem       chan struct{}
	wg        sync.WaitGroup

	health health
}

// Update replaces the served view with st. local(podUID), when not nil,
// reports the readiness of this node's own pods; when known it overrides
// NetEndpoint.Ready (offline, the agent knows best). local is only called
// here, so call Update again when a local pod's readiness changes. A nil st
// forgets the view: cluster names answer SERVFAIL until the next Update.
// Safe to call concurrently with queries.
func (s *Server) Update(st *core.NetworkState, local func(podUID string) (ready, known bool)) {
	if st == nil {
		s.index.Store(nil)
		return
	}
	s.index.Store(buildIndex(st, local))
}

// Start listens on Addr (UDP and TCP) and serves until Close. It returns
// once both listeners are up.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("cluster DNS on %s: closed", s.Addr)
	}
	if s.started {
		return fmt.Errorf("cluster DNS on %s: already started", s.Addr)
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	pc, l, err := listen(s.Addr, s.FreeBind)
	if err != nil {
		return fmt.Errorf("cluster DNS: %w", err)
	}
	s.local = pc.LocalAddr().String()
	s.upstreams = s.resolveUpstreams()
	max := s.MaxForwards
	if max <= 0 {
		max = DefaultMaxForwards
	}
	s.sem = make(chan struct{}, max)
	s.ctx, s.cancel = context.WithCancel(context.Background())

	h := dns.HandlerFunc(s.serveDNS)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: l, Handler: h}
	if err := s.serve(s.udp); err != nil {
		pc.Close()
		l.Close()
		s.cancel()
		return fmt.Errorf("cluster DNS on udp %s: %w", s.local, err)
	}
	if err := s.serve(s.tcp); err != nil {
		l.Close()
		s.udp.Shutdown()
		s.cancel()
		s.wg.Wait()
		return fmt.Errorf("cluster DNS on tcp %s: %w", s.local, err)
	}
	s.started = true
	s.Log.Info("cluster DNS listening", "addr", s.local, "upstreams", s.upstreams)
	return nil
}

// serve runs srv until shutdown and returns once it serves.
func (s *Server) serve(srv *dns.Server) error {
	up := make(chan struct{})
	done := make(chan error, 1)
	srv.NotifyStartedFunc = func() { close(up) }
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := srv.ActivateAndServe()
		if err != nil && s.ctx.Err() == nil {
			s.Log.Error("cluster DNS stopped", "addr", s.local, "err", err)
		}
		done <- err
	}()
	select {
	case <-up:
		return nil
	case err := <-done:
		return err
	}
}

// LocalAddr returns the address Start bound, host:port.
func (s *Server) LocalAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.local
}

// Close stops listening, aborts forwards in flight and waits for every
// query to finish. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if !s.started {
		return nil
	}
	s.cancel()
	err := errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("cluster DNS on %s: close: %w", s.local, err)
	}
	return nil
}

// listen binds UDP and TCP on the same address. With port 0 the TCP port
// follows the UDP one, retrying if another socket holds it.
func listen(addr string, freebind bool) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	lc := net.ListenConfig{Control: freebindControl(freebind)}
	for try := 0; ; try++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return nil, nil, err
		}
		taddr := addr
		if port == "0" {
			taddr = net.JoinHostPort(host, strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port))
		}
		l, err := lc.Listen(context.Background(), "tcp", taddr)
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if port != "0" || try == 10 {
			return nil, nil, err
		}
	}
}

// resolveUpstreams returns Upstreams, or the node's nameservers, with a
// port each and without our own address.
func (s *Server) resolveUpstreams() []string {
	ups := s.Upstreams
	if len(ups) == 0 {
		path := s.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		var err error
		if ups, _, err = HostResolvConf(path); err != nil {
			s.Log.Warn("cluster DNS: no upstream resolvers, only cluster names will resolve", "err", err)
		}
	}
	var out []string
	for _, u := range ups {
		if _, _, err := net.SplitHostPort(u); err != nil {
			u = net.JoinHostPort(u, "53")
		}
		if isSelf(u, s.local) {
			s.Log.Warn("cluster DNS: dropping upstream that is our own address", "upstream", u)
			continue
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		s.Log.Warn("cluster DNS: no upstream resolvers, only cluster names will resolve")
	}
	return out
}

// isSelf reports whether upstream u is the address we listen on, which
// would loop: the same address, or when we listen on all addresses, any
// address of this host on our port.
func isSelf(u, self string) bool {
	up, err1 := netip.ParseAddrPort(u)
	me, err2 := netip.ParseAddrPort(self)
	if err1 != nil || err2 != nil {
		return u == self
	}
	ua, ma := up.Addr().Unmap().WithZone(""), me.Addr().Unmap().WithZone("")
	if up.Port() != me.Port() {
		return false
	}
	if ua == ma {
		return true
	}
	if !ma.IsUnspecified() {
		return false
	}
	if ua.IsLoopback() || ua.IsUnspecified() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap().WithZone("") == ua {
			return true
		}
	}
	return false
}

// serveDNS answers one query.
func (s *Server) serveDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if r.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		write(w, r, m)
		return
	}
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		write(w, r, m)
		return
	}
	q := r.Question[0]
	if !s.index.Load().answer(m, q, strings.ToLower(q.Name)) {
		s.forward(w, r)
		return
	}
	if r.IsEdns0() != nil {
		m.SetEdns0(ednsSize, false)
	}
	write(w, r, m)
}

// forward relays r to the upstreams in order: UDP, then TCP when the UDP
// answer was truncated; the next upstream on an error, SERVFAIL or
// REFUSED. Beyond MaxForwards in flight it answers SERVFAIL at once.
func (s *Server) forward(w dns.ResponseWriter, r *dns.Msg) {
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		fail(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, forwardBudget)
	defer cancel()
	var last *dns.Msg
	var lastErr error
	for _, u := range s.upstreams {
		resp, err := s.exchange(ctx, "udp", r, u)
		if err == nil && resp.Truncated {
			resp, err = s.exchange(ctx, "tcp", r, u)
		}
		if err != nil {
			lastErr = fmt.Errorf("upstream %s: %w", u, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
			last, lastErr = resp, fmt.Errorf("upstream %s: %s", u, dns.RcodeToString[resp.Rcode])
			continue
		}
		s.health.ok(s.Log)
		write(w, r, resp)
		return
	}
	if lastErr == nil {
		lastErr = errors.New("no upstream resolvers")
	}
	if s.ctx.Err() == nil { // not shutting down
		s.health.failed(s.Log, r.Question[0].Name, lastErr)
	}
	if last != nil {
		write(w, r, last)
		return
	}
	fail(w, r)
}

// exchange sends r to addr over network. Closing the connection when ctx
// ends aborts a read in flight, which the dns client's deadlines alone
// would not do on Close.
func (s *Server) exchange(ctx context.Context, network string, r *dns.Msg, addr string) (*dns.Msg, error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c := &dns.Client{Net: network, Timeout: timeout}
	co, err := c.DialContext(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	stop := context.AfterFunc(ctx, func() { co.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, r, co)
	return resp, err
}

// write sends m, truncated to what a UDP client accepts.
func write(w dns.ResponseWriter, r, m *dns.Msg) {
	if w.LocalAddr().Network() == "udp" {
		size := dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	m.Id = r.Id
	w.WriteMsg(m)
}

func fail(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeServerFailure)
	m.RecursionAvailable = true
	write(w, r, m)
}

// health logs failing upstreams at most once a minute, and once when they
// answer again.
type health struct {
	mu         sync.Mutex
	down       bool
	lastLog    time.Time
	suppressed int
}

func (h *health) failed(log *slog.Logger, name string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down = true
	if time.Since(h.lastLog) < time.Minute {
		h.suppressed++
		return
	}
	log.Warn("cluster DNS: forwarding failed", "name", name, "err", err, "suppressed", h.suppressed)
	h.lastLog, h.suppressed = time.Now(), 0
}

func (h *health) ok(log *slog.Logger) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		h.down = false
		log.Info("cluster DNS: upstream resolvers recovered")
	}
}
