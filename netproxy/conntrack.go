package netproxy

import (
	"net"
	"net/netip"
	"slices"

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
	filters, gone := conntrackFilters(p.dgram, dgram)
	p.dgram = dgram
	if len(filters) == 0 {
		return
	}
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
	if err != nil {
		p.log().Warn("netproxy: conntrack cleanup of UDP/SCTP flows failed; stale flows may stick to gone endpoints until idle",
			"endpointsGone", gone, "filters", len(filters), "deleted", n, "err", err)
		return
	}
	if n > 0 {
		p.log().Debug("netproxy: conntrack entries deleted", "count", n, "endpointsGone", gone)
	}
}

// conntrackFilters returns the filters of the flows to delete when the
// datagram ports go from prev (nil: unknown, a fresh Proxy) to cur, and
// how many endpoint addresses went away.
func conntrackFilters(prev, cur map[string]dgramPort) ([]netlink.CustomConntrackFilter, int) {
	var filters []netlink.CustomConntrackFilter
	type flowsOf struct {
		ip    netip.Addr
		proto uint8
	}
	gone := map[flowsOf]bool{}
	for id, old := range prev {
		for _, ip := range old.backends {
			if !slices.Contains(cur[id].backends, ip) {
				gone[flowsOf{ip, old.proto}] = true
			}
		}
	}
	for g := range gone {
		f := &netlink.ConntrackFilter{}
		_ = f.AddProtocol(g.proto)
		_ = f.AddIP(netlink.ConntrackReplySrcIP, net.IP(g.ip.AsSlice()))
		filters = append(filters, f)
	}
	for id, dp := range cur {
		if len(dp.backends) == 0 {
			continue
		}
		if old, ok := prev[id]; prev != nil && ok && len(old.backends) > 0 {
			continue
		}
		for _, fe := range dp.frontends {
			f := &netlink.ConntrackFilter{}
			_ = f.AddProtocol(dp.proto)
			if fe.ip.IsValid() {
				_ = f.AddIP(netlink.ConntrackOrigDstIP, net.IP(fe.ip.AsSlice()))
			}
			_ = f.AddPort(netlink.ConntrackOrigDstPort, fe.port)
			filters = append(filters, f)
		}
	}
	return filters, len(gone)
}
