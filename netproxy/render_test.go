package netproxy

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
	"github.com/vishvananda/netlink"
)

// Pure tests of Render: no root, no iptables.

func ep(ip, node, uid string, ready bool, ports ...int32) core.NetEndpoint {
	return core.NetEndpoint{IP: ip, Node: node, PodUID: uid, Ports: ports, Ready: ready}
}

// testState is a small cluster seen from node "a": web (ClusterIP, three
// endpoints), dns (UDP, affinity), edge (NodePort, ExternalLocal), lb
// (LoadBalancer), db (headless) and idle (no endpoints).
func testState() *core.NetworkState {
	return &core.NetworkState{
		ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16",
		Nodes: []core.NetNode{{Name: "a", IP: "192.168.50.1", PodCIDR: "10.42.0.0/24"}, {Name: "b", IP: "192.168.50.2", PodCIDR: "10.42.1.0/24"}},
		Services: []core.NetService{
			{Namespace: "default", Name: "web", Type: core.ServiceClusterIP, ClusterIP: "10.43.0.10",
				Ports: []core.ServicePort{{Name: "http", Protocol: "TCP", Port: 80}},
				Endpoints: []core.NetEndpoint{
					ep("10.42.0.5", "a", "uid-a5", true, 8080),
					ep("10.42.1.6", "b", "uid-b6", true, 8080),
					ep("10.42.1.7", "b", "uid-b7", true, 8080),
				}},
			{Namespace: "kube-system", Name: "dns", Type: core.ServiceClusterIP, ClusterIP: "10.43.0.53", AffinityTimeout: 300,
				Ports: []core.ServicePort{{Name: "dns", Protocol: "UDP", Port: 53}, {Name: "dns-tcp", Protocol: "TCP", Port: 53}},
				Endpoints: []core.NetEndpoint{
					ep("10.42.0.9", "a", "uid-a9", true, 5353, 5353),
					ep("10.42.1.9", "b", "uid-b9", true, 5353, 0), // no TCP port
				}},
			{Namespace: "default", Name: "edge", Type: core.ServiceNodePort, ClusterIP: "10.43.0.20", ExternalLocal: true,
				Ports: []core.ServicePort{{Name: "http", Protocol: "TCP", Port: 80, NodePort: 30080}},
				Endpoints: []core.NetEndpoint{
					ep("10.42.0.21", "a", "uid-a21", true, 80),
					ep("10.42.1.22", "b", "uid-b22", true, 80),
				}},
			{Namespace: "default", Name: "lb", Type: core.ServiceLoadBalancer, ClusterIP: "10.43.0.30",
				Ports:     []core.ServicePort{{Protocol: "TCP", Port: 443, NodePort: 30443}},
				Endpoints: []core.NetEndpoint{ep("10.42.1.31", "b", "uid-b31", true, 8443)}},
			{Namespace: "default", Name: "db", Type: core.ServiceClusterIP, ClusterIP: core.ClusterIPNone,
				Ports:     []core.ServicePort{{Name: "pg", Protocol: "TCP", Port: 5432}},
				Endpoints: []core.NetEndpoint{ep("10.42.1.40", "b", "uid-b40", true, 5432)}},
			{Namespace: "default", Name: "idle", Type: core.ServiceNodePort, ClusterIP: "10.43.0.50",
				Ports:     []core.ServicePort{{Name: "http", Protocol: "TCP", Port: 80, NodePort: 30050}},
				Endpoints: []core.NetEndpoint{ep("10.42.1.51", "b", "uid-b51", false, 80)}},
		},
	}
}

// rules returns the rules of chain in restore input, without "-A chain ".
func rules(input []byte, chain string) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(input))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "-A "+chain+" "); ok {
			out = append(out, rest)
		}
	}
	return out
}

// declared returns the chains restore input declares.
func declared(input []byte) map[string]bool {
	m := map[string]bool{}
	for _, c := range ourChains(input) {
		m[c] = true
	}
	return m
}

// target returns the chain or target a rule jumps to.
func target(rule string) string {
	_, t, _ := strings.Cut(rule, " -j ")
	t, _, _ = strings.Cut(t, " ")
	return t
}

func svcChain(key, port, proto string) string { return chainName("EDGE-SVC-", key+":"+port+":"+proto) }
func sepChain(key, port, proto, hostPort string) string {
	return chainName("EDGE-SEP-", key+":"+port+":"+proto+":"+hostPort)
}

