package clusterdns

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/miekg/dns"
)

// testState: ClusterIP service web, headless db with two ready endpoints,
// one not ready, and two local pods whose readiness local() overrides.
func testState(webIP string) *core.NetworkState {
	return &core.NetworkState{ClusterDomain: "cluster.local", ServiceCIDR: "10.43.0.0/16",
		Services: []core.NetService{
			{Namespace: "default", Name: "web", Type: core.ServiceClusterIP, ClusterIP: webIP,
				Ports: []core.ServicePort{{Name: "http", Protocol: "TCP", Port: 80}}},
			{Namespace: "default", Name: "db", Type: core.ServiceClusterIP, ClusterIP: core.ClusterIPNone,
				Ports: []core.ServicePort{{Name: "pg", Port: 5432}},
				Endpoints: []core.NetEndpoint{
					{IP: "10.42.1.5", Hostname: "db-0", PodUID: "u0", Ports: []int32{5432}, Ready: true},
					{IP: "10.42.2.6", Hostname: "db-1", PodUID: "u1", Ports: []int32{5432}, Ready: true},
					{IP: "10.42.2.7", Hostname: "db-2", PodUID: "u2", Ports: []int32{5432}},
					{IP: "10.42.3.8", PodUID: "local-ready", Ports: []int32{5432}},
					{IP: "10.42.3.9", Hostname: "db-4", PodUID: "local-notready", Ports: []int32{5432}, Ready: true},
				}},
		}}
}

func testLocal(uid string) (ready, known bool) {
	switch uid {
	case "local-ready":
		return true, true
	case "local-notready":
		return false, true
	}
	return false, false
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// deadUpstream returns a loopback address nothing listens on.
func deadUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// mustStart starts s on a free loopback port and closes it with the test.
// Its upstreams default to a dead loopback address: no test query leaves
// the host.
func mustStart(t testing.TB, s *Server) *Server {
	t.Helper()
	s.Addr = "127.0.0.1:0"
	if s.Upstreams == nil {
		s.Upstreams = []string{"127.0.0.1:9"}
	}
	if s.Log == nil {
		s.Log = quiet
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func query(t testing.TB, network, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

// values renders the answer section's data, sorted.
func values(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.SRV:
			out = append(out, rr.Target+":"+strconv.Itoa(int(rr.Port)))
		case *dns.PTR:
			out = append(out, rr.Ptr)
		default:
			out = append(out, rr.String())
		}
	}
	slices.Sort(out)
	return out
}

func TestServer_ClusterNames(t *testing.T) {
	s := mustStart(t, &Server{})
	s.Update(testState("10.43.0.10"), testLocal)

	const (
		noerror  = dns.RcodeSuccess
		nxdomain = dns.RcodeNameError
	)
	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
		soa    bool // SOA in the authority section
	}{
		{"web.default.svc.cluster.local.", dns.TypeA, noerror, []string{"10.43.0.10"}, false},
		{"WEB.Default.SVC.Cluster.LOCAL.", dns.TypeA, noerror, []string{"10.43.0.10"}, false},
		{"web.default.svc.cluster.local.", dns.TypeAAAA, noerror, nil, true},
		{"db.default.svc.cluster.local.", dns.TypeA, noerror, []string{"10.42.1.5", "10.42.2.6", "10.42.3.8"}, false},
		{"db-0.db.default.svc.cluster.local.", dns.TypeA, noerror, []string{"10.42.1.5"}, false},
		{"10-42-3-8.db.default.svc.cluster.local.", dns.TypeA, noerror, []string{"10.42.3.8"}, false},
		{"db-2.db.default.svc.cluster.local.", dns.TypeA, nxdomain, nil, true}, // not ready
		{"db-4.db.default.svc.cluster.local.", dns.TypeA, nxdomain, nil, true}, // local says not ready
		{"_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV, noerror, []string{"web.default.svc.cluster.local.:80"}, false},
		{"_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV, noerror,
			[]string{"10-42-3-8.db.default.svc.cluster.local.:5432", "db-0.db.default.svc.cluster.local.:5432", "db-1.db.default.svc.cluster.local.:5432"}, false},
		{"10.0.43.10.in-addr.arpa.", dns.TypePTR, noerror, []string{"web.default.svc.cluster.local."}, false},
		{"99.0.43.10.in-addr.arpa.", dns.TypePTR, nxdomain, nil, true},
		{"default.svc.cluster.local.", dns.TypeA, noerror, nil, true}, // empty non-terminal
		{"nope.default.svc.cluster.local.", dns.TypeA, nxdomain, nil, true},
		{"web.default.svc.default.svc.cluster.local.", dns.TypeA, nxdomain, nil, true}, // search expansion
		{"web.default.cluster.local.", dns.TypeA, nxdomain, nil, true},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name+"/"+dns.TypeToString[tt.qtype], func(t *testing.T) {
				r := query(t, network, s.LocalAddr(), tt.name, tt.qtype)
				if r.Rcode != tt.rcode || !r.Authoritative {
					t.Fatalf("rcode %s authoritative %v, want %s authoritative", dns.RcodeToString[r.Rcode], r.Authoritative, dns.RcodeToString[tt.rcode])
				}
				if got := values(r.Answer); !slices.Equal(got, tt.answer) {
					t.Fatalf("answer %v, want %v", got, tt.answer)
				}
				for _, rr := range r.Answer {
					if rr.Header().Ttl != ttl || rr.Header().Name != tt.name {
						t.Fatalf("record %v: want TTL %d and the asked name", rr, ttl)
					}
				}
				if gotSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA; gotSOA != tt.soa {
					t.Fatalf("authority %v, want SOA: %v", r.Ns, tt.soa)
				}
			})
		}
	}
}

