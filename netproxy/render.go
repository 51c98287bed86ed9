package netproxy

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/edgeorch/edge/core"
)

// MasqMark is the packet mark bit that asks EDGE-POSTROUTING to masquerade
// a packet. It must be a bit nobody else on the node sets or clears: CNI's
// portmap plugin (which the agent chains for hostPorts) uses 0x2000 (its
// default markMasqBit 13), kube-proxy and k3s 0x4000 and 0x8000, Calico
// 0xffff0000, Cilium 0x0f00, Tailscale 0xff0000, Istio 0x539, and
// wg-quick's default fwmark 0xca6c lacks it too: 0x1000 (bit 12) is free
// in all of them.
const MasqMark = 0x1000

// Our fixed chains. Per-service chains are named by chainName.
const (
	chainPrefix      = "EDGE-"
	chainServices    = "EDGE-SERVICES" // nat: portals; filter: ports without endpoints
	chainNodePorts   = "EDGE-NODEPORTS"
	chainPostrouting = "EDGE-POSTROUTING"
	chainMarkMasq    = "EDGE-MARK-MASQ"
	chainForward     = "EDGE-FORWARD"
)

// jump is a rule of ours in a built-in chain. Sync inserts it at the top
// when missing (matched by chain and target only, so a rule we made under
// an older comment is not duplicated); Cleanup deletes every rule of a
// built-in chain that jumps to an EDGE- chain.
type jump struct {
	table, chain string
	spec         string // without the target
	target       string
}

var jumps = []jump{
	{"nat", "PREROUTING", `-m comment --comment "edge service portals"`, chainServices},
	{"nat", "OUTPUT", `-m comment --comment "edge service portals"`, chainServices},
	{"nat", "POSTROUTING", `-m comment --comment "edge postrouting rules"`, chainPostrouting},
	// Ports without endpoints: the host's own clients (OUTPUT) and NodePorts
	// or LoadBalancer ports on this node (INPUT). Forwarded traffic goes
	// through EDGE-FORWARD, which jumps there first.
	{"filter", "INPUT", `-m conntrack --ctstate NEW -m comment --comment "edge service portals"`, chainServices},
	{"filter", "OUTPUT", `-m conntrack --ctstate NEW -m comment --comment "edge service portals"`, chainServices},
	{"filter", "FORWARD", `-m comment --comment "edge forwarding rules"`, chainForward},
}

// chainName names a per-service-port or per-endpoint chain as kube-proxy
// does: a prefix and 16 characters of base32(sha256(id)), 25 in all
// (iptables allows 28). 10 bytes encode to exactly 16 characters.
func chainName(prefix, id string) string {
	sum := sha256.Sum256([]byte(id))
	return prefix + base32.StdEncoding.EncodeToString(sum[:10])
}

// Render returns the iptables-restore input (for `iptables-restore
// --noflush`) of the nat and filter tables for st as seen from node, whose
// LAN address nodeIP receives LoadBalancer ports. It declares and fills
// only our chains; the jumps from the built-in chains and the deletion of
// chains that are no longer needed are added by Sync, which knows what the
// kernel holds. local may override the readiness of this node's endpoints
// (see Proxy.Sync); nil means no override. Render is pure: tests and
// benchmarks call it without root.
func Render(st *core.NetworkState, node, nodeIP string, local func(podUID string) (ready, known bool)) (nat, filter []byte) {
	rs := render(st, node, nodeIP, local, true)
	return rs.nat.restore(rs.nat.chains, nil, nil), rs.filter.restore(rs.filter.chains, nil, nil)
}

// ruleset is one rendering of a NetworkState.
type ruleset struct {
	nat, filter table
	// dgram holds the UDP and SCTP service ports by chain id, for the
	// conntrack cleanup.
	dgram map[string]dgramPort
	// skipped says what was left out and why (bad addresses, unknown
	// protocols): one bad object must not stop every other service.
	skipped []string
}

// table is the content of our chains in one iptables table.
type table struct {
	name   string
	chains []string          // in the order they were declared
	rules  map[string][]byte // chain -> its "-A" lines
}

func newTable(name string) table { return table{name: name, rules: map[string][]byte{}} }

func (t *table) declare(chain string) {
	if _, ok := t.rules[chain]; !ok {
		t.rules[chain] = make([]byte, 0, 256) // most chains hold one or two rules
		t.chains = append(t.chains, chain)
	}
}