func TestChainName(t *testing.T) {
	a := chainName("EDGE-SVC-", "default/web:http:TCP")
	if len(a) != 25 || len(a) > 28 || !strings.HasPrefix(a, "EDGE-SVC-") {
		t.Fatalf("chain name %q: want EDGE-SVC- and 16 characters", a)
	}
	if a != chainName("EDGE-SVC-", "default/web:http:TCP") || a == chainName("EDGE-SVC-", "default/web:http:UDP") {
		t.Fatal("chain names must be a function of namespace/name:port:protocol")
	}
	// Every chain Render declares fits iptables' 28 characters.
	nat, filter := Render(testState(), "a", "192.168.50.1", nil)
	for c := range declared(append(nat, filter...)) {
		if len(c) > 28 || !strings.HasPrefix(c, "EDGE-") {
			t.Errorf("chain %q: longer than 28 or not ours", c)
		}
	}
}

func TestRenderClusterIP(t *testing.T) {
	nat, filter := Render(testState(), "a", "192.168.50.1", nil)
	svc := svcChain("default/web", "http", "TCP")
	want := "-d 10.43.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment \"default/web:http cluster IP\" -j " + svc
	if !has(rules(nat, "EDGE-SERVICES"), want) {
		t.Fatalf("EDGE-SERVICES lacks %q:\n%s", want, nat)
	}
	rs := rules(nat, svc)
	if len(rs) != 4 {
		t.Fatalf("%s: want a masquerade rule and 3 endpoint rules, got %q", svc, rs)
	}
	if rs[0] != "! -s 10.42.0.0/16 -d 10.43.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment \"default/web:http cluster IP\" -j EDGE-MARK-MASQ" {
		t.Errorf("masquerade rule: %q", rs[0])
	}
	for i, ip := range []string{"10.42.0.5", "10.42.1.6", "10.42.1.7"} {
		sep := sepChain("default/web", "http", "TCP", ip+":8080")
		r := rs[i+1]
		if target(r) != sep {
			t.Errorf("rule %d jumps to %s, want %s (%s)", i, target(r), sep, ip)
		}
		switch i {
		case 0:
			wantProb(t, r, "0.3333333333")
		case 1:
			wantProb(t, r, "0.5000000000")
		case 2:
			if strings.Contains(r, "statistic") {
				t.Errorf("last endpoint must be unconditional: %q", r)
			}
		}
		sr := rules(nat, sep)
		if len(sr) != 2 || sr[0] != "-s "+ip+"/32 -m comment --comment \"default/web:http\" -j EDGE-MARK-MASQ" ||
			sr[1] != "-p tcp -m comment --comment \"default/web:http\" -j DNAT --to-destination "+ip+":8080" {
			t.Errorf("%s (%s): %q", sep, ip, sr)
		}
	}
	if strings.Contains(string(filter), "10.43.0.10") {
		t.Errorf("a service with endpoints must not be rejected:\n%s", filter)
	}
	// The NodePorts jump comes last.
	srv := rules(nat, "EDGE-SERVICES")
	if target(srv[len(srv)-1]) != "EDGE-NODEPORTS" {
		t.Errorf("last rule of EDGE-SERVICES: %q", srv[len(srv)-1])
	}
}

func wantProb(t *testing.T, rule, p string) {
	t.Helper()
	if !strings.Contains(rule, "-m statistic --mode random --probability "+p+" ") {
		t.Errorf("want probability %s: %q", p, rule)
	}
}

