package netproxy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func quietLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// threeServices is testState's web, dns and lb.
func threeServices() *core.NetworkState {
	st := testState()
	var keep []core.NetService
	for _, s := range st.Services {
		if s.Name == "web" || s.Name == "dns" || s.Name == "lb" {
			keep = append(keep, s)
		}
	}
	st.Services = keep
	return st
}

func without(st *core.NetworkState, name string) *core.NetworkState {
	cp := *st
	cp.Services = nil
	for _, s := range st.Services {
		if s.Name != name {
			cp.Services = append(cp.Services, s)
		}
	}
	return &cp
}

// chainsOf returns the chains of st's service ports as rendered.
func chainsOf(t *testing.T, st *core.NetworkState, key string) []string {
	t.Helper()
	nat, _ := Render(st, "a", "192.168.50.1", nil)
	var out []string
	for c := range declared(nat) {
		if !strings.HasPrefix(c, "EDGE-SEP-") && !strings.HasPrefix(c, "EDGE-SVC-") && !strings.HasPrefix(c, "EDGE-EXT-") {
			continue
		}
		// a service's chains are the ones its rules mention by name
		for _, r := range rules(nat, c) {
			if strings.Contains(r, `"`+key) {
				out = append(out, c)
				break
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no chains for %s", key)
	}
	return out
}

func TestSyncNetns(t *testing.T) {
	enterNetns(t)
	// Someone else's rules, which we must leave exactly as found.
	run(t, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "2222", "-j", "REDIRECT", "--to-ports", "22")
	run(t, "iptables", "-t", "nat", "-N", "OTHER")
	run(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-j", "OTHER")
	run(t, "iptables", "-P", "FORWARD", "DROP")
	run(t, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
	before := saveAll(t)

	st := threeServices()
	p := &Proxy{Node: "a", NodeIP: "192.168.50.1", Log: quietLog(t)}
	if err := p.Sync(st, nil); err != nil {
		t.Fatal(err)
	}
	after := saveAll(t)
	for _, key := range []string{"default/web", "kube-system/dns", "default/lb"} {
		for _, c := range chainsOf(t, st, key) {
			if !strings.Contains(after, ":"+c+" - [0:0]") || !strings.Contains(after, "-A "+c+" ") {
				t.Errorf("chain %s of %s missing or empty:\n%s", c, key, after)
			}
		}
	}
	// Each jump once, at the top of its built-in chain (above the
	// foreign rules that were there first).
	for _, j := range jumps {
		var in []string
		for _, l := range strings.Split(run(t, "iptables-save", "-t", j.table), "\n") {
			if strings.HasPrefix(l, "-A "+j.chain+" ") {
				in = append(in, l)
			}
		}
		ours := "-A " + j.chain + " " + j.spec + " -j " + j.target
		if len(in) == 0 || in[0] != ours || strings.Count(strings.Join(in, "\n"), ours) != 1 {
			t.Errorf("%s %s: %q, want %q first and once", j.table, j.chain, in, ours)
		}
	}
	for _, l := range strings.Split(before, "\n") {
		if strings.HasPrefix(l, "-A") && !strings.Contains(after, l) {
			t.Errorf("foreign rule lost: %s", l)
		}
	}

	// A fresh Proxy (agent restart) takes over: same rules, no second jump.
	p2 := &Proxy{Node: "a", NodeIP: "192.168.50.1", Log: quietLog(t)}
	if err := p2.Sync(st, nil); err != nil {
		t.Fatal(err)
	}
	if again := saveAll(t); again != after {
		t.Errorf("resync by a fresh Proxy changed the rules:\n%s\nwant\n%s", again, after)
	}

	// dns goes (written as a change): its chains go, the others stay as
	// they were.
	st2 := without(st, "dns")
	if err := p2.Sync(st2, nil); err != nil {
		t.Fatal(err)
	}
	now := saveAll(t)
	checkGone := func(now string) {
		t.Helper()
		for _, c := range chainsOf(t, st, "kube-system/dns") {
			if strings.Contains(now, c) {
				t.Errorf("chain %s of the deleted service remains", c)
			}
		}
		for _, key := range []string{"default/web", "default/lb"} {
			for _, c := range chainsOf(t, st, key) {
				if got, want := chainLines(now, c), chainLines(after, c); got != want {
					t.Errorf("chain %s of %s changed:\n%s\nwant\n%s", c, key, got, want)
				}
			}
		}
		if strings.Contains(now, "10.43.0.53") {
			t.Error("dns cluster IP still in the rules")
		}
	}
	checkGone(now)
	// And back: the same rules as at first.
	if err := p2.Sync(st, nil); err != nil {
		t.Fatal(err)
	}
	if again := saveAll(t); again != after {
		t.Errorf("dns back:\n%s\nwant\n%s", again, after)
	}
	// A fresh Proxy finds the chains of the gone service in the kernel.
	p3 := &Proxy{Node: "a", NodeIP: "192.168.50.1", Log: quietLog(t)}
	if err := p3.Sync(st2, nil); err != nil {
		t.Fatal(err)
	}
	if again := saveAll(t); again != now {
		t.Errorf("fresh Proxy without dns:\n%s\nwant\n%s", again, now)
	}

	if err := Cleanup(); err != nil {
		t.Fatal(err)
	}
	if got := saveAll(t); got != before {
		t.Errorf("after Cleanup:\n%s\nwant (as before the first Sync):\n%s", got, before)
	}
	if err := Cleanup(); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
}

func chainLines(save, chain string) string {
	var b strings.Builder
	for _, l := range strings.Split(save, "\n") {
		if strings.HasPrefix(l, "-A "+chain+" ") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestSyncSkipsUnchanged(t *testing.T) {
	enterNetns(t)
	p := &Proxy{Node: "a", NodeIP: "192.168.50.1", Log: quietLog(t)}
	var restores []string // one entry per iptables-restore: table and chains written
	p.onRestore = func(table string, input []byte) {
		restores = append(restores, fmt.Sprintf("%s:%d", table, len(ourChains(input))))
	}
	st := threeServices()
	sync := func(local func(string) (bool, bool), want int) {
		t.Helper()
		if err := p.Sync(st, local); err != nil {
			t.Fatal(err)
		}
		if len(restores) != want {
			t.Fatalf("iptables-restore ran %d times (%v), want %d", len(restores), restores, want)
		}
	}
	sync(nil, 2) // nat and filter, everything
	sync(nil, 2)
	sync(nil, 2)
	// The agent sees its pod of web fail: web's chain is rewritten and the
	// failing endpoint's chain deleted, in the nat table only.
	notReady := func(uid string) (bool, bool) { return false, uid == "uid-a5" }
	sync(notReady, 3)
	if restores[2] != "nat:2" {
		t.Errorf("a changed endpoint rewrote %s, want nat:2 (web's EDGE-SVC- chain, the old EDGE-SEP- chain)", restores[2])
	}
	sync(notReady, 3)
	out := run(t, "iptables", "-t", "nat", "-S", svcChain("default/web", "http", "TCP"))
	if strings.Contains(out, sepChain("default/web", "http", "TCP", "10.42.0.5:8080")) || strings.Count(out, "-j EDGE-SEP-") != 2 {
		t.Errorf("web after its local pod failed:\n%s", out)
	}
	if strings.Contains(run(t, "iptables-save", "-t", "nat"), sepChain("default/web", "http", "TCP", "10.42.0.5:8080")) {
		t.Error("the failed endpoint's chain remains")
	}
	// Someone flushes our chains; after ResyncPeriod they come back.
	run(t, "iptables", "-t", "nat", "-F", "EDGE-SERVICES")
	p.lastFull = time.Now().Add(-DefaultResyncPeriod - time.Second)
	sync(notReady, 5)
	if out := run(t, "iptables", "-t", "nat", "-S", "EDGE-SERVICES"); !strings.Contains(out, "10.43.0.10/32") {
		t.Errorf("resync did not restore EDGE-SERVICES:\n%s", out)
	}
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
}

func TestSyncRoutesNetns(t *testing.T) {
	enterNetns(t)
	// A veth pair stands for the LAN (the dummy driver may be missing).
	lan := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lan0"}, PeerName: "lan0p"}
	if err := netlink.LinkAdd(lan); err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("192.168.50.1/24")
	if err := netlink.AddrAdd(lan, addr); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lan); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "route", "add", "10.99.0.0/24", "via", "192.168.50.9", "proto", "static")

	routes := func() map[string]string {
		t.Helper()
		rs, err := ourRoutes()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, r := range rs {
			dst, gw := routeKey(r)
			m[dst.String()] = gw.String()
		}
		return m
	}
	want := func(m map[string]string) {
		t.Helper()
		if got := routes(); fmt.Sprint(got) != fmt.Sprint(m) {
			t.Fatalf("routes of protocol %d: %v, want %v", RouteProtocol, got, m)
		}
	}
	st := &core.NetworkState{Nodes: []core.NetNode{
		{Name: "a", IP: "192.168.50.1", PodCIDR: "10.42.0.0/24"},
		{Name: "b", IP: "192.168.50.2", PodCIDR: "10.42.1.0/24"},
		{Name: "c", IP: "192.168.50.3", PodCIDR: "10.42.2.0/24"},
		{Name: "d", IP: "192.168.50.4"}, // no pod subnet yet
	}}
	p := &Proxy{Node: "a", Log: quietLog(t)}
	if err := p.SyncRoutes(st); err != nil {
		t.Fatal(err)
	}
	want(map[string]string{"10.42.1.0/24": "192.168.50.2", "10.42.2.0/24": "192.168.50.3"})
	if out := run(t, "ip", "route", "show", "proto", "237"); !strings.Contains(out, "10.42.1.0/24 via 192.168.50.2 dev lan0") {
		t.Errorf("ip route show proto 237:\n%s", out)
	}
	if err := p.SyncRoutes(st); err != nil {
		t.Fatal(err)
	}

	// c leaves, b changes address, e is not on our LAN.
	st.Nodes = []core.NetNode{st.Nodes[0], {Name: "b", IP: "192.168.50.12", PodCIDR: "10.42.1.0/24"}, {Name: "e", IP: "10.9.9.9", PodCIDR: "10.42.4.0/24"}}
	err := p.SyncRoutes(st)
	if err == nil || !strings.Contains(err.Error(), "node e") {
		t.Errorf("unreachable gateway: want an error naming node e, got %v", err)
	}
	want(map[string]string{"10.42.1.0/24": "192.168.50.12"})

	if err := Cleanup(); err != nil {
		t.Fatal(err)
	}
	want(map[string]string{})
	if out := run(t, "ip", "route", "show", "10.99.0.0/24"); !strings.Contains(out, "via 192.168.50.9") {
		t.Errorf("foreign route removed: %q", out)
	}
}

// TestConntrackNetns checks the UDP flush on the kernel's conntrack table.
func TestConntrackNetns(t *testing.T) {
	enterNetns(t)
	// 4-byte addresses: netlink encodes 16-byte ones as 0.0.0.0.
	client, cip := net.IPv4(10, 42, 0, 7).To4(), net.IPv4(10, 43, 0, 53).To4()
	create := func(sport uint16, replySrc net.IP, rport uint16) {
		t.Helper()
		f := &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 300}
		f.Forward = netlink.IPTuple{Protocol: 17, SrcIP: client, DstIP: cip, SrcPort: sport, DstPort: 53}
		f.Reverse = netlink.IPTuple{Protocol: 17, SrcIP: replySrc.To4(), DstIP: client, SrcPort: rport, DstPort: sport}
		if err := netlink.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, f); err != nil {
			t.Skipf("cannot create conntrack entries here (nf_conntrack_netlink): %v", err)
		}
	}
	flows := func() map[uint16]string {
		t.Helper()
		fs, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		if err != nil {
			t.Fatal(err)
		}
		m := map[uint16]string{}
		for _, f := range fs {
			if f.Forward.DstIP.Equal(cip) {
				m[f.Forward.SrcPort] = f.Reverse.SrcIP.String()
			}
		}
		return m
	}
	st := threeServices()
	p := &Proxy{Node: "a", Log: quietLog(t)}
	if err := p.Sync(st, nil); err != nil {
		t.Fatal(err)
	}
	create(40001, net.IPv4(10, 42, 0, 9), 5353)
	create(40002, net.IPv4(10, 42, 1, 9), 5353)

	// 10.42.0.9 stops being ready: its flow goes, the other stays.
	gone := func(uid string) (bool, bool) { return false, uid == "uid-a9" }
	if err := p.Sync(st, gone); err != nil {
		t.Fatal(err)
	}
	if got := flows(); len(got) != 1 || got[40002] != "10.42.1.9" {
		t.Fatalf("after 10.42.0.9 went: flows %v, want only 40002 via 10.42.1.9", got)
	}

	// No endpoint: a client's flow is rejected, never DNATed; when
	// endpoints come back it must be flushed or it would stay un-NATed.
	none := func(string) (bool, bool) { return false, true }
	st.Services[1].Endpoints[1].Ready = false
	if err := p.Sync(st, none); err != nil {
		t.Fatal(err)
	}
	create(40003, cip, 53)
	st.Services[1].Endpoints[1].Ready = true
	if err := p.Sync(st, none); err != nil {
		t.Fatal(err)
	}
	if got := flows(); len(got) != 0 {
		t.Fatalf("flows to the cluster IP after endpoints came back: %v, want none", got)
	}
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
}

// TestTrafficNetns sends real connections through the rules: a client
// namespace (where the rules live, as on a node) and a server namespace
// joined by a veth pair; the service's endpoint is the server.
func TestTrafficNetns(t *testing.T) {
	enterNetns(t) // the client, and the node
	srvName, srv := newNetns(t)
	run(t, "ip", "link", "add", "veth-c", "type", "veth", "peer", "name", "veth-s", "netns", srvName)
	run(t, "ip", "addr", "add", "192.168.77.1/24", "dev", "veth-c")
	run(t, "ip", "link", "set", "veth-c", "up")
	run(t, "ip", "route", "add", "default", "via", "192.168.77.2")
	run(t, "ip", "-n", srvName, "addr", "add", "192.168.77.2/24", "dev", "veth-s")
	run(t, "ip", "-n", srvName, "addr", "add", "192.168.77.3/24", "dev", "veth-s")
	run(t, "ip", "-n", srvName, "link", "set", "veth-s", "up")
	run(t, "ip", "-n", srvName, "link", "set", "lo", "up")

	// The server answers each TCP connection with the address it sees.
	l := listenIn(t, srv, "tcp", "192.168.77.2:8080").(net.Listener)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello %s\n", c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
	// Two UDP "DNS servers" that answer with their name.
	for _, s := range []struct{ addr, name string }{{"192.168.77.2:5353", "A"}, {"192.168.77.3:5353", "B"}} {
		pc := listenIn(t, srv, "udp", s.addr).(net.PacketConn)
		go func(name string) {
			buf := make([]byte, 64)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo([]byte(name), from)
			}
		}(s.name)
	}

	server := func(ip string, ready bool) core.NetEndpoint { return ep(ip, "b", "", ready, 8080, 5353) }
	state := func(eps ...core.NetEndpoint) *core.NetworkState {
		return &core.NetworkState{ClusterCIDR: "10.42.0.0/16", Services: []core.NetService{
			{Namespace: "default", Name: "web", Type: core.ServiceLoadBalancer, ClusterIP: "10.43.0.10",
				Ports: []core.ServicePort{
					{Name: "http", Protocol: "TCP", Port: 80, NodePort: 30080},
					{Name: "dns", Protocol: "UDP", Port: 53},
				},
				Endpoints: eps},
		}}
	}
	p := &Proxy{Node: "a", NodeIP: "192.168.77.1", Log: quietLog(t)}
	if err := p.Sync(state(server("192.168.77.2", true)), nil); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"10.43.0.10:80", "192.168.77.1:30080", "192.168.77.1:80"} {
		got, err := greet(addr)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		// The node's own traffic is masqueraded to its address.
		if got != "hello 192.168.77.1" {
			t.Errorf("%s: server says %q", addr, got)
		}
	}

	// UDP sticks to its endpoint while the flow lives; when the endpoint
	// is replaced, the conntrack flush sends the same socket to the new one.
	conn, err := net.Dial("udp", "10.43.0.10:53")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ask := func() string {
		t.Helper()
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write([]byte("q")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("udp 10.43.0.10:53: %v", err)
		}
		return string(buf[:n])
	}
	if got := ask(); got != "A" {
		t.Fatalf("first answer from %q, want A", got)
	}
	if err := p.Sync(state(server("192.168.77.2", false), server("192.168.77.3", true)), nil); err != nil {
		t.Fatal(err)
	}
	if got := ask(); got != "B" {
		t.Errorf("after the endpoint moved, answer from %q, want B (stale conntrack entry?)", got)
	}

	// No ready endpoint: refused at once rather than a timeout.
	if err := p.Sync(state(server("192.168.77.2", false)), nil); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"10.43.0.10:80", "192.168.77.1:30080", "192.168.77.1:80"} {
		start := time.Now()
		if _, err := greet(addr); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s without endpoints: %v, want connection refused", addr, err)
		} else if d := time.Since(start); d > time.Second {
			t.Errorf("%s refused only after %v", addr, d)
		}
	}
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
}

