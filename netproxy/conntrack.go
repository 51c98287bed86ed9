package netproxy

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// flushConntrack deletes the conntrack entries of UDP and SCTP flows that
// the new rules would not fix by themselves, then remembers dgram for next
// time. Such a flow keeps its entry (and so its NAT decision) for as long
// as packets keep coming, which for a DNS client reusing its socket means
// forever:
//
//   - an endpoint that stopped serving a port: every flow whose replies
//     came from its address (DNATed to it, or sent to it directly);
//   - a port that had no endpoint (REJECTed, its entries never DNATed) and
//     now has some, or every port on the first Sync of a Proxy (whatever
//     changed while the agent was away): every flow to its cluster IP,
//     NodePort or LoadBalancer port.
//
// A port that only gained endpoints keeps its flows: they reach live pods.
// The cleanup is best effort, as in kube-proxy: failures are logged, never
// returned.
func (p *Proxy) flushConntrack(dgram map[string]dgramPort) {
	prev := p.dgram
	p.dgram = dgram
	var filters []netlink.CustomConntrackFilter
	gone := map[netip.Addr]uint8{}
	for id, old := range prev {
		for _, ip := range old.backends {
			if !contains(dgram[id].backends, ip) {
				gone[ip] = old.proto
			}
		}
	}
	for ip, proto := range gone {
		f := &netlink.ConntrackFilter{}
		_ = f.AddProtocol(proto)
		_ = f.AddIP(netlink.ConntrackReplySrcIP, net.IP(ip.AsSlice()))
		filters = append(filters, f)
	}
	for id, cur := range dgram {
		if len(cur.backends) == 0 {
			continue
		}
		if old, ok := prev[id]; prev != nil && ok && len(old.backends) > 0 {
			continue
		}
		for _, fe := range cur.frontends {
			f := &netlink.ConntrackFilter{}
			_ = f.AddProtocol(cur.proto)
			if fe.ip.IsValid() {
				_ = f.AddIP(netlink.ConntrackOrigDstIP, net.IP(fe.ip.AsSlice()))
			}
			_ = f.AddPort(netlink.ConntrackOrigDstPort, fe.port)
			filters = append(filters, f)
		}
	}
	if len(filters) == 0 {
		return
	}
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
	if err != nil {
		p.log().Warn("netproxy: conntrack cleanup of UDP/SCTP flows failed; stale flows may stick to gone endpoints until idle",
			"endpointsGone", len(gone), "filters", len(filters), "deleted", n, "err", err)
		return
	}
	if n > 0 {
		p.log().Debug("netproxy: conntrack entries deleted", "count", n, "endpointsGone", len(gone))
	}
}

func contains(addrs []netip.Addr, a netip.Addr) bool {
	for _, b := range addrs {
		if a == b {
			return true
		}
	}
	return false
}
