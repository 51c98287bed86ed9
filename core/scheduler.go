package core

import (
	"fmt"
	"sort"
	"strings"
)

// Scheduling reasons, as shown in a Pending pod's explanation.
const (
	reasonNotReady      = "not ready"
	reasonUnschedulable = "unschedulable (cordoned)"
	reasonSelector      = "didn't match node selector"
	reasonCPU           = "insufficient cpu"
	reasonPods          = "too many pods"
	reasonMemory        = "insufficient memory"
	reasonNoPodCIDR     = "no pod subnet (the cluster CIDR is full: widen --cluster-cidr)"
	reasonHostPort      = "didn't have free ports for the requested pod ports"
	reasonAffinity      = "didn't match Pod's node affinity"
	reasonAntiAffinity  = "didn't match pod anti-affinity rules"
	reasonSpread        = "didn't match pod topology spread constraints"
	reasonVolumeNode    = "had volume node affinity conflict"
	reasonStorage       = "didn't have enough storage for the pod's claims"
	reasonNoVolumeDir   = "provision no local volumes (agent too old or started without a volume directory)"
)

// NodeUsage is what is already placed on a node.
type NodeUsage struct {
	MilliCPU int64
	Memory   int64
	// Owners counts active pods per controlling owner UID, for spreading.
	Owners map[string]int
	Pods   int
	// HostPorts holds the "port/protocol" pairs pods took on the node.
	HostPorts map[string]bool
	// Active holds the node's pods, for pod anti-affinity.
	Active []*Pod
}

// hostPortKeys lists the "port/protocol" host ports pod takes.
func hostPortKeys(p *Pod) []string {
	var out []string
	for _, c := range p.Spec.ContainersAndSidecars() {
		for _, cp := range c.Ports {
			if cp.HostPort != 0 {
				out = append(out, fmt.Sprintf("%d/%s", cp.HostPort, cp.Protocol))
			}
		}
	}
	if p.Spec.HostNetwork { // its container ports are the node's
		for _, c := range p.Spec.ContainersAndSidecars() {
			for _, cp := range c.Ports {
				if cp.HostPort == 0 {
					out = append(out, fmt.Sprintf("%d/%s", cp.ContainerPort, cp.Protocol))
				}
			}
		}
	}
	return out
}

// Usage sums the requests of the active pods bound to each node.
func Usage(pods []*Pod) map[string]*NodeUsage {
	u := map[string]*NodeUsage{}
	for _, p := range pods {
		if p.Spec.NodeName == "" || p.Terminal() {
			continue
		}
		n := u[p.Spec.NodeName]
		if n == nil {
			n = &NodeUsage{Owners: map[string]int{}}
			u[p.Spec.NodeName] = n
		}
		cpu, mem := p.Spec.Requests()
		n.MilliCPU += cpu
		n.Memory += mem
		n.Pods++
		if o := p.Owner(); o != nil && !p.Terminating() {
			n.Owners[o.UID]++
		}
		for _, k := range hostPortKeys(p) {
			if n.HostPorts == nil {
				n.HostPorts = map[string]bool{}
			}
			n.HostPorts[k] = true
		}
		if !p.Terminating() {
			n.Active = append(n.Active, p)
		}
	}
	return u
}

// Allocatable returns a node's allocatable cpu (millicores) and memory (bytes).
func (n *Node) AllocatableResources() (milliCPU, memory int64) {
	list := n.Status.Allocatable
	if list == nil {
		list = n.Status.Capacity
	}
	milliCPU, _ = list["cpu"].MilliValue()
	memory, _ = list["memory"].Value()
	return
}

// AllocatablePods returns how many pods a node takes (0: not reported).
func (n *Node) AllocatablePods() int64 {
	list := n.Status.Allocatable
	if list == nil {
		list = n.Status.Capacity
	}
	v, _ := list["pods"].Value()
	return v
}

// NodeInfo is what the scheduler needs of a node, computed once per pass.
type NodeInfo struct {
	Node          *Node
	Schedulable   string // "" when pods may go there, else the reason not
	MilliCPU, Mem int64  // allocatable
	Pods          int64  // allocatable pods; 0: no limit reported
	images        map[string]bool
}

