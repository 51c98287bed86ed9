package core

import (
	"fmt"
	"net/netip"
	"sort"
)

// Cluster networking: each node's pod subnet, the service range, and the
// view of services every agent routes by.

// NetworkConfig is the cluster's address plan, set by master flags.
type NetworkConfig struct {
	// ClusterCIDR holds every pod address; each node gets a subnet of it
	// NodeMaskBits long (k3s: 10.42.0.0/16, a /24 per node).
	ClusterCIDR  netip.Prefix
	NodeMaskBits int
	// ServiceCIDR holds the services' virtual IPs (k3s: 10.43.0.0/16).
	ServiceCIDR netip.Prefix
	// NodePortMin and NodePortMax bound the ports NodePort and
	// LoadBalancer services open on every node (30000-32767).
	NodePortMin, NodePortMax int32
	// ClusterDomain is the DNS suffix of services (cluster.local).
	ClusterDomain string
	// ReservedPorts are the master's own ports (API, MQTT), which a
	// LoadBalancer service may not open on every node's address.
	ReservedPorts []int32
}

// DefaultNetworkConfig is k3s' address plan.
func DefaultNetworkConfig() NetworkConfig {
	return NetworkConfig{
		ClusterCIDR:   netip.MustParsePrefix("10.42.0.0/16"),
		NodeMaskBits:  24,
		ServiceCIDR:   netip.MustParsePrefix("10.43.0.0/16"),
		NodePortMin:   30000,
		NodePortMax:   32767,
		ClusterDomain: "cluster.local",
	}
}

// ParseNetworkConfig checks the master's network flags.
func ParseNetworkConfig(clusterCIDR string, nodeMask int, serviceCIDR string) (NetworkConfig, error) {
	c := DefaultNetworkConfig()
	var err error
	if c.ClusterCIDR, err = netip.ParsePrefix(clusterCIDR); err != nil || !c.ClusterCIDR.Addr().Is4() {
		return c, fmt.Errorf("--cluster-cidr %q: not an IPv4 prefix such as 10.42.0.0/16", clusterCIDR)
	}
	if c.ServiceCIDR, err = netip.ParsePrefix(serviceCIDR); err != nil || !c.ServiceCIDR.Addr().Is4() {
		return c, fmt.Errorf("--service-cidr %q: not an IPv4 prefix such as 10.43.0.0/16", serviceCIDR)
	}
	c.ClusterCIDR, c.ServiceCIDR = c.ClusterCIDR.Masked(), c.ServiceCIDR.Masked()
	if nodeMask < c.ClusterCIDR.Bits() || nodeMask > 28 {
		return c, fmt.Errorf("--node-cidr-mask-size %d: must be between the cluster CIDR's /%d and /28", nodeMask, c.ClusterCIDR.Bits())
	}
	c.NodeMaskBits = nodeMask
	if c.ServiceCIDR.Bits() > 28 {
		return c, fmt.Errorf("--service-cidr %s: too small (at most /28)", serviceCIDR)
	}
	if c.ClusterCIDR.Overlaps(c.ServiceCIDR) {
		return c, fmt.Errorf("--cluster-cidr %s and --service-cidr %s overlap", c.ClusterCIDR, c.ServiceCIDR)
	}
	return c, nil
}

func (c NetworkConfig) orDefault() NetworkConfig {
	if !c.ClusterCIDR.IsValid() {
		return DefaultNetworkConfig()
	}
	return c
}

// nodeSubnets returns how many node subnets the cluster CIDR holds.
func (c NetworkConfig) nodeSubnets() int {
	n := c.NodeMaskBits - c.ClusterCIDR.Bits()
	if n > 20 {
		return 1 << 20
	}
	return 1 << n
}

// nodeSubnet returns the i-th node subnet of the cluster CIDR.
func (c NetworkConfig) nodeSubnet(i int) netip.Prefix {
	v := ipv4Uint(c.ClusterCIDR.Addr()) + uint32(i)<<(32-c.NodeMaskBits)
	return netip.PrefixFrom(uint32IPv4(v), c.NodeMaskBits)
}