func greet(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

// listenIn opens a listener (tcp) or packet conn (udp) inside h: the
// socket belongs to the namespace of the thread that creates it, and keeps
// it wherever it is used afterwards. The creating goroutine ends locked,
// so Go discards its thread rather than reuse it in h.
func listenIn(t *testing.T, h netns.NsHandle, network, addr string) io.Closer {
	t.Helper()
	type result struct {
		c   io.Closer
		err error
	}
	ch := make(chan result)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(h); err != nil {
			ch <- result{nil, err}
			return
		}
		if network == "tcp" {
			l, err := net.Listen(network, addr)
			ch <- result{l, err}
			return
		}
		pc, err := net.ListenPacket(network, addr)
		ch <- result{pc, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen %s %s in the server netns: %v", network, addr, r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c
}

// A port losing its last endpoint gets its REJECT before its DNAT goes,
// and one gaining an endpoint its DNAT before its REJECT goes: no new
// connection ever meets neither (it would go to the cluster IP itself and
// hang on ARP; the first connection after a replica turned ready took 3 s).
func TestSyncNeverLeavesAPortBare(t *testing.T) {
	enterNetns(t)
	p := &Proxy{Node: "a", NodeIP: "192.168.50.1", Log: quietLog(t)}
	var restores []string
	p.onRestore = func(table string, input []byte) {
		restores = append(restores, table+":"+strings.Join(ourChains(input), ",")+":"+fmt.Sprint(strings.Contains(string(input), "REJECT")))
	}
	st := threeServices()
	for _, phase := range []struct {
		ready bool
		first string // table of the first restore
	}{{true, ""}, {false, "filter"}, {true, "nat"}, {false, "filter"}} {
		for i := range st.Services {
			if st.Services[i].Name == "dns" {
				for j := range st.Services[i].Endpoints {
					st.Services[i].Endpoints[j].Ready = phase.ready
				}
			}
		}
		restores = nil
		if err := p.Sync(st, nil); err != nil {
			t.Fatal(err)
		}
		if phase.first == "" {
			continue
		}
		if len(restores) == 0 || !strings.HasPrefix(restores[0], phase.first+":") {
			t.Fatalf("ready=%v: restores %v, want the %s table first", phase.ready, restores, phase.first)
		}
		if !phase.ready && !strings.HasSuffix(restores[0], ":true") {
			t.Fatalf("losing endpoints: the first restore %s holds no REJECT", restores[0])
		}
	}
}

// On a node where nothing used iptables, an uninstall leaves iptables-save
// as empty as it was: the tables the first Sync made go too (nf_tables
// keeps a table once made; see tables.go).
func TestCleanupRemovesTablesItMade(t *testing.T) {
	enterNetns(t)
	strip := func(s string) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasPrefix(l, "#") && l != "" {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	before := strip(run(t, "iptables-save"))
	state := filepath.Join(t.TempDir(), "iptables-tables")
	p := &Proxy{Node: "a", NodeIP: "192.168.50.1", Log: quietLog(t), StateFile: state}
	if err := p.Sync(threeServices(), nil); err != nil {
		t.Fatal(err)
	}
	if strip(run(t, "iptables-save")) == before {
		t.Fatal("Sync wrote nothing")
	}
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if after := strip(run(t, "iptables-save")); after != before {
		t.Fatalf("after Cleanup:\n%s\nbefore the first Sync:\n%s", after, before)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("the state file is left: %v", err)
	}
}

// Another tool's EDGE-something chain is not ours: Sync and Cleanup leave
// it alone.
func TestForeignEdgeChainSurvives(t *testing.T) {
	enterNetns(t)
	run(t, "iptables", "-t", "nat", "-N", "EDGE-WAN")
	run(t, "iptables", "-t", "nat", "-A", "PREROUTING", "-j", "EDGE-WAN")
	p := &Proxy{Node: "a", NodeIP: "192.168.50.1", Log: quietLog(t)}
	if err := p.Sync(threeServices(), nil); err != nil {
		t.Fatal(err)
	}
	p.lastFull = time.Time{} // a full sync deletes chains it does not render
	if err := p.Sync(threeServices(), nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "iptables", "-t", "nat", "-S"); !strings.Contains(out, "-N EDGE-WAN") || !strings.Contains(out, "-A PREROUTING -j EDGE-WAN") {
		t.Fatalf("a foreign EDGE-WAN chain was touched:\n%s", out)
	}
}

// A firewall reload that drops our jumps is repaired within CheckPeriod,
// not at the next full resync.
func TestSyncRepairsAFlush(t *testing.T) {
	enterNetns(t)
	p := &Proxy{Node: "a", NodeIP: "192.168.50.1", Log: quietLog(t)}
	st := threeServices()
	if err := p.Sync(st, nil); err != nil {
		t.Fatal(err)
	}
	run(t, "iptables", "-t", "nat", "-F", "PREROUTING")
	if err := p.Sync(st, nil); err != nil { // within CheckPeriod: trusted
		t.Fatal(err)
	}
	if strings.Contains(run(t, "iptables", "-t", "nat", "-S", "PREROUTING"), "EDGE-SERVICES") {
		t.Fatal("the flush did not happen")
	}
	p.lastCheck = time.Now().Add(-CheckPeriod)
	if err := p.Sync(st, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(run(t, "iptables", "-t", "nat", "-S", "PREROUTING"), "-j EDGE-SERVICES") {
		t.Fatal("the jump was not restored after CheckPeriod")
	}
	if got := splitArgs(`-m comment --comment "edge service portals"`); len(got) != 4 || got[3] != "edge service portals" {
		t.Fatalf("splitArgs: %q", got)
	}
}
