package netproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/edgeorch/edge/core"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol marks the routes we make (`ip route show proto 237`), so
// SyncRoutes and Cleanup find them again without keeping state. 0xed ("ed"
// for edge) is not in iproute2's rt_protos nor used by a routing daemon we
// know (bird 12, babel 42, bgp 186..192, Calico 80).
const RouteProtocol netlink.RouteProtocol = 0xed

// SyncRoutes makes the host-gw routes: for every other node with a pod
// subnet and an address, `podCIDR via nodeIP` in the main table, and
// removes our routes to nodes that are gone or lost their subnet. The
// node's own subnet is on its bridge, set up by CNI. Nodes must share a
// LAN: the kernel refuses a gateway that is not directly reachable, and the
// error names that node. Routes already right are left alone.
func (p *Proxy) SyncRoutes(st *core.NetworkState) error {
	if st == nil {
		return errors.New("netproxy: routes: no network state")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	type target struct {
		gw   netip.Addr
		link int // for a route on a device, without a gateway
		node string
	}
	want := map[netip.Prefix]target{}
	for _, n := range st.Nodes {
		if n.Name == p.Node || n.PodCIDR == "" || n.IP == "" {
			continue
		}
		dst, err1 := netip.ParsePrefix(n.PodCIDR)
		gw, err2 := netip.ParseAddr(n.IP)
		if err1 != nil || err2 != nil || !dst.Addr().Is4() || !gw.Is4() {
			errs = append(errs, fmt.Errorf("netproxy: route to node %s: pod subnet %q via %q: not IPv4", n.Name, n.PodCIDR, n.IP))
			continue
		}
		if own, err := netip.ParsePrefix(p.PodCIDR); err == nil && own.Overlaps(dst) {
			errs = append(errs, fmt.Errorf("netproxy: route to node %s: its pod subnet %s overlaps this node's %s (a --pod-cidr that disagrees with the master?)", n.Name, dst, own))
			continue
		}
		want[dst.Masked()] = target{gw: gw, node: n.Name}
	}
	have, err := ourRoutes()
	if err != nil {
		return err
	}
	// The node itself reaches cluster IPs through the nat OUTPUT chain,
	// which runs only once the kernel has a route for the destination. A
	// LAN without a default gateway (an air-gapped site) has none for the
	// service range: give it one on the interface holding NodeIP, and DNAT
	// then reroutes to the endpoint. A node with a default route needs none.
	if svc, err := netip.ParsePrefix(st.ServiceCIDR); err == nil && svc.Addr().Is4() {
		if link := linkWith(p.NodeIP); link > 0 {
			ours := false
			for _, r := range have {
				if dst, _ := routeKey(r); dst == svc.Masked() {
					ours = true
				}
			}
			if _, err := netlink.RouteGet(svc.Masked().Addr().Next().AsSlice()); ours || err != nil {
				want[svc.Masked()] = target{link: link, node: "the service range"}
			}
		}
	}
	for _, r := range have {
		dst, gw := routeKey(r)
		if t, ok := want[dst]; ok {
			if t.gw == gw && (t.link == 0 || t.link == r.LinkIndex) {
				delete(want, dst) // already right
			}
			continue // else RouteReplace below changes its gateway
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("netproxy: removing route %s via %s: %w", dst, gw, err))
			continue
		}
		p.log().Info("netproxy: route removed", "dst", dst, "via", gw)
	}
	for dst, t := range want {
		r := &netlink.Route{
			Dst:      &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)},
			Protocol: RouteProtocol,
		}
		if t.link > 0 {
			r.LinkIndex, r.Scope = t.link, netlink.SCOPE_LINK
		} else {
			r.Gw = t.gw.AsSlice()
		}
		if err := netlink.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("netproxy: route to node %s: %s via %s: %w", t.node, dst, t.gw, err))
			continue
		}
		p.log().Info("netproxy: route set", "node", t.node, "dst", dst, "via", t.gw)
	}
	return errors.Join(errs...)
}

// linkWith returns the index of the interface holding address ip (0 if
// none does).
func linkWith(ip string) int {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return 0
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return 0
	}
	for _, x := range addrs {
		if b, ok := netip.AddrFromSlice(x.IP); ok && b.Unmap() == a {
			return x.LinkIndex
		}
	}
	return 0
}

// ourRoutes lists the IPv4 routes of the main table with RouteProtocol. A
// dump that the kernel interrupted (the routes changed meanwhile) may be
// incomplete, so it is retried.
func ourRoutes() ([]netlink.Route, error) {
	var err error
	for range 5 {
		var rs []netlink.Route
		rs, err = netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err == nil {
			return rs, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("netproxy: listing routes of protocol %d: %w", RouteProtocol, err)
}

func routeKey(r netlink.Route) (netip.Prefix, netip.Addr) {
	var dst netip.Prefix
	if r.Dst != nil {
		if a, ok := netip.AddrFromSlice(r.Dst.IP); ok {
			ones, _ := r.Dst.Mask.Size()
			dst = netip.PrefixFrom(a.Unmap(), ones)
		}
	}
	gw, _ := netip.AddrFromSlice(r.Gw)
	return dst, gw.Unmap()
}

// cleanupRoutes deletes every route we made.
func cleanupRoutes() error {
	have, err := ourRoutes()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range have {
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			dst, gw := routeKey(r)
			errs = append(errs, fmt.Errorf("netproxy: removing route %s via %s: %w", dst, gw, err))
		}
	}
	return errors.Join(errs...)
}