func ipv4Uint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func uint32IPv4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// allocatePodCIDRs gives every node without a pod subnet the lowest free
// one. A node keeps its subnet for as long as it exists; deleting the node
// frees it. When the cluster CIDR is full the node is left without one and
// its agent runs only hostNetwork pods (the scheduler says why).
func (c *Controllers) allocatePodCIDRs(tx Tx) error {
	nodes, err := TxListAs[*Node](tx, KindNode, "")
	if err != nil {
		return err
	}
	cfg := c.Network.orDefault()
	used := map[string]bool{}
	var missing []*Node
	for _, n := range nodes {
		if n.Spec.PodCIDR != "" {
			used[n.Spec.PodCIDR] = true
		} else {
			missing = append(missing, n)
		}
	}
	next := 0
	for _, n := range missing {
		for ; next < cfg.nodeSubnets() && used[cfg.nodeSubnet(next).String()]; next++ {
		}
		if next >= cfg.nodeSubnets() {
			return nil
		}
		cp := Clone(n)
		cp.Spec.PodCIDR = cfg.nodeSubnet(next).String()
		used[cp.Spec.PodCIDR] = true
		if err := tx.Put(cp); err != nil {
			return err
		}
	}
	return nil
}

// NetworkState is what every agent routes by: each node's pod subnet and
// address (host-gw routes), and every service with its endpoints (the
// iptables proxy and the node's DNS). The master publishes one, retained,
// for all nodes; agents keep the last one on disk so services keep working
// while the master is away.
type NetworkState struct {
	Hash          string       `json:"hash"`
	ClusterCIDR   string       `json:"clusterCIDR"`
	ServiceCIDR   string       `json:"serviceCIDR"`
	ClusterDomain string       `json:"clusterDomain"`
	Nodes         []NetNode    `json:"nodes"`
	Services      []NetService `json:"services"`
}

// NetNode is one node's place in the pod network.
type NetNode struct {
	Name    string `json:"name"`
	IP      string `json:"ip,omitempty"`
	PodCIDR string `json:"podCIDR,omitempty"`
}

// NetService is a service as a node's proxy and DNS need it.
type NetService struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Type      string `json:"type"`
	// ClusterIP is empty until allocated, "None" when headless.
	ClusterIP string `json:"clusterIP,omitempty"`
	// Ports carry the allocated nodePorts (NodePort and LoadBalancer).
	Ports []ServicePort `json:"ports"`
	// AffinityTimeout is the ClientIP affinity in seconds; 0 means none.
	AffinityTimeout int32 `json:"affinityTimeout,omitempty"`
	// ExternalLocal: NodePort and LoadBalancer traffic only reaches the
	// receiving node's own endpoints, with the client's IP kept.
	ExternalLocal bool `json:"externalLocal,omitempty"`
	// PublishNotReady: pods are endpoints before they are ready (the
	// service's publishNotReadyAddresses), whatever their node sees.
	PublishNotReady bool `json:"publishNotReady,omitempty"`
	// ExternalIPs are addresses the network routes to the nodes; the
	// service's ports answer on them too.
	ExternalIPs []string      `json:"externalIPs,omitempty"`
	Endpoints   []NetEndpoint `json:"endpoints,omitempty"`
}

// NetEndpoint is one pod behind a service.
type NetEndpoint struct {
	IP   string `json:"ip"`
	Node string `json:"node,omitempty"`
	// Pod is the pod's name (headless names resolve to it), PodUID lets a
	// node match its own pods.
	Pod    string `json:"pod,omitempty"`
	PodUID string `json:"podUID,omitempty"`
	// Hostname is the pod's spec.hostname, for headless DNS names.
	Hostname string `json:"hostname,omitempty"`
	// Ports holds, for each of the service's ports in order, the port the
	// pod listens on; 0 where the pod has no such named port.
	Ports []int32 `json:"ports"`
	Ready bool    `json:"ready"`
}

// Validate checks what an agent needs of a network state it is handed: a
// hash and the cluster's two ranges. A state without them is a broken
// message, not a cluster without services.
func (ns *NetworkState) Validate() error {
	if ns.Hash == "" {
		return invalid("hash", "required")
	}
	for _, f := range []struct{ name, v string }{{"clusterCIDR", ns.ClusterCIDR}, {"serviceCIDR", ns.ServiceCIDR}} {
		if p, err := netip.ParsePrefix(f.v); err != nil || !p.Addr().Is4() {
			return invalid(f.name, "%q is not an IPv4 prefix", f.v)
		}
	}
	return nil
}