// add appends `-A chain args...` to a declared chain; an arg may hold
// several words.
func (t *table) add(chain string, args ...string) {
	b := t.rules[chain]
	b = append(b, "-A "...)
	b = append(b, chain...)
	for _, a := range args {
		if a != "" {
			b = append(b, ' ')
			b = append(b, a...)
		}
	}
	t.rules[chain] = append(b, '\n')
}

// restore assembles iptables-restore input that rewrites the chains in
// write: declaring a chain under --noflush creates
// or flushes it, so declaring and refilling a chain replaces its content
// in the same transaction, and chains not declared are left as they are.
// stale chains are flushed too, then deleted once nothing of ours refers
// to them; insert holds `-I` lines for missing jumps.
func (t *table) restore(write, stale, insert []string) []byte {
	size := 64
	for _, c := range write {
		size += len(c) + 12 + len(t.rules[c])
	}
	var b bytes.Buffer
	b.Grow(size + 40*len(stale))
	b.WriteString("*" + t.name + "\n")
	for _, c := range write {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, c := range stale {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, l := range insert {
		b.WriteString(l + "\n")
	}
	for _, c := range write {
		b.Write(t.rules[c])
	}
	for _, c := range stale {
		b.WriteString("-X " + c + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// dgramPort is a UDP or SCTP service port as conntrack cleanup sees it:
// where clients send, and the ready endpoints it is DNATed to. Those
// protocols keep a conntrack entry per socket pair for as long as traffic
// flows, so a DNS client would stick to a dead pod without a flush.
type dgramPort struct {
	proto     uint8
	frontends []frontend
	backends  []netip.Addr
}

// frontend is an address clients use for a service port; an invalid ip
// means any local address (a NodePort).
type frontend struct {
	ip   netip.Addr
	port uint16
}

// backend is one ready endpoint of a service port.
type backend struct {
	ip    netip.Addr
	port  int32
	local bool
	addr  string // "ip:port"
	sep   string // its EDGE-SEP- chain
}

type renderer struct {
	node        string
	nodeIP      netip.Addr   // invalid: no LoadBalancer ports
	cluster     netip.Prefix // invalid: unknown, masquerade all service traffic
	local       func(string) (bool, bool)
	randomFully bool
	seen        map[string]bool
	rs          *ruleset
}

func render(st *core.NetworkState, node, nodeIP string, local func(string) (bool, bool), randomFully bool) *ruleset {
	rs := &ruleset{nat: newTable("nat"), filter: newTable("filter"), dgram: map[string]dgramPort{}}
	r := &renderer{node: node, local: local, randomFully: randomFully, seen: map[string]bool{}, rs: rs}
	if nodeIP != "" {
		if a, err := netip.ParseAddr(nodeIP); err == nil && a.Is4() {
			r.nodeIP = a
		} else {
			r.skip("node IP %q is not IPv4: no LoadBalancer ports", nodeIP)
		}
	}
	if st != nil && st.ClusterCIDR != "" {
		if p, err := netip.ParsePrefix(st.ClusterCIDR); err == nil && p.Addr().Is4() {
			r.cluster = p.Masked()
		} else {
			r.skip("cluster CIDR %q is not IPv4: no pod masquerade rules", st.ClusterCIDR)
		}
	}
	nat, filter := &rs.nat, &rs.filter
	for _, c := range []string{chainServices, chainNodePorts, chainPostrouting, chainMarkMasq} {
		nat.declare(c)
	}
	filter.declare(chainServices)
	filter.declare(chainForward)

	mark := fmt.Sprintf("%#x", MasqMark)
	nat.add(chainMarkMasq, "-j MARK --or-mark", mark)
	// Pods keep their address towards other pods (host-gw routes carry it)
	// and are masqueraded when they leave the cluster network; multicast
	// stays link-local. Then kube-proxy's pattern: masquerade what carries
	// the mark and clear the mark, so a packet that comes through again
	// (encapsulated, say) is not masqueraded twice.
	if r.cluster.IsValid() {
		c := r.cluster.String()
		nat.add(chainPostrouting, "-d 224.0.0.0/4 -j RETURN")
		nat.add(chainPostrouting, "-s", c, "! -d", c, comment("edge pod traffic leaving the cluster network"), "-j", chainMarkMasq)
	}
	nat.add(chainPostrouting, "-m mark ! --mark", mark+"/"+mark, "-j RETURN")
	nat.add(chainPostrouting, "-j MARK --xor-mark", mark)
	masq := "-j MASQUERADE"
	if randomFully {
		// Fully random source ports avoid the SNAT port races behind
		// kube-proxy's famous 5 s DNS timeouts.
		masq += " --random-fully"
	}
	nat.add(chainPostrouting, comment("edge service traffic requiring SNAT"), masq)

	// A FORWARD policy of DROP (Docker sets one) must not cut pods off:
	// new connections first meet the REJECTs of ports without endpoints,
	// then pod traffic, service traffic (marked) and replies of DNATed
	// connections (a NodePort to a hostNetwork pod) are accepted.
	filter.add(chainForward, "-m conntrack --ctstate NEW", "-j", chainServices)
	filter.add(chainForward, "-m mark --mark", mark+"/"+mark, comment("edge service traffic"), "-j ACCEPT")
	if r.cluster.IsValid() {
		c := r.cluster.String()
		filter.add(chainForward, "-s", c, comment("edge pod traffic"), "-j ACCEPT")
		filter.add(chainForward, "-d", c, comment("edge pod traffic"), "-j ACCEPT")
	}
	filter.add(chainForward, "-m conntrack --ctstate DNAT", comment("edge service replies"), "-j ACCEPT")

	if st != nil {
		for i := range st.Services {
			r.service(&st.Services[i])
		}
	}
	// Last, so cluster IPs and LoadBalancer ports are matched first; never
	// loopback, which would need route_localnet (CVE-2020-8558).
	nat.add(chainServices, "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL", comment("edge service nodeports; must be last"), "-j", chainNodePorts)
	return rs
}

func (r *renderer) skip(format string, args ...any) {
	r.rs.skipped = append(r.rs.skipped, fmt.Sprintf(format, args...))
}

// service renders every port of s. A headless service has no rules: its
// name resolves straight to the pods.
func (r *renderer) service(s *core.NetService) {
	if s.ClusterIP == core.ClusterIPNone {
		return
	}
	var cip netip.Addr
	if s.ClusterIP != "" {
		a, err := netip.ParseAddr(s.ClusterIP)
		if err != nil || !a.Is4() {
			r.skip("service %s: cluster IP %q is not IPv4", s.Key(), s.ClusterIP)
			return
		}
		cip = a
	}
	for i := range s.Ports {
		r.port(s, i, cip)
	}
}

var protocols = map[string]uint8{"tcp": 6, "udp": 17, "sctp": 132}

// port renders service port i of s; cip is invalid when s has no cluster IP
// yet (its NodePorts still work).
func (r *renderer) port(s *core.NetService, i int, cip netip.Addr) {
	sp := s.Ports[i]
	proto := cmp.Or(sp.Protocol, "TCP")
	p := strings.ToLower(proto)
	name := s.Key()
	if sp.Name != "" {
		name += ":" + sp.Name
	}
	if _, ok := protocols[p]; !ok {
		r.skip("service %s: protocol %q not supported", name, sp.Protocol)
		return
	}
	if sp.Port < 1 || sp.Port > 65535 {
		r.skip("service %s: port %d out of range", name, sp.Port)
		return
	}
	id := s.Key() + ":" + sp.Name + ":" + proto
	if r.seen[id] {
		r.skip("service %s: port %s/%s appears twice", name, sp.Name, proto)
		return
	}
	r.seen[id] = true
	external := s.Type == core.ServiceNodePort || s.Type == core.ServiceLoadBalancer
	var nodePort int32
	if external && sp.NodePort > 0 && sp.NodePort <= 65535 {
		nodePort = sp.NodePort
	}
	// The service port is also opened on the node's address (a
	// LoadBalancer, k3s ServiceLB style) and on its externalIPs (routed to
	// the nodes by the network, as kube-proxy expects).
	var extAddrs []netip.Addr
	if s.Type == core.ServiceLoadBalancer && r.nodeIP.IsValid() {
		extAddrs = append(extAddrs, r.nodeIP)
	}
	for _, e := range s.ExternalIPs {
		if a, err := netip.ParseAddr(e); err == nil && a.Is4() && !slices.Contains(extAddrs, a) {
			extAddrs = append(extAddrs, a)
		} else if err != nil || !a.Is4() {
			r.skip("service %s: external IP %q is not IPv4", name, e)
		}
	}
	lb := len(extAddrs) > 0
	if !cip.IsValid() && nodePort == 0 && !lb {
		return // nothing to reach it by yet
	}

	all, local := r.backends(s, i, id, p)
	// match is the protocol and destination port of a frontend.
	match := func(port int32) string {
		return "-p " + p + " -m " + p + " --dport " + strconv.Itoa(int(port))
	}
	if n := protocols[p]; n != 6 {
		dp := dgramPort{proto: n}
		if cip.IsValid() {
			dp.frontends = append(dp.frontends, frontend{cip, uint16(sp.Port)})
		}
		if nodePort > 0 {
			dp.frontends = append(dp.frontends, frontend{port: uint16(nodePort)})
		}
		for _, a := range extAddrs {
			dp.frontends = append(dp.frontends, frontend{a, uint16(sp.Port)})
		}
		for _, b := range all {
			dp.backends = append(dp.backends, b.ip)
		}
		r.rs.dgram[id] = dp
	}

	nat, filter := &r.rs.nat, &r.rs.filter
	if len(all) == 0 {
		// Reject in the filter table (the nat table may not), so clients
		// fail at once instead of timing out, as kube-proxy does.
		c := comment(name + " has no endpoints")
		reject := "-j REJECT --reject-with icmp-port-unreachable"
		if cip.IsValid() {
			filter.add(chainServices, "-d", cip.String()+"/32", match(sp.Port), c, reject)
		}
		if nodePort > 0 {
			filter.add(chainServices, "-m addrtype --dst-type LOCAL", match(nodePort), c, reject)
		}
		for _, a := range extAddrs {
			filter.add(chainServices, "-d", a.String()+"/32", match(sp.Port), c, reject)
		}
		return
	}

	// One chain per endpoint: hairpin traffic (a pod reaching itself
	// through the service) is masqueraded, or its reply would bypass the
	// DNAT; the recent list remembers clients for ClientIP affinity.
	aff := s.AffinityTimeout
	c := comment(name)
	for _, b := range all {
		nat.declare(b.sep)
		nat.add(b.sep, "-s", b.ip.String()+"/32", c, "-j", chainMarkMasq)
		if aff > 0 {
			nat.add(b.sep, "-p", p, c, "-m recent --name", b.sep, "--set -j DNAT --to-destination", b.addr)
		} else {
			nat.add(b.sep, "-p", p, c, "-j DNAT --to-destination", b.addr)
		}
	}

	svc := chainName("EDGE-SVC-", id)
	nat.declare(svc)
	if cip.IsValid() {
		d := "-d " + cip.String() + "/32"
		nat.add(chainServices, d, match(sp.Port), comment(name+" cluster IP"), "-j", svc)
		// Traffic from outside the pod network (the node itself, another
		// host routing to the cluster IP) is masqueraded so replies come
		// back through this node.
		src := ""
		if r.cluster.IsValid() {
			src = "! -s " + r.cluster.String()
		}
		nat.add(svc, src, d, match(sp.Port), comment(name+" cluster IP"), "-j", chainMarkMasq)
	}
	r.balance(svc, all, aff, name)

	if nodePort == 0 && !lb {
		return
	}
	ext := chainName("EDGE-EXT-", id)
	nat.declare(ext)
	if nodePort > 0 {
		nat.add(chainNodePorts, match(nodePort), comment(name), "-j", ext)
	}
	for _, a := range extAddrs {
		what := " external IP"
		if a == r.nodeIP && s.Type == core.ServiceLoadBalancer {
			what = " loadbalancer IP" // k3s ServiceLB style: the service port on the node's address
		}
		nat.add(chainServices, "-d", a.String()+"/32", match(sp.Port), comment(name+what), "-j", ext)
	}
	if !s.ExternalLocal {
		nat.add(ext, comment("masquerade traffic for "+name+" external destinations"), "-j", chainMarkMasq)
		nat.add(ext, "-j", svc)
		return
	}
	// ExternalLocal keeps the client's address, so only this node's
	// endpoints may answer. Pods and the node itself are not external
	// clients: they reach every endpoint, as kube-proxy lets them.
	if r.cluster.IsValid() {
		nat.add(ext, "-s", r.cluster.String(), comment("pod traffic for "+name+" external destinations"), "-j", svc)
	}
	nat.add(ext, "-m addrtype --src-type LOCAL", comment("masquerade LOCAL traffic for "+name+" external destinations"), "-j", chainMarkMasq)
	nat.add(ext, "-m addrtype --src-type LOCAL", comment("route LOCAL traffic for "+name+" external destinations"), "-j", svc)
	if len(local) == 0 {
		// No DNAT happens, so the packet reaches the filter table still
		// addressed to this node, and is dropped there (kube-proxy drops
		// too: the client's load balancer should pick another node).
		c := comment(name + " has no local endpoints")
		if nodePort > 0 {
			filter.add(chainServices, "-m addrtype --dst-type LOCAL", match(nodePort), c, "-j DROP")
		}
		for _, a := range extAddrs {
			filter.add(chainServices, "-d", a.String()+"/32", match(sp.Port), c, "-j DROP")
		}
		return
	}
	svl := chainName("EDGE-SVL-", id)
	nat.declare(svl)
	nat.add(ext, "-j", svl)
	r.balance(svl, local, aff, name)
}

// backends returns the ready endpoints of port i of s (all, and those on
// this node), ordered by address. An endpoint is ready as published unless
// it is on this node and local() knows better.
func (r *renderer) backends(s *core.NetService, i int, id, proto string) (all, local []backend) {
	for _, ep := range s.Endpoints {
		if i >= len(ep.Ports) || ep.Ports[i] < 1 || ep.Ports[i] > 65535 {
			continue // the pod has no such port
		}
		isLocal := r.node != "" && ep.Node == r.node
		var local func(string) (bool, bool)
		if isLocal {
			local = r.local // only this node's pods: local() knows no others
		}
		if !s.Serving(&ep, local) {
			continue
		}
		ip, err := netip.ParseAddr(ep.IP)
		if err != nil || !ip.Is4() {
			r.skip("service %s: endpoint address %q is not IPv4", s.Key(), ep.IP)
			continue
		}
		addr := ip.String() + ":" + strconv.Itoa(int(ep.Ports[i]))
		all = append(all, backend{ip: ip, port: ep.Ports[i], local: isLocal, addr: addr, sep: chainName("EDGE-SEP-", id+":"+addr)})
	}
	slices.SortFunc(all, func(a, b backend) int {
		return cmp.Or(a.ip.Compare(b.ip), cmp.Compare(a.port, b.port))
	})
	all = slices.CompactFunc(all, func(a, b backend) bool { return a.sep == b.sep })
	for _, b := range all {
		if b.local {
			local = append(local, b)
		}
	}
	return all, local
}

// balance fills chain with kube-proxy's random choice among bs: endpoint i
// of n is taken with probability 1/(n-i), the last unconditionally, which
// gives each 1/n. With ClientIP affinity a client seen within the last aff
// seconds goes back to the endpoint that served it.
func (r *renderer) balance(chain string, bs []backend, aff int32, name string) {
	nat := &r.rs.nat
	comments := make([]string, len(bs))
	for i, b := range bs {
		comments[i] = comment(name + " -> " + b.addr)
	}
	if aff > 0 {
		secs := strconv.Itoa(int(aff))
		for i, b := range bs {
			nat.add(chain, comments[i], "-m recent --name", b.sep, "--rcheck --seconds", secs, "--reap -j", b.sep)
		}
	}
	for i, b := range bs {
		if n := len(bs) - i; n > 1 {
			nat.add(chain, comments[i], "-m statistic --mode random --probability", probability(n), "-j", b.sep)
		} else {
			nat.add(chain, comments[i], "-j", b.sep)
		}
	}
}

// probability formats 1/n as kube-proxy does.
func probability(n int) string { return strconv.FormatFloat(1/float64(n), 'f', 10, 64) }

// comment is an iptables comment match. Names in a NetworkState are DNS
// labels, but the restore input must stay well formed whatever they hold.
func comment(s string) string {
	if len(s) <= 255 && !strings.ContainsFunc(s, unsafeInComment) {
		return `-m comment --comment "` + s + `"`
	}
	clean := strings.Map(func(r rune) rune {
		if unsafeInComment(r) {
			return '_'
		}
		return r
	}, s)
	if len(clean) > 255 { // the comment match's limit
		clean = clean[:255]
	}
	return `-m comment --comment "` + clean + `"`
}

func unsafeInComment(r rune) bool { return r == '"' || r == '\\' || r < ' ' || r > '~' }