func TestServer_BeforeUpdate(t *testing.T) {
	s := mustStart(t, &Server{})
	// No state yet: do not let clients cache a negative answer.
	if r := query(t, "udp", s.LocalAddr(), "web.default.svc.cluster.local.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s before any Update, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	s.Update(testState("10.43.0.10"), nil)
	if r := query(t, "udp", s.LocalAddr(), "web.default.svc.cluster.local.", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("after Update: %v", r)
	}
}

// TestServer_ManyEndpoints: an answer too large for a plain UDP reply is
// truncated so the client retries over TCP, where it is whole.
func TestServer_ManyEndpoints(t *testing.T) {
	st := &core.NetworkState{Services: []core.NetService{{Namespace: "default", Name: "big", ClusterIP: core.ClusterIPNone}}}
	for i := range 100 {
		st.Services[0].Endpoints = append(st.Services[0].Endpoints,
			core.NetEndpoint{IP: "10.42.0." + strconv.Itoa(i+1), Ready: true})
	}
	s := mustStart(t, &Server{})
	s.Update(st, nil)
	r := query(t, "udp", s.LocalAddr(), "big.default.svc.cluster.local.", dns.TypeA)
	if !r.Truncated || len(r.Answer) >= 100 {
		t.Fatalf("udp: truncated %v with %d answers, want truncated", r.Truncated, len(r.Answer))
	}
	if r := query(t, "tcp", s.LocalAddr(), "big.default.svc.cluster.local.", dns.TypeA); r.Truncated || len(r.Answer) != 100 {
		t.Fatalf("tcp: truncated %v with %d answers, want 100", r.Truncated, len(r.Answer))
	}
}

// startUpstream runs a miekg/dns server on loopback (UDP and TCP) as the
// node's resolver: example.org A 192.0.2.1, and big.example.org
// truncated over UDP and whole over TCP.
func startUpstream(t *testing.T) string {
	t.Helper()
	pc, l, err := listen("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		switch q := r.Question[0]; {
		case q.Name == "example.org." && q.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(q.Name, dns.TypeA), A: net.IPv4(192, 0, 2, 1)})
		case q.Name == "big.example.org." && w.LocalAddr().Network() == "udp":
			m.Truncated = true
		case q.Name == "big.example.org.":
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(q.Name, dns.TypeA), A: net.IPv4(192, 0, 2, 2)})
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		up := make(chan struct{})
		done := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(up) }
		go func() { defer close(done); srv.ActivateAndServe() }()
		<-up
		t.Cleanup(func() { srv.Shutdown(); <-done })
	}
	return pc.LocalAddr().String()
}