// Key returns "namespace/name".
func (s *NetService) Key() string { return s.Namespace + "/" + s.Name }

// Serving reports whether endpoint e of s takes traffic on a node: as
// published, unless local (the node's agent, which sees its own pods'
// probes before the master does, and while it is away) knows the pod, and
// s does not publish pods before they are ready. local may be nil.
func (s *NetService) Serving(e *NetEndpoint, local func(podUID string) (ready, known bool)) bool {
	if local != nil && e.PodUID != "" && !s.PublishNotReady {
		if r, known := local(e.PodUID); known {
			return r
		}
	}
	return e.Ready
}

// BuildNetworkState assembles the network view from stored objects.
// Services are sorted by namespace and name, endpoints by IP, so equal
// inputs give equal hashes.
func BuildNetworkState(cfg NetworkConfig, nodes []*Node, services []*Service, endpoints []*Endpoints) *NetworkState {
	cfg = cfg.orDefault()
	ns := &NetworkState{ClusterCIDR: cfg.ClusterCIDR.String(), ServiceCIDR: cfg.ServiceCIDR.String(),
		ClusterDomain: cfg.ClusterDomain, Nodes: []NetNode{}, Services: []NetService{}}
	for _, n := range nodes {
		ns.Nodes = append(ns.Nodes, NetNode{Name: n.Metadata.Name, IP: n.InternalIP(), PodCIDR: n.Spec.PodCIDR})
	}
	sort.Slice(ns.Nodes, func(i, j int) bool { return ns.Nodes[i].Name < ns.Nodes[j].Name })
	eps := map[string]*Endpoints{}
	for _, e := range endpoints {
		eps[e.Metadata.Namespace+"/"+e.Metadata.Name] = e
	}
	for _, s := range services {
		if s.Metadata.DeletionTimestamp != nil {
			continue
		}
		ns.Services = append(ns.Services, netService(s, eps[s.Metadata.Namespace+"/"+s.Metadata.Name]))
	}
	sort.Slice(ns.Services, func(i, j int) bool { return ns.Services[i].Key() < ns.Services[j].Key() })
	ns.Hash = Hash(ns)
	return ns
}

func netService(s *Service, e *Endpoints) NetService {
	ports := make([]ServicePort, len(s.Spec.Ports))
	copy(ports, s.Spec.Ports)
	ns := NetService{Namespace: s.Metadata.Namespace, Name: s.Metadata.Name, Type: s.Spec.Type,
		ClusterIP: s.Spec.ClusterIP, Ports: ports,
		ExternalLocal:   s.Spec.ExternalTrafficPolicy == TrafficPolicyLocal && s.Spec.Type != ServiceClusterIP,
		PublishNotReady: s.Spec.PublishNotReadyAddresses, ExternalIPs: s.Spec.ExternalIPs}
	if s.Spec.SessionAffinity == AffinityClientIP {
		ns.AffinityTimeout = s.AffinityTimeout()
	}
	if e == nil {
		return ns
	}
	// An address may appear in several subsets (one per port set); merge
	// them into one endpoint per IP with a port per service port.
	byIP := map[string]*NetEndpoint{}
	add := func(a EndpointAddress, ready bool, sub EndpointSubset) {
		ep := byIP[a.IP]
		if ep == nil {
			ep = &NetEndpoint{IP: a.IP, Node: a.NodeName, Hostname: a.Hostname, Ports: make([]int32, len(ports)), Ready: ready}
			if a.TargetRef != nil {
				ep.Pod, ep.PodUID = a.TargetRef.Name, a.TargetRef.UID
			}
			byIP[a.IP] = ep
		}
		for i, sp := range ports {
			for _, p := range sub.Ports {
				if p.Name == sp.Name && (p.Protocol == sp.Protocol || p.Protocol == "") {
					ep.Ports[i] = p.Port
				}
			}
		}
	}
	for _, sub := range e.Subsets {
		for _, a := range sub.Addresses {
			add(a, true, sub)
		}
		for _, a := range sub.NotReadyAddresses {
			add(a, false, sub)
		}
	}
	for _, ep := range byIP {
		ns.Endpoints = append(ns.Endpoints, *ep)
	}
	sort.Slice(ns.Endpoints, func(i, j int) bool { return ns.Endpoints[i].IP < ns.Endpoints[j].IP })
	return ns
}