func TestRenderAffinity(t *testing.T) {
	nat, _ := Render(testState(), "a", "", nil)
	svc := svcChain("kube-system/dns", "dns", "UDP")
	rs := rules(nat, svc)
	// masquerade, 2 recent checks, 2 random choices
	if len(rs) != 5 {
		t.Fatalf("%s: %q", svc, rs)
	}
	for i, ip := range []string{"10.42.0.9", "10.42.1.9"} {
		sep := sepChain("kube-system/dns", "dns", "UDP", ip+":5353")
		if !strings.Contains(rs[1+i], "-m recent --name "+sep+" --rcheck --seconds 300 --reap -j "+sep) {
			t.Errorf("affinity check for %s: %q", ip, rs[1+i])
		}
		if sr := rules(nat, sep); len(sr) != 2 || !strings.Contains(sr[1], "-p udp") || !strings.Contains(sr[1], "-m recent --name "+sep+" --set -j DNAT --to-destination "+ip+":5353") {
			t.Errorf("%s: %q", sep, sr)
		}
	}
	// The TCP port: the endpoint without that port is left out.
	tcp := rules(nat, svcChain("kube-system/dns", "dns-tcp", "TCP"))
	if len(tcp) != 3 || target(tcp[2]) != sepChain("kube-system/dns", "dns-tcp", "TCP", "10.42.0.9:5353") || strings.Contains(strings.Join(tcp, "\n"), "10.42.1.9") {
		t.Errorf("dns-tcp: want only 10.42.0.9: %q", tcp)
	}
	// Without affinity: no recent match anywhere in web's chains.
	for _, r := range rules(nat, svcChain("default/web", "http", "TCP")) {
		if strings.Contains(r, "recent") {
			t.Errorf("web has no affinity: %q", r)
		}
	}
}

func TestRenderExternalLocal(t *testing.T) {
	key, id := "default/edge", "default/edge:http:TCP"
	ext, svc, svl := chainName("EDGE-EXT-", id), chainName("EDGE-SVC-", id), chainName("EDGE-SVL-", id)

	nat, filter := Render(testState(), "a", "192.168.50.1", nil)
	if !has(rules(nat, "EDGE-NODEPORTS"), "-p tcp -m tcp --dport 30080 -m comment --comment \"default/edge:http\" -j "+ext) {
		t.Fatalf("EDGE-NODEPORTS: %q", rules(nat, "EDGE-NODEPORTS"))
	}
	er := rules(nat, ext)
	if len(er) != 4 || target(er[0]) != svc || !strings.HasPrefix(er[0], "-s 10.42.0.0/16 ") ||
		target(er[1]) != "EDGE-MARK-MASQ" || target(er[2]) != svc || !strings.Contains(er[2], "--src-type LOCAL") || er[3] != "-j "+svl {
		t.Fatalf("%s: %q", ext, er)
	}
	// The local chain has only a's endpoint, and nothing masquerades
	// external clients on the way.
	lr := rules(nat, svl)
	if len(lr) != 1 || target(lr[0]) != sepChain(key, "http", "TCP", "10.42.0.21:80") {
		t.Fatalf("%s: want only the local endpoint: %q", svl, lr)
	}
	if len(rules(nat, svc)) != 3 {
		t.Errorf("%s: cluster traffic still reaches both endpoints: %q", svc, rules(nat, svc))
	}
	if strings.Contains(string(filter), "30080") {
		t.Errorf("a has a local endpoint, nothing to drop:\n%s", filter)
	}

	// Node c has no endpoint of its own: no SVL chain, and external
	// traffic is dropped in the filter table.
	nat, filter = Render(testState(), "c", "192.168.50.3", nil)
	if declared(nat)[svl] {
		t.Errorf("node c has no local endpoints, yet %s exists", svl)
	}
	if er := rules(nat, ext); len(er) != 3 {
		t.Errorf("%s on c: %q", ext, er)
	}
	if !has(rules(filter, "EDGE-SERVICES"), "-m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30080 -m comment --comment \"default/edge:http has no local endpoints\" -j DROP") {
		t.Errorf("filter on c: %s", filter)
	}
}

func TestRenderExternalCluster(t *testing.T) {
	id := "default/lb::TCP"
	ext, svc := chainName("EDGE-EXT-", id), chainName("EDGE-SVC-", id)
	nat, _ := Render(testState(), "a", "192.168.50.1", nil)
	if !has(rules(nat, "EDGE-SERVICES"), "-d 192.168.50.1/32 -p tcp -m tcp --dport 443 -m comment --comment \"default/lb loadbalancer IP\" -j "+ext) {
		t.Errorf("LoadBalancer port on the node address missing: %q", rules(nat, "EDGE-SERVICES"))
	}
	if !has(rules(nat, "EDGE-NODEPORTS"), "-p tcp -m tcp --dport 30443 -m comment --comment \"default/lb\" -j "+ext) {
		t.Errorf("nodeport missing: %q", rules(nat, "EDGE-NODEPORTS"))
	}
	if er := rules(nat, ext); len(er) != 2 || target(er[0]) != "EDGE-MARK-MASQ" || er[1] != "-j "+svc {
		t.Errorf("%s: %q", ext, er)
	}
	// Without a node address there is no LoadBalancer port, NodePorts stay.
	nat, _ = Render(testState(), "a", "", nil)
	if strings.Contains(string(nat), "loadbalancer IP") || !strings.Contains(string(nat), "--dport 30443") {
		t.Errorf("without a node IP:\n%s", nat)
	}
}

