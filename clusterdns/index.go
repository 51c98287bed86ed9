package clusterdns

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/miekg/dns"
)

// ttl is the TTL of every answer and the SOA minimum (negative caching).
const ttl = 5

// defaultDomain is the cluster domain when the state names none.
const defaultDomain = "cluster.local."

// index is an immutable snapshot of the cluster's names, built by Update
// and swapped in whole, so queries read it without locks.
type index struct {
	domain string            // "cluster.local.", lower case
	soa    *dns.SOA          // authority for domain
	names  map[string]*entry // every existing name under domain, empty non-terminals included

	// Reverse lookups of service IPs: revZone is the octet-aligned zone
	// holding svcCIDR ("43.10.in-addr.arpa."), ptr maps reverse names.
	svcCIDR netip.Prefix
	revZone string
	revSOA  *dns.SOA
	ptr     map[string]string
}

// entry is what one name holds; an empty entry is a name that exists with
// no records (NOERROR, no answer).
type entry struct {
	a   []net.IP
	srv []srvRecord
}

type srvRecord struct {
	port   uint16
	target string
}

// buildIndex indexes st. local, when not nil, overrides the readiness of
// endpoints whose pod it knows.
func buildIndex(st *core.NetworkState, local func(podUID string) (ready, known bool)) *index {
	domain := defaultDomain
	if st.ClusterDomain != "" {
		domain = dns.CanonicalName(st.ClusterDomain)
	}
	serial := uint32(time.Now().Unix())
	ix := &index{domain: domain, soa: newSOA(domain, domain, serial), names: map[string]*entry{}, ptr: map[string]string{}}
	ix.names[domain] = &entry{}
	if p, err := netip.ParsePrefix(st.ServiceCIDR); err == nil && p.Addr().Is4() && p.Bits() >= 8 {
		ix.svcCIDR = p.Masked()
		a := ix.svcCIDR.Addr().As4()
		zone := "in-addr.arpa."
		for i := 0; i < p.Bits()/8; i++ {
			zone = strconv.Itoa(int(a[i])) + "." + zone
		}
		ix.revZone, ix.revSOA = zone, newSOA(zone, domain, serial)
	}

	for i := range st.Services {
		s := &st.Services[i]
		svc := dns.CanonicalName(s.Name + "." + s.Namespace + ".svc." + domain)
		if _, ok := dns.IsDomainName(svc); !ok || s.Name == "" || s.Namespace == "" {
			continue
		}
		e := ix.add(svc)
		headless := s.ClusterIP == core.ClusterIPNone

		// hosts are the names SRV records point to, with each one's
		// endpoint (nil for the service's own name).
		type host struct {
			name string
			ep   *core.NetEndpoint
		}
		var hosts []host
		if headless {
			for j := range s.Endpoints {
				ep := &s.Endpoints[j]
				ip := net.ParseIP(ep.IP).To4()
				if ip == nil || !s.Serving(ep, local) {
					continue
				}
				e.a = append(e.a, ip)
				// Each endpoint gets a name: its hostname (StatefulSet
				// pods) or, as CoreDNS does, its dashed IP, so SRV
				// targets resolve.
				label := strings.ToLower(ep.Hostname)
				if label == "" {
					label = strings.ReplaceAll(ep.IP, ".", "-")
				}
				name := label + "." + svc
				if _, ok := dns.IsDomainName(name); !ok || strings.Contains(label, ".") {
					continue
				}
				he := ix.add(name)
				he.a = append(he.a, ip)
				hosts = append(hosts, host{name, ep})
			}
		} else if ip, err := netip.ParseAddr(s.ClusterIP); err == nil && ip.Is4() {
			e.a = []net.IP{net.IP(ip.AsSlice())}
			hosts = append(hosts, host{svc, nil})
			if ix.svcCIDR.Contains(ip) {
				rev, _ := dns.ReverseAddr(ip.String())
				ix.ptr[rev] = svc
			}
		}

		// SRV _port._proto.svc for named ports: the service port behind
		// a cluster IP, each ready endpoint's own port when headless.
		for pi, p := range s.Ports {
			if p.Name == "" {
				continue
			}
			proto := strings.ToLower(p.Protocol)
			if proto == "" {
				proto = "tcp"
			}
			name := "_" + strings.ToLower(p.Name) + "._" + proto + "." + svc
			if _, ok := dns.IsDomainName(name); !ok {
				continue
			}
			se := ix.add(name)
			for _, h := range hosts {
				port := p.Port
				if h.ep != nil {
					if pi >= len(h.ep.Ports) || h.ep.Ports[pi] == 0 {
						continue
					}
					port = h.ep.Ports[pi]
				}
				se.srv = append(se.srv, srvRecord{port: uint16(port), target: h.name})
			}
		}
	}
	return ix
}