func TestServer_Forward(t *testing.T) {
	upstream := startUpstream(t)
	// The first upstream is down: the server moves on to the next.
	s := mustStart(t, &Server{Upstreams: []string{deadUpstream(t), upstream}})
	s.Update(testState("10.43.0.10"), nil)
	for _, network := range []string{"udp", "tcp"} {
		r := query(t, network, s.LocalAddr(), "example.org.", dns.TypeA)
		if r.Rcode != dns.RcodeSuccess || !slices.Equal(values(r.Answer), []string{"192.0.2.1"}) {
			t.Fatalf("%s example.org: %v", network, r)
		}
		// Truncated over UDP upstream: the server asks again over TCP.
		r = query(t, network, s.LocalAddr(), "big.example.org.", dns.TypeA)
		if r.Truncated || !slices.Equal(values(r.Answer), []string{"192.0.2.2"}) {
			t.Fatalf("%s big.example.org: %v", network, r)
		}
		if r = query(t, network, s.LocalAddr(), "nope.example.org.", dns.TypeA); r.Rcode != dns.RcodeNameError {
			t.Fatalf("%s nope.example.org: %v", network, r)
		}
	}
}

func TestServer_ForwardFails(t *testing.T) {
	// A refused port fails at once; a silent one after Timeout.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	for name, ups := range map[string][]string{
		"refused": {deadUpstream(t)},
		"silent":  {silent.LocalAddr().String()},
		"none":    {},
	} {
		t.Run(name, func(t *testing.T) {
			s := &Server{Upstreams: ups, Timeout: 200 * time.Millisecond}
			if len(ups) == 0 {
				s.ResolvConf = t.TempDir() + "/missing"
			}
			mustStart(t, s)
			// The client's own 5 s timeout is the deadline: an answer
			// must come, and be SERVFAIL.
			if r := query(t, "udp", s.LocalAddr(), "example.org.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
			}
		})
	}
}

// TestServer_ForwardBound: beyond MaxForwards in flight, queries get
// SERVFAIL at once, and Close aborts the forward in flight.
func TestServer_ForwardBound(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	s := mustStart(t, &Server{Upstreams: []string{silent.LocalAddr().String()}, MaxForwards: 1, Timeout: time.Minute})

	first := make(chan error, 1)
	go func() {
		m := new(dns.Msg)
		m.SetQuestion("slow.example.org.", dns.TypeA)
		_, _, err := (&dns.Client{Timeout: 10 * time.Second}).Exchange(m, s.LocalAddr())
		first <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); len(s.sem) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("first forward never started")
		}
		time.Sleep(time.Millisecond)
	}
	if r := query(t, "udp", s.LocalAddr(), "other.example.org.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s with the forward slots full, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	// Cluster names are not forwarded, so a flood cannot starve them.
	s.Update(testState("10.43.0.10"), nil)
	if r := query(t, "udp", s.LocalAddr(), "web.default.svc.cluster.local.", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("cluster name with forward slots full: %v", r)
	}
	// Close returns without waiting out the minute-long upstream timeout.
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for the forward in flight")
	}
	<-first // SERVFAIL or a read error, either way it ended
}

func TestServer_UpdateWhileQuerying(t *testing.T) {
	s := mustStart(t, &Server{})
	a, b := testState("10.43.0.10"), testState("10.43.0.11")
	s.Update(a, testLocal)

	stop := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			c := &dns.Client{Timeout: 5 * time.Second}
			m := new(dns.Msg)
			m.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				r, _, err := c.Exchange(m, s.LocalAddr())
				if err != nil {
					errs <- err
					return
				}
				if v := values(r.Answer); !slices.Equal(v, []string{"10.43.0.10"}) && !slices.Equal(v, []string{"10.43.0.11"}) {
					errs <- errors.New("unexpected answer " + strings.Join(v, ","))
					return
				}
			}
		})
	}
	for i := range 200 {
		if i%2 == 0 {
			s.Update(b, testLocal)
		} else {
			s.Update(a, testLocal)
		}
	}
	close(stop)
	wg.Wait()
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestServer_Close(t *testing.T) {
	s := &Server{Addr: "127.0.0.1:0", Upstreams: []string{"127.0.0.1:9"}, Log: quiet}
	if err := s.Close(); err != nil { // before Start
		t.Fatal(err)
	}
	s = &Server{Addr: "127.0.0.1:0", Upstreams: []string{"127.0.0.1:9"}, Log: quiet}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addr := s.LocalAddr()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("Start after Close: no error")
	}
	// Both ports are free again.
	pc, l, err := listen(addr, false)
	if err != nil {
		t.Fatalf("listeners not closed: %v", err)
	}
	pc.Close()
	l.Close()
}