func TestRenderHeadless(t *testing.T) {
	nat, filter := Render(testState(), "a", "192.168.50.1", nil)
	for _, s := range []string{"default/db", "10.42.1.40", svcChain("default/db", "pg", "TCP")} {
		if bytes.Contains(nat, []byte(s)) || bytes.Contains(filter, []byte(s)) {
			t.Errorf("headless service has rules (%s)", s)
		}
	}
}

func TestRenderNoEndpoints(t *testing.T) {
	nat, filter := Render(testState(), "a", "192.168.50.1", nil)
	if bytes.Contains(nat, []byte("default/idle")) {
		t.Errorf("idle has no ready endpoint, yet nat rules:\n%s", nat)
	}
	fr := rules(filter, "EDGE-SERVICES")
	for _, want := range []string{
		"-d 10.43.0.50/32 -p tcp -m tcp --dport 80 -m comment --comment \"default/idle:http has no endpoints\" -j REJECT --reject-with icmp-port-unreachable",
		"-m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30050 -m comment --comment \"default/idle:http has no endpoints\" -j REJECT --reject-with icmp-port-unreachable",
	} {
		if !has(fr, want) {
			t.Errorf("filter EDGE-SERVICES lacks %q:\n%s", want, filter)
		}
	}
}

func TestRenderLocalOverride(t *testing.T) {
	st := testState()
	calls := map[string]int{}
	local := func(uid string) (bool, bool) {
		calls[uid]++
		switch uid {
		case "uid-a5": // published ready, locally failing
			return false, true
		case "uid-a21": // published ready, the agent has no opinion
			return false, false
		}
		return true, true
	}
	st.Services[0].Endpoints[0].Ready = true
	// idle's endpoint is on b: the override must not touch it.
	nat, filter := Render(st, "a", "192.168.50.1", local)
	web := rules(nat, svcChain("default/web", "http", "TCP"))
	if len(web) != 3 || strings.Contains(strings.Join(web, "\n"), "10.42.0.5") {
		t.Errorf("locally not ready 10.42.0.5 must be dropped: %q", web)
	}
	wantProb(t, web[1], "0.5000000000")
	if calls["uid-b6"] != 0 || calls["uid-b51"] != 0 {
		t.Errorf("local() consulted for another node's endpoints: %v", calls)
	}
	if len(rules(nat, chainName("EDGE-SVL-", "default/edge:http:TCP"))) != 1 {
		t.Error("unknown to local(): the published readiness holds")
	}
	if !bytes.Contains(filter, []byte("default/idle:http has no endpoints")) {
		t.Error("idle's endpoint is on b, still not ready")
	}

	// Published not ready, locally ready: added back.
	st = testState()
	st.Services[0].Endpoints[0].Ready = false
	nat, _ = Render(st, "a", "192.168.50.1", nil)
	if n := len(rules(nat, svcChain("default/web", "http", "TCP"))); n != 3 {
		t.Fatalf("not ready endpoint must be left out: %d rules", n)
	}
	nat, _ = Render(st, "a", "192.168.50.1", func(string) (bool, bool) { return true, true })
	if web := rules(nat, svcChain("default/web", "http", "TCP")); len(web) != 4 || !strings.Contains(web[1], sepChain("default/web", "http", "TCP", "10.42.0.5:8080")) {
		t.Errorf("locally ready endpoint must be added back: %q", web)
	}
}