// add returns name's entry, creating it and every missing ancestor up to
// the domain (empty non-terminals exist: NOERROR, not NXDOMAIN).
func (ix *index) add(name string) *entry {
	e := ix.names[name]
	if e == nil {
		e = &entry{}
		ix.names[name] = e
	}
	for n := name; n != ix.domain && strings.HasSuffix(n, "."+ix.domain); {
		n = n[strings.IndexByte(n, '.')+1:]
		if ix.names[n] == nil {
			ix.names[n] = &entry{}
		}
	}
	return e
}

// answer fills m, a reply to q, when q.Name is ours and reports whether it
// was; other names are forwarded. name is q.Name in lower case. A nil
// index (no state yet) answers SERVFAIL for the default cluster domain
// rather than a negative answer clients would cache.
func (ix *index) answer(m *dns.Msg, q dns.Question, name string) bool {
	if ix == nil {
		if inZone(name, defaultDomain) {
			m.Rcode = dns.RcodeServerFailure
			return true
		}
		return false
	}
	if inZone(name, ix.domain) {
		ix.answerCluster(m, q, name)
		return true
	}
	if ix.revZone != "" && strings.HasSuffix(name, "."+ix.revZone) && ix.isServiceIP(name) {
		m.Authoritative = true
		target, ok := ix.ptr[name]
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY:
			m.Answer = append(m.Answer, &dns.PTR{Hdr: hdr(q.Name, dns.TypePTR), Ptr: target})
		}
		if len(m.Answer) == 0 {
			m.Ns = append(m.Ns, ix.revSOA)
		}
		return true
	}
	return false
}

func (ix *index) answerCluster(m *dns.Msg, q dns.Question, name string) {
	m.Authoritative = true
	e, ok := ix.names[name]
	if !ok {
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, ix.soa)
		return
	}
	switch q.Qtype {
	case dns.TypeA, dns.TypeANY:
		for _, ip := range e.a {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(q.Name, dns.TypeA), A: ip})
		}
	case dns.TypeSRV:
		for _, s := range e.srv {
			m.Answer = append(m.Answer, &dns.SRV{Hdr: hdr(q.Name, dns.TypeSRV),
				Weight: uint16(100 / len(e.srv)), Port: s.port, Target: s.target})
			for _, ip := range ix.names[s.target].a {
				m.Extra = append(m.Extra, &dns.A{Hdr: hdr(s.target, dns.TypeA), A: ip})
			}
		}
	case dns.TypeSOA:
		if name == ix.domain {
			m.Answer = append(m.Answer, ix.soa)
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, ix.soa)
	}
}

// isServiceIP reports whether name, under revZone, is the reverse name of
// an address in the service CIDR. The zone is octet-aligned and may be
// wider than the CIDR; names outside it are someone else's and forwarded.
func (ix *index) isServiceIP(name string) bool {
	l := strings.Split(strings.TrimSuffix(name, ".in-addr.arpa."), ".")
	if len(l) != 4 {
		return false
	}
	ip, err := netip.ParseAddr(l[3] + "." + l[2] + "." + l[1] + "." + l[0])
	return err == nil && ix.svcCIDR.Contains(ip)
}

// inZone reports whether name is zone or below it; both lower case, fully
// qualified.
func inZone(name, zone string) bool {
	return name == zone || strings.HasSuffix(name, "."+zone)
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

func newSOA(zone, domain string, serial uint32) *dns.SOA {
	return &dns.SOA{Hdr: hdr(zone, dns.TypeSOA), Ns: "ns.dns." + domain, Mbox: "hostmaster." + domain,
		Serial: serial, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: ttl}
}