// NewNodeInfos prepares nodes for scheduling.
func NewNodeInfos(nodes []*Node) []*NodeInfo {
	out := make([]*NodeInfo, len(nodes))
	for i, n := range nodes {
		ni := &NodeInfo{Node: n, images: map[string]bool{}}
		switch {
		case n.Metadata.DeletionTimestamp != nil || n.Ready() != ConditionTrue:
			ni.Schedulable = reasonNotReady
		case n.Spec.Unschedulable:
			ni.Schedulable = reasonUnschedulable
		}
		ni.MilliCPU, ni.Mem = n.AllocatableResources()
		ni.Pods = n.AllocatablePods()
		for _, img := range n.Status.Images {
			for _, name := range img.Names {
				ni.images[NormalizeImage(name)] = true
			}
		}
		out[i] = ni
	}
	return out
}

// Schedule picks a node for pod; see (*Scheduler).Schedule.
func Schedule(pod *Pod, nodes []*Node, usage map[string]*NodeUsage) (string, string) {
	return (&Scheduler{Nodes: NewNodeInfos(nodes), Usage: usage}).Schedule(pod)
}

// Scheduler places pods on prepared nodes, tracking what it placed.
type Scheduler struct {
	Nodes []*NodeInfo
	Usage map[string]*NodeUsage
	// NeedPodCIDR keeps pods that are not hostNetwork off nodes without a
	// pod subnet (the master's controllers set it; the subnet comes in the
	// same pass that registers a node).
	NeedPodCIDR bool

	volumes    *volumeIndex                        // claims and volumes (nil: pods use none)
	provisions map[string][]*PersistentVolumeClaim // pod uid -> claims to provision where it went
	// pinnedClaims: pod uid -> claims another pod of this pass provisions
	pinnedClaims map[string][]*PersistentVolumeClaim
}