func TestRenderPostrouting(t *testing.T) {
	nat, filter := Render(testState(), "a", "", nil)
	post := rules(nat, "EDGE-POSTROUTING")
	want := []string{
		"-d 224.0.0.0/4 -j RETURN",
		"-s 10.42.0.0/16 ! -d 10.42.0.0/16 -m comment --comment \"edge pod traffic leaving the cluster network\" -j EDGE-MARK-MASQ",
		"-m mark ! --mark 0x1000/0x1000 -j RETURN",
		"-j MARK --xor-mark 0x1000",
		"-m comment --comment \"edge service traffic requiring SNAT\" -j MASQUERADE --random-fully",
	}
	if strings.Join(post, "\n") != strings.Join(want, "\n") {
		t.Errorf("EDGE-POSTROUTING:\n%s\nwant\n%s", strings.Join(post, "\n"), strings.Join(want, "\n"))
	}
	if m := rules(nat, "EDGE-MARK-MASQ"); len(m) != 1 || m[0] != "-j MARK --or-mark 0x1000" {
		t.Errorf("EDGE-MARK-MASQ: %q", m)
	}
	fwd := strings.Join(rules(filter, "EDGE-FORWARD"), "\n")
	for _, s := range []string{"-m conntrack --ctstate NEW -j EDGE-SERVICES", "-s 10.42.0.0/16", "-d 10.42.0.0/16", "--mark 0x1000/0x1000"} {
		if !strings.Contains(fwd, s) {
			t.Errorf("EDGE-FORWARD lacks %q:\n%s", s, fwd)
		}
	}
}

func TestRenderDeterministic(t *testing.T) {
	a1, b1 := Render(testState(), "a", "192.168.50.1", nil)
	st := testState()
	e := st.Services[0].Endpoints
	e[0], e[2] = e[2], e[0]
	a2, b2 := Render(st, "a", "192.168.50.1", nil)
	if !bytes.Equal(a1, a2) || !bytes.Equal(b1, b2) {
		t.Error("endpoint order changed the rules")
	}
}

func TestRenderSkipsBadInput(t *testing.T) {
	st := testState()
	st.Services = append(st.Services,
		core.NetService{Namespace: "x", Name: "v6", ClusterIP: "fd00::1", Ports: []core.ServicePort{{Port: 80}}},
		core.NetService{Namespace: "x", Name: "odd", ClusterIP: "10.43.9.9", Ports: []core.ServicePort{{Port: 80, Protocol: "ICMP"}, {Name: "ok", Port: 81}},
			Endpoints: []core.NetEndpoint{ep("not-an-ip", "b", "", true, 80, 80), ep("10.42.1.99", "b", "", true, 80, 80)}},
	)
	rs := render(st, "a", "192.168.50.1", nil, true)
	if len(rs.skipped) != 3 {
		t.Errorf("skipped: %q", rs.skipped)
	}
	nat := rs.nat.restore(rs.nat.chains, nil, nil)
	if r := rules(nat, svcChain("x/odd", "ok", "TCP")); len(r) != 2 || !strings.Contains(r[1], sepChain("x/odd", "ok", "TCP", "10.42.1.99:80")) {
		t.Errorf("the good port of x/odd: %q", r)
	}
	if bytes.Contains(nat, []byte("fd00")) || bytes.Contains(nat, []byte("not-an-ip")) {
		t.Error("bad addresses reached the rules")
	}
}