func TestServer_StartErrors(t *testing.T) {
	// 192.0.2.53 (TEST-NET-1) is on no interface here. Binding sends
	// nothing.
	s := &Server{Addr: "192.0.2.53:0", Upstreams: []string{"127.0.0.1:9"}, Log: quiet}
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), "192.0.2.53") {
		t.Fatalf("Start on an absent address: %v, want an error naming it", err)
	}
	// FreeBind binds it anyway, for the bridge address before the bridge.
	s = &Server{Addr: "192.0.2.53:0", Upstreams: []string{"127.0.0.1:9"}, Log: quiet, FreeBind: true}
	if err := s.Start(); err != nil {
		t.Fatalf("Start with FreeBind: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestIsSelf(t *testing.T) {
	tests := []struct {
		upstream, self string
		want           bool
	}{
		{"10.42.3.1:53", "10.42.3.1:53", true},
		{"10.42.3.1:5353", "10.42.3.1:53", false},
		{"127.0.0.53:53", "10.42.3.1:53", false}, // systemd-resolved
		{"127.0.0.1:53", "0.0.0.0:53", true},
		{"[::ffff:10.42.3.1]:53", "10.42.3.1:53", true},
		{"192.0.2.1:53", "0.0.0.0:53", false},
	}
	for _, tt := range tests {
		if got := isSelf(tt.upstream, tt.self); got != tt.want {
			t.Errorf("isSelf(%s, %s) = %v, want %v", tt.upstream, tt.self, got, tt.want)
		}
	}
}

// TestServer_NoLoop: our own address listed as an upstream is dropped.
func TestServer_NoLoop(t *testing.T) {
	s := mustStart(t, &Server{})
	s2 := &Server{Addr: s.LocalAddr(), Upstreams: []string{s.LocalAddr(), "127.0.0.1:9"}, Log: quiet}
	s2.local = s.LocalAddr()
	if got := s2.resolveUpstreams(); !slices.Equal(got, []string{"127.0.0.1:9"}) {
		t.Fatalf("upstreams %v, want our own address dropped", got)
	}
}

func BenchmarkServer_ClusterName(b *testing.B) {
	s := mustStart(b, &Server{})
	s.Update(testState("10.43.0.10"), nil)
	b.ReportAllocs()
	b.SetParallelism(8) // clients in flight per CPU: measure throughput, not round trips
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := &dns.Client{Timeout: 5 * time.Second}
		co, err := c.Dial(s.LocalAddr())
		if err != nil {
			b.Error(err)
			return
		}
		defer co.Close()
		m := new(dns.Msg)
		m.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
		for pb.Next() {
			m.Id = dns.Id()
			r, _, err := c.ExchangeWithConn(m, co)
			if err != nil || len(r.Answer) != 1 {
				b.Errorf("answer %v, err %v", r, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}

// BenchmarkIndex_Answer is the lookup alone, without sockets or codec.
func BenchmarkIndex_Answer(b *testing.B) {
	ix := buildIndex(testState("10.43.0.10"), nil)
	q := dns.Question{Name: "web.default.svc.cluster.local.", Qtype: dns.TypeA, Qclass: dns.ClassINET}
	b.ReportAllocs()
	for b.Loop() {
		m := new(dns.Msg)
		if !ix.answer(m, q, strings.ToLower(q.Name)) || len(m.Answer) != 1 {
			b.Fatal("no answer")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}