// Schedule picks a node for pod. It filters out nodes that are not Ready,
// are cordoned, do not match the pod's nodeSelector or lack the cpu or
// memory the pod requests, then scores the rest: fewest replicas of the same
// workload first (spreading), then nodes that already hold the images, then
// the least allocated. Ties go to the name that sorts first, so the result is
// deterministic. When no node fits it returns "" and an explanation in the
// style "0/3 nodes available: 2 insufficient memory, 1 didn't match node
// selector". Usage is updated with the placement.
func (sc *Scheduler) Schedule(pod *Pod) (string, string) {
	cpu, mem := pod.Spec.Requests()
	owner := ""
	if o := pod.Owner(); o != nil {
		owner = o.UID
	}
	images := pod.Spec.Images() // init containers' too: a node holding them starts the pod sooner
	for i, img := range images {
		images[i] = NormalizeImage(img)
	}
	ports := hostPortKeys(pod)
	var vols *podVolumes
	if sc.volumes != nil {
		var why string
		if vols, why = sc.volumes.forPod(pod); why != "" {
			return "", why
		}
	}
	reasons := map[string]int{}
	// A spread constraint's domains are the nodes the pod may go to.
	var eligible []*NodeInfo
	if len(pod.Spec.TopologySpreadConstraints) > 0 {
		for _, ni := range sc.Nodes {
			if fits, _ := nodeAffinityFits(pod.Spec.Affinity, ni.Node.Metadata.Labels); fits && ni.Schedulable == "" &&
				MatchLabels(pod.Spec.NodeSelector, ni.Node.Metadata.Labels) {
				eligible = append(eligible, ni)
			}
		}
	}
	nodePods := func(name string) []*Pod {
		if u := sc.Usage[name]; u != nil {
			return u.Active
		}
		return nil
	}
	var best *NodeInfo
	var bestSpread, bestImages, bestPreferred int
	var bestAlloc int64
	for _, ni := range sc.Nodes {
		if ni.Schedulable != "" {
			reasons[ni.Schedulable]++
			continue
		}
		n := ni.Node
		if !MatchLabels(pod.Spec.NodeSelector, n.Metadata.Labels) {
			reasons[reasonSelector]++
			continue
		}
		if n.Spec.PodCIDR == "" && !pod.Spec.HostNetwork && sc.NeedPodCIDR {
			reasons[reasonNoPodCIDR]++
			continue
		}
		if t := untolerated(n, pod.Spec.Tolerations, TaintNoSchedule, TaintNoExecute); t != nil {
			reasons[fmt.Sprintf("had untolerated taint {%s: %s}", t.Key, t.Value)]++
			continue
		}
		fits, preferred := nodeAffinityFits(pod.Spec.Affinity, n.Metadata.Labels)
		if !fits {
			reasons[reasonAffinity]++
			continue
		}
		if vols != nil {
			if r := sc.volumes.fits(vols, n); r != "" {
				reasons[r]++
				continue
			}
		}
		u := sc.Usage[n.Metadata.Name] // once: this loop runs for every node and pod
		var onNode []*Pod
		if u != nil {
			onNode = u.Active
		}
		blocked, antiPenalty := antiAffinity(pod, onNode)
		if blocked {
			reasons[reasonAntiAffinity]++
			continue
		}
		if eligible != nil {
			fits, spreadPenalty := spreadFits(pod, n, eligible, nodePods)
			if !fits {
				reasons[reasonSpread]++
				continue
			}
			antiPenalty += 100 * spreadPenalty
		}
		// Preferences: node affinity weights, minus preferred
		// anti-affinity and PreferNoSchedule taints (100 each).
		preferred -= antiPenalty
		if untolerated(n, pod.Spec.Tolerations, TaintPreferNoSchedule) != nil {
			preferred -= 100
		}
		if u != nil && anyTaken(u.HostPorts, ports) {
			reasons[reasonHostPort]++
			continue
		}
		if u != nil && ni.Pods > 0 && int64(u.Pods) >= ni.Pods {
			reasons[reasonPods]++
			continue
		}
		var usedCPU, usedMem int64
		spread := 0
		if u != nil {
			usedCPU, usedMem = u.MilliCPU, u.Memory
			if owner != "" {
				spread = u.Owners[owner]
			}
		}
		fitCPU := cpu == 0 || usedCPU+cpu <= ni.MilliCPU
		fitMem := mem == 0 || usedMem+mem <= ni.Mem
		if !fitCPU || !fitMem {
			if !fitMem {
				reasons[reasonMemory]++
			}
			if !fitCPU {
				reasons[reasonCPU]++
			}
			continue
		}
		held := 0
		for _, img := range images {
			if ni.images[img] {
				held++
			}
		}
		// Allocation after placement, in thousandths, averaged over cpu and memory.
		var alloc int64
		if ni.MilliCPU > 0 {
			alloc += (usedCPU + cpu) * 1000 / ni.MilliCPU
		}
		if ni.Mem > 0 {
			alloc += (usedMem + mem) * 1000 / ni.Mem
		}
		alloc /= 2
		better := best == nil
		if !better {
			switch {
			case preferred != bestPreferred:
				better = preferred > bestPreferred
			case spread != bestSpread:
				better = spread < bestSpread
			case held != bestImages:
				better = held > bestImages
			case alloc != bestAlloc:
				better = alloc < bestAlloc
			default:
				better = n.Metadata.Name < best.Node.Metadata.Name
			}
		}
		if better {
			best, bestSpread, bestImages, bestAlloc, bestPreferred = ni, spread, held, alloc, preferred
		}
	}
	if best == nil {
		return "", explain(len(sc.Nodes), reasons)
	}
	name := best.Node.Metadata.Name
	u := sc.Usage[name]
	if u == nil {
		u = &NodeUsage{Owners: map[string]int{}}
		sc.Usage[name] = u
	}
	u.MilliCPU += cpu
	u.Memory += mem
	u.Pods++
	if owner != "" {
		u.Owners[owner]++
	}
	for _, k := range ports {
		if u.HostPorts == nil {
			u.HostPorts = map[string]bool{}
		}
		u.HostPorts[k] = true
	}
	u.Active = append(u.Active, pod)
	if vols != nil {
		sc.volumes.place(vols, name)
		sc.volumes.placeOnce(pod)
		if sc.provisions == nil {
			sc.provisions, sc.pinnedClaims = map[string][]*PersistentVolumeClaim{}, map[string][]*PersistentVolumeClaim{}
		}
		sc.provisions[pod.Metadata.UID] = vols.provision
		sc.pinnedClaims[pod.Metadata.UID] = vols.pinnedClaims
	}
	return name, ""
}

func anyTaken(taken map[string]bool, ports []string) bool {
	for _, k := range ports {
		if taken[k] {
			return true
		}
	}
	return false
}

func explain(total int, reasons map[string]int) string {
	if total == 0 {
		return "0/0 nodes available: no nodes have joined the cluster"
	}
	type r struct {
		text string
		n    int
	}
	var rs []r
	for k, v := range reasons {
		rs = append(rs, r{k, v})
	}
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].n != rs[j].n {
			return rs[i].n > rs[j].n
		}
		return rs[i].text < rs[j].text
	})
	parts := make([]string, len(rs))
	for i, x := range rs {
		parts[i] = fmt.Sprintf("%d %s", x.n, x.text)
	}
	return fmt.Sprintf("0/%d nodes available: %s", total, strings.Join(parts, ", "))
}