// TestConntrackFilters checks which UDP flows a change flushes, against
// flows as the kernel would report them.
func TestConntrackFilters(t *testing.T) {
	cip := netip.MustParseAddr("10.43.0.53")
	a, b := netip.MustParseAddr("10.42.0.9"), netip.MustParseAddr("10.42.1.9")
	port := func(backends ...netip.Addr) map[string]dgramPort {
		return map[string]dgramPort{"kube-system/dns:dns:UDP": {proto: 17,
			frontends: []frontend{{cip, 53}, {port: 30053}}, backends: backends}}
	}
	flow := func(dst netip.Addr, dport uint16, replySrc netip.Addr) *netlink.ConntrackFlow {
		f := &netlink.ConntrackFlow{}
		f.Forward.Protocol, f.Forward.SrcIP, f.Forward.DstIP, f.Forward.SrcPort, f.Forward.DstPort = 17, []byte{10, 42, 0, 7}, dst.AsSlice(), 40000, dport
		f.Reverse.Protocol, f.Reverse.SrcIP, f.Reverse.DstIP = 17, replySrc.AsSlice(), []byte{10, 42, 0, 7}
		return f
	}
	toA, toB := flow(cip, 53, a), flow(cip, 53, b)
	unNATed := flow(cip, 53, cip)
	nodePort := flow(netip.MustParseAddr("192.168.50.1"), 30053, netip.MustParseAddr("192.168.50.1"))
	other := flow(netip.MustParseAddr("1.1.1.1"), 53, netip.MustParseAddr("1.1.1.1"))
	for _, tc := range []struct {
		name      string
		prev, cur map[string]dgramPort
		flushed   []*netlink.ConntrackFlow
	}{
		{"unchanged", port(a, b), port(a, b), nil},
		{"endpoint gone", port(a, b), port(b), []*netlink.ConntrackFlow{toA}},
		{"endpoint added", port(b), port(a, b), nil},
		{"first endpoint", port(), port(a), []*netlink.ConntrackFlow{unNATed, nodePort, toA, toB}},
		{"first sync", nil, port(a), []*netlink.ConntrackFlow{unNATed, nodePort, toA, toB}},
		{"service gone", port(a, b), map[string]dgramPort{}, []*netlink.ConntrackFlow{toA, toB}},
	} {
		filters, _ := conntrackFilters(tc.prev, tc.cur)
		for _, f := range []*netlink.ConntrackFlow{toA, toB, unNATed, nodePort, other} {
			matched := false
			for _, flt := range filters {
				matched = matched || flt.MatchConntrackFlow(f)
			}
			want := false
			for _, w := range tc.flushed {
				want = want || w == f
			}
			if matched != want {
				t.Errorf("%s: flow to %s:%d replied by %s: flushed %v, want %v", tc.name, f.Forward.DstIP, f.Forward.DstPort, f.Reverse.SrcIP, matched, want)
			}
		}
	}
}

func has(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

func ExampleRender() {
	st := &core.NetworkState{ClusterCIDR: "10.42.0.0/16", Services: []core.NetService{{
		Namespace: "default", Name: "web", Type: core.ServiceClusterIP, ClusterIP: "10.43.0.10",
		Ports:     []core.ServicePort{{Name: "http", Protocol: "TCP", Port: 80}},
		Endpoints: []core.NetEndpoint{{IP: "10.42.1.5", Ports: []int32{8080}, Ready: true}},
	}}}
	nat, _ := Render(st, "a", "", nil)
	for _, r := range rules(nat, svcChain("default/web", "http", "TCP")) {
		fmt.Println(strings.Replace(r, sepChain("default/web", "http", "TCP", "10.42.1.5:8080"), "EDGE-SEP-…", 1))
	}
	// Output:
	// ! -s 10.42.0.0/16 -d 10.43.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "default/web:http cluster IP" -j EDGE-MARK-MASQ
	// -m comment --comment "default/web:http -> 10.42.1.5:8080" -j EDGE-SEP-…
}

// A service's externalIPs open its ports on those addresses, through the
// external chain (masqueraded, or local-only with ExternalLocal), with or
// without a node address; without endpoints they are rejected.
func TestRenderExternalIPs(t *testing.T) {
	st := testState()
	web := &st.Services[0]
	web.ExternalIPs = []string{"192.168.50.200", "bogus", "192.168.50.200"}
	id := "default/web:http:TCP"
	ext, svc := chainName("EDGE-EXT-", id), chainName("EDGE-SVC-", id)
	for _, nodeIP := range []string{"192.168.50.1", ""} {
		nat, _ := Render(st, "a", nodeIP, nil)
		want := "-d 192.168.50.200/32 -p tcp -m tcp --dport 80 -m comment --comment \"default/web:http external IP\" -j " + ext
		if got := rules(nat, "EDGE-SERVICES"); !has(got, want) || strings.Count(string(nat), "192.168.50.200") != 1 {
			t.Errorf("node IP %q: external IP rule missing or repeated: %q", nodeIP, got)
		}
		if er := rules(nat, ext); len(er) != 2 || target(er[0]) != "EDGE-MARK-MASQ" || er[1] != "-j "+svc {
			t.Errorf("%s: %q", ext, er)
		}
	}
	idle := &st.Services[5]
	idle.ExternalIPs = []string{"192.168.50.201"}
	_, filter := Render(st, "a", "192.168.50.1", nil)
	if fr := rules(filter, "EDGE-SERVICES"); !has(fr, "-d 192.168.50.201/32 -p tcp -m tcp --dport 80 -m comment --comment \"default/idle:http has no endpoints\" -j REJECT --reject-with icmp-port-unreachable") {
		t.Errorf("no reject for an external IP without endpoints: %q", fr)
	}
}
