package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/edgeorch/edge/clusterdns"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/edgeagent"
	"github.com/edgeorch/edge/netproxy"
)

// nodeServices is the node's side of the cluster network: host-gw routes
// to the other nodes' pod subnets and the iptables service proxy
// (netproxy), and the cluster DNS server on the pod bridge's address
// (clusterdns). It implements edgeagent.ServiceProxy.
type nodeServices struct {
	node   string
	hostIP func() string
	cni    *edgeagent.CNI
	log    *slog.Logger
	proxy  *netproxy.Proxy

	mu         sync.Mutex
	dns        *clusterdns.Server
	dnsAddr    string
	domain     string
	hostSearch []string
}

func newNodeServices(node, dataDir string, hostIP func() string, cni *edgeagent.CNI, log *slog.Logger) *nodeServices {
	s := &nodeServices{node: node, hostIP: hostIP, cni: cni, log: log, domain: "cluster.local",
		proxy: &netproxy.Proxy{Node: node, Log: log, StateFile: iptablesStateFile(dataDir)}}
	if _, search, err := clusterdns.HostResolvConf("/etc/resolv.conf"); err == nil {
		s.hostSearch = search
	}
	// A pod reaching a service whose endpoint shares its bridge gets the
	// answer bridged, not routed: only br_netfilter shows it to iptables
	// to undo the DNAT. Raspberry Pi OS does not load it by default.
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		if out, err := exec.Command("modprobe", "br_netfilter").CombinedOutput(); err != nil {
			log.Warn("br_netfilter is not loaded and modprobe failed: a pod may not reach a service endpoint on its own node",
				"err", err, "output", strings.TrimSpace(string(out)))
		}
	}
	return s
}

// Sync implements edgeagent.ServiceProxy: names first (a restarted agent
// has them back in milliseconds, while the rules it takes over still
// work), then routes (a service's endpoints on other nodes must be
// reachable), then the rules.
func (s *nodeServices) Sync(ns *core.NetworkState, local func(string) (bool, bool)) error {
	s.proxy.NodeIP, s.proxy.PodCIDR = s.hostIP(), s.cni.PodCIDR()
	var errs []error
	if err := s.syncDNS(ns, local); err != nil {
		errs = append(errs, err)
	}
	if err := s.proxy.SyncRoutes(ns); err != nil {
		errs = append(errs, err)
	}
	if err := s.proxy.Sync(ns, local); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// dnsIP returns the pod bridge's address: the first of the pod subnet.
func (s *nodeServices) dnsIP() string {
	p, err := netip.ParsePrefix(s.cni.PodCIDR())
	if err != nil {
		return ""
	}
	return p.Masked().Addr().Next().String()
}

// syncDNS starts the DNS server on the bridge address once the pod subnet
// is known (binding it before the bridge exists), moves it if the subnet
// changed, and gives it the new state.
func (s *nodeServices) syncDNS(ns *core.NetworkState, local func(string) (bool, bool)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns.ClusterDomain != "" {
		s.domain = ns.ClusterDomain
	}
	ip := s.dnsIP()
	if ip == "" {
		return nil // no pod subnet yet: no pod to serve
	}
	addr := ip + ":53"
	if s.dns != nil && s.dnsAddr != addr {
		s.dns.Close()
		s.dns = nil
	}
	if s.dns == nil {
		d := &clusterdns.Server{Addr: addr, FreeBind: true, Log: s.log}
		d.Update(ns, local) // before Start: never answer cluster names from nothing
		if err := d.Start(); err != nil {
			return fmt.Errorf("cluster DNS on %s: %w", addr, err)
		}
		s.dns, s.dnsAddr = d, addr
		s.log.Info("cluster DNS serving", "addr", addr)
		return nil
	}
	s.dns.Update(ns, local)
	return nil
}

// resolvConf is the resolv.conf of a pod in namespace.
func (s *nodeServices) resolvConf(namespace string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return clusterdns.ResolvConf(s.dnsIP(), namespace, s.domain, s.hostSearch)
}

// Close stops the DNS server. Rules and routes stay, so services keep
// working while the agent restarts or upgrades.
func (s *nodeServices) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dns != nil {
		s.dns.Close()
		s.dns = nil
	}
}

// iptablesStateFile keeps which iptables tables the node had before the
// agent's first rule.
func iptablesStateFile(dataDir string) string { return filepath.Join(dataDir, "iptables-tables") }

// cleanup removes what the agent made on the node: the service rules,
// host-gw routes and the iptables tables it created (netproxy), the
// hostPort chains CNI's portmap plugin leaves behind, and the pod bridge.
func cleanup(bridge, dataDir string) error {
	var errs []error
	if err := edgeagent.CleanupPortmap(); err != nil {
		errs = append(errs, err)
	}
	if err := (&netproxy.Proxy{StateFile: iptablesStateFile(dataDir)}).Cleanup(); err != nil {
		errs = append(errs, err)
	}
	if l, err := netlink.LinkByName(bridge); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge %s: %w", bridge, err))
		}
	}
	return errors.Join(errs...)
}
