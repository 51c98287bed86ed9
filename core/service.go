package core

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Services: address and port allocation at apply, the endpoints controller
// and the LoadBalancer status, in the style of Kubernetes' service
// registry and endpoints controller.

// LabelManagedBy marks Endpoints the endpoints controller keeps; Endpoints
// applied by hand (for a service without a selector) do not carry it.
const (
	LabelManagedBy    = "endpoints.kubernetes.io/managed-by"
	managedByEndpoint = "endpoint-controller"
)

// allocateService fills in (or checks) svc's cluster IP and node ports
// inside tx. old is the stored version on update, nil on create. A manifest
// that leaves them out keeps what was allocated before; a requested one must
// lie in the configured range and be free.
func allocateService(tx Tx, svc, old *Service, cfg NetworkConfig) error {
	cfg = cfg.orDefault()
	others, err := TxListAs[*Service](tx, KindService, "")
	if err != nil {
		return err
	}
	self := svc.Metadata.Namespace + "/" + svc.Metadata.Name
	ipOwner := map[netip.Addr]string{}
	portOwner := map[string]string{} // "30080/TCP" -> namespace/name
	for _, o := range others {
		key := o.Metadata.Namespace + "/" + o.Metadata.Name
		if key == self {
			continue
		}
		if a, err := netip.ParseAddr(o.Spec.ClusterIP); err == nil {
			ipOwner[a] = key
		}
		for _, p := range o.Spec.Ports {
			if p.NodePort != 0 {
				portOwner[fmt.Sprintf("%d/%s", p.NodePort, p.Protocol)] = key
			}
		}
	}

	// The cluster IP is immutable, as in Kubernetes: routes and DNS caches
	// of every node point at it.
	if old != nil {
		switch {
		case svc.Spec.ClusterIP == "":
			svc.Spec.ClusterIP = old.Spec.ClusterIP
		case svc.Spec.ClusterIP != old.Spec.ClusterIP:
			return invalid("spec.clusterIP", "cannot change from %s to %s; delete the service and apply it again", orNone(old.Spec.ClusterIP), svc.Spec.ClusterIP)
		}
	}
	if svc.Spec.ClusterIP == "" && len(svc.Spec.ClusterIPs) == 1 {
		svc.Spec.ClusterIP = svc.Spec.ClusterIPs[0] // kubectl's newer spelling
	}
	switch ip := svc.Spec.ClusterIP; {
	case ip == ClusterIPNone:
	case ip == "":
		a, ok := freeServiceIP(cfg.ServiceCIDR, ipOwner)
		if !ok {
			return Errorf(ECONFLICT, "spec.clusterIP: every address of the service range %s is taken; delete unused services or widen --service-cidr", cfg.ServiceCIDR)
		}
		svc.Spec.ClusterIP = a.String()
	case old == nil:
		a := netip.MustParseAddr(ip) // validated
		if !cfg.ServiceCIDR.Contains(a) {
			return invalid("spec.clusterIP", "%s is outside the service range %s", ip, cfg.ServiceCIDR)
		}
		if a == cfg.ServiceCIDR.Addr() || a == lastAddr(cfg.ServiceCIDR) {
			return invalid("spec.clusterIP", "%s is the network or broadcast address of the service range %s", ip, cfg.ServiceCIDR)
		}
		if owner := ipOwner[a]; owner != "" {
			return Errorf(ECONFLICT, "spec.clusterIP: %s is already the address of service %s", ip, owner)
		}
	}
	if len(svc.Spec.ClusterIPs) > 0 || (old != nil && len(old.Spec.ClusterIPs) > 0) {
		svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
	}

	// Node ports: NodePort and LoadBalancer services get one per port.
	if svc.Spec.Type == ServiceClusterIP {
		return nil
	}
	key := func(port int32, proto string) string { return fmt.Sprintf("%d/%s", port, proto) }
	// First the ports a manifest names, then the ones a port keeps from
	// before (matched by port and protocol, as Kubernetes does, else by
	// name), then fresh ones: every port of the service gets its own.
	mine := map[string]bool{}
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.NodePort == 0 {
			continue
		}
		path := fmt.Sprintf("spec.ports[%d].nodePort", i)
		if p.NodePort < cfg.NodePortMin || p.NodePort > cfg.NodePortMax {
			return invalid(path, "%d must be in the range %d-%d", p.NodePort, cfg.NodePortMin, cfg.NodePortMax)
		}
		if owner := portOwner[key(p.NodePort, p.Protocol)]; owner != "" {
			return Errorf(ECONFLICT, "%s: %d/%s is already used by service %s; pick another or leave it out to get a free one", path, p.NodePort, p.Protocol, owner)
		}
		mine[key(p.NodePort, p.Protocol)] = true
	}
	if old != nil {
		for i := range svc.Spec.Ports {
			p := &svc.Spec.Ports[i]
			if p.NodePort != 0 {
				continue
			}
			var kept int32
			for _, q := range old.Spec.Ports { // the same port and protocol first
				if q.NodePort != 0 && q.Port == p.Port && q.Protocol == p.Protocol {
					kept = q.NodePort
				}
			}
			for _, q := range old.Spec.Ports {
				if kept == 0 && q.NodePort != 0 && q.Name == p.Name && q.Protocol == p.Protocol {
					kept = q.NodePort
				}
			}
			if kept != 0 && !mine[key(kept, p.Protocol)] {
				p.NodePort = kept
				mine[key(kept, p.Protocol)] = true
			}
		}
	}
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.NodePort != 0 {
			continue
		}
		for port := cfg.NodePortMin; port <= cfg.NodePortMax; port++ {
			if k := key(port, p.Protocol); !mine[k] && portOwner[k] == "" {
				p.NodePort = port
				mine[k] = true
				break
			}
		}
		if p.NodePort == 0 {
			return Errorf(ECONFLICT, "spec.ports[%d].nodePort: every node port %d-%d is taken", i, cfg.NodePortMin, cfg.NodePortMax)
		}
	}
	// A LoadBalancer opens its ports on every node's address: not the
	// master's own (agents would reach a pod instead of the master).
	if svc.Spec.Type == ServiceLoadBalancer {
		for i, p := range svc.Spec.Ports {
			if slices.Contains(cfg.ReservedPorts, p.Port) {
				return invalid(fmt.Sprintf("spec.ports[%d].port", i), "%d is one of the master's own ports; a LoadBalancer opens its ports on every node's address, the master's too (use another port, or a NodePort service)", p.Port)
			}
		}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// freeServiceIP returns the lowest free address of cidr above its tenth
// (manifests written for k3s pin .10, its DNS service, and other low ones
// for fixed uses), skipping each /24's network and broadcast addresses.
func freeServiceIP(cidr netip.Prefix, used map[netip.Addr]string) (netip.Addr, bool) {
	a := cidr.Addr()
	for range 11 {
		a = a.Next()
	}
	last := lastAddr(cidr)
	for ; a.IsValid() && cidr.Contains(a) && a != last; a = a.Next() {
		b := a.As4()
		if b[3] == 0 || b[3] == 255 || used[a] != "" {
			continue
		}
		return a, true
	}
	return netip.Addr{}, false
}

func lastAddr(p netip.Prefix) netip.Addr {
	return uint32IPv4(ipv4Uint(p.Masked().Addr()) | (1<<(32-p.Bits()) - 1))
}

// EndpointsFor computes the Endpoints of a service with a selector from
// the pods of its namespace: every bound, not terminating pod with an IP
// that matches, ready ones under addresses and the rest under
// notReadyAddresses (or all under addresses with
// publishNotReadyAddresses). A named target port resolves through each
// pod's container ports, so pods may differ; pods with the same resolved
// ports share a subset. A pod lacking a named port is left out of the
// ports it lacks.
func EndpointsFor(svc *Service, pods []*Pod) *Endpoints {
	e := &Endpoints{TypeMeta: TypeMeta{APIVersion: "v1", Kind: KindEndpoints},
		Metadata: ObjectMeta{Name: svc.Metadata.Name, Namespace: svc.Metadata.Namespace,
			Labels: map[string]string{LabelManagedBy: managedByEndpoint}},
		Subsets: []EndpointSubset{}}
	subsets := map[string]*EndpointSubset{}
	var order []string
	for _, p := range pods {
		if p.Metadata.Namespace != svc.Metadata.Namespace || p.Spec.NodeName == "" || p.Status.PodIP == "" ||
			p.Terminating() || p.Terminal() || !MatchLabels(svc.Spec.Selector, p.Metadata.Labels) {
			continue
		}
		var ports []EndpointPort
		for _, sp := range svc.Spec.Ports {
			if n := targetPort(sp, p); n != 0 {
				ports = append(ports, EndpointPort{Name: sp.Name, Port: n, Protocol: sp.Protocol})
			}
		}
		if len(ports) == 0 && len(svc.Spec.Ports) > 0 {
			continue
		}
		var key strings.Builder
		for _, port := range ports {
			fmt.Fprintf(&key, "%s=%d/%s,", port.Name, port.Port, port.Protocol)
		}
		sub := subsets[key.String()]
		if sub == nil {
			sub = &EndpointSubset{Ports: ports}
			subsets[key.String()] = sub
			order = append(order, key.String())
		}
		addr := EndpointAddress{IP: p.Status.PodIP, NodeName: p.Spec.NodeName, Hostname: p.Spec.Hostname,
			TargetRef: &ObjectReference{Kind: KindPod, Namespace: p.Metadata.Namespace, Name: p.Metadata.Name, UID: p.Metadata.UID}}
		if p.Ready() || svc.Spec.PublishNotReadyAddresses {
			sub.Addresses = append(sub.Addresses, addr)
		} else {
			sub.NotReadyAddresses = append(sub.NotReadyAddresses, addr)
		}
	}
	sort.Strings(order)
	for _, k := range order {
		sub := subsets[k]
		for _, l := range [][]EndpointAddress{sub.Addresses, sub.NotReadyAddresses} {
			sort.Slice(l, func(i, j int) bool { return l[i].IP < l[j].IP })
		}
		e.Subsets = append(e.Subsets, *sub)
	}
	return e
}

// targetPort resolves a service port's target in pod p: a number as is,
// a name through the pod's container ports, sidecars' too (0 if it has
// none of that name and protocol).
func targetPort(sp ServicePort, p *Pod) int32 {
	if !sp.TargetPort.IsString {
		if sp.TargetPort.IntVal != 0 {
			return sp.TargetPort.IntVal
		}
		return sp.Port
	}
	for _, c := range p.Spec.ContainersAndSidecars() {
		for _, cp := range c.Ports {
			if cp.Name == sp.TargetPort.StrVal && cp.Protocol == sp.Protocol {
				return cp.ContainerPort
			}
		}
	}
	return 0
}

// syncServices keeps each service's Endpoints and each LoadBalancer
// service's ingress list, writing only what changed: one transaction per
// service, so a busy cluster's writes interleave with the API's.
func (c *Controllers) syncServices(ctx context.Context, s *snapshot) error {
	services, endpoints, err := c.serviceObjects(ctx)
	if err != nil {
		return err
	}
	byNS := map[string][]*Pod{}
	for _, p := range s.pods {
		byNS[p.Metadata.Namespace] = append(byNS[p.Metadata.Namespace], p)
	}
	have := map[string]*Endpoints{}
	for _, e := range endpoints {
		have[e.Metadata.Namespace+"/"+e.Metadata.Name] = e
	}
	var ingress []LoadBalancerIngress
	for _, n := range s.nodes {
		if ip := n.InternalIP(); ip != "" && n.Ready() == ConditionTrue {
			ingress = append(ingress, LoadBalancerIngress{IP: ip})
		}
	}
	sort.Slice(ingress, func(i, j int) bool { return ingress[i].IP < ingress[j].IP })
	wanted := map[string]bool{}
	for _, svc := range services {
		key := svc.Metadata.Namespace + "/" + svc.Metadata.Name
		lb := ingress
		if svc.Spec.Type != ServiceLoadBalancer {
			lb = nil // no longer a LoadBalancer: no stale addresses
		}
		if !JSONEqual(svc.Status.LoadBalancer.Ingress, lb) {
			if err := c.Store.Update(ctx, func(tx Tx) error {
				obj, err := tx.Get(KeyOf(svc))
				if err != nil {
					return err
				}
				cur := Clone(obj.(*Service))
				if cur.Metadata.UID != svc.Metadata.UID {
					return nil
				}
				cur.Status.LoadBalancer.Ingress = lb
				return tx.Put(cur)
			}); err != nil && ErrorCode(err) != ENOTFOUND {
				return err
			}
		}
		if len(svc.Spec.Selector) == 0 {
			continue // its Endpoints, if any, are the user's
		}
		wanted[key] = true
		want := EndpointsFor(svc, byNS[svc.Metadata.Namespace])
		if cur := have[key]; cur != nil && JSONEqual(cur.Subsets, want.Subsets) && cur.Metadata.Labels[LabelManagedBy] == managedByEndpoint {
			continue
		}
		if err := c.Store.Update(ctx, func(tx Tx) error {
			obj, err := tx.Get(KeyOf(want))
			if ErrorCode(err) == ENOTFOUND {
				return tx.Create(want)
			} else if err != nil {
				return err
			}
			cur := Clone(obj.(*Endpoints))
			cur.Subsets = want.Subsets
			if cur.Metadata.Labels == nil {
				cur.Metadata.Labels = map[string]string{}
			}
			cur.Metadata.Labels[LabelManagedBy] = managedByEndpoint
			return tx.Put(cur)
		}); err != nil {
			return err
		}
	}
	// Endpoints the controller made for a service that is gone or lost its
	// selector go with it.
	for key, e := range have {
		if wanted[key] || e.Metadata.Labels[LabelManagedBy] != managedByEndpoint {
			continue
		}
		if err := c.Store.Update(ctx, func(tx Tx) error { return tx.Delete(KeyOf(e)) }); err != nil && ErrorCode(err) != ENOTFOUND {
			return err
		}
	}
	return nil
}

func (c *Controllers) serviceObjects(ctx context.Context) ([]*Service, []*Endpoints, error) {
	services, err := ListAs[*Service](ctx, c.Store, KindService, "")
	if err != nil {
		return nil, nil, err
	}
	endpoints, err := ListAs[*Endpoints](ctx, c.Store, KindEndpoints, "")
	return services, endpoints, err
}

// publishNetwork publishes the network view when it changed.
func (c *Controllers) publishNetwork(ctx context.Context) error {
	nodes, err := ListAs[*Node](ctx, c.Store, KindNode, "")
	if err != nil {
		return err
	}
	services, endpoints, err := c.serviceObjects(ctx)
	if err != nil {
		return err
	}
	// A cheap fingerprint of what the state is built from skips building
	// and hashing it on passes where nothing changed.
	var fp strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&fp, "%s=%s@%s,", n.Metadata.Name, n.InternalIP(), n.Spec.PodCIDR)
	}
	for _, s := range services {
		fmt.Fprintf(&fp, "%s@%s,", s.Metadata.UID, s.Metadata.ResourceVersion)
	}
	for _, e := range endpoints {
		fmt.Fprintf(&fp, "%s@%s,", e.Metadata.UID, e.Metadata.ResourceVersion)
	}
	c.mu.Lock()
	same := c.netPrint == fp.String()
	c.mu.Unlock()
	if same {
		return nil
	}
	ns := BuildNetworkState(c.Network, nodes, services, endpoints)
	c.mu.Lock()
	changed := c.netHash != ns.Hash
	c.mu.Unlock()
	if changed {
		if err := c.Bus.PublishNetwork(ctx, ns); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.netHash, c.netPrint = ns.Hash, fp.String()
	c.mu.Unlock()
	return nil
}
