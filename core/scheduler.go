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
	reasonMemory        = "insufficient memory"
)

// NodeUsage is what is already placed on a node.
type NodeUsage struct {
	MilliCPU int64
	Memory   int64
	// Owners counts active pods per controlling owner UID, for spreading.
	Owners map[string]int
	Pods   int
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

// Schedule picks a node for pod. It filters out nodes that are not Ready,
// are cordoned, do not match the pod's nodeSelector or lack the cpu or
// memory the pod requests, then scores the rest: fewest replicas of the same
// workload first (spreading), then nodes that already hold the images, then
// the least allocated. Ties go to the name that sorts first, so the result is
// deterministic. When no node fits it returns "" and an explanation in the
// style "0/3 nodes available: 2 insufficient memory, 1 didn't match node
// selector". usage is updated with the placement.
func Schedule(pod *Pod, nodes []*Node, usage map[string]*NodeUsage) (string, string) {
	cpu, mem := pod.Spec.Requests()
	reasons := map[string]int{}
	type candidate struct {
		name              string
		spread, images    int
		allocatedPermille int64
	}
	var cands []candidate
	owner := ""
	if o := pod.Owner(); o != nil {
		owner = o.UID
	}
	for _, n := range nodes {
		if n.Metadata.DeletionTimestamp != nil || n.Ready() != ConditionTrue {
			reasons[reasonNotReady]++
			continue
		}
		if n.Spec.Unschedulable {
			reasons[reasonUnschedulable]++
			continue
		}
		if !MatchLabels(pod.Spec.NodeSelector, n.Metadata.Labels) {
			reasons[reasonSelector]++
			continue
		}
		u := usage[n.Metadata.Name]
		if u == nil {
			u = &NodeUsage{Owners: map[string]int{}}
		}
		allocCPU, allocMem := n.AllocatableResources()
		fitCPU := cpu == 0 || u.MilliCPU+cpu <= allocCPU
		fitMem := mem == 0 || u.Memory+mem <= allocMem
		if !fitCPU || !fitMem {
			if !fitMem {
				reasons[reasonMemory]++
			}
			if !fitCPU {
				reasons[reasonCPU]++
			}
			continue
		}
		c := candidate{name: n.Metadata.Name}
		if owner != "" {
			c.spread = u.Owners[owner]
		}
		for _, ctr := range pod.Spec.Containers {
			if n.HasImage(ctr.Image) {
				c.images++
			}
		}
		// Allocation after placement, in thousandths, averaged over cpu and memory.
		var share int64
		if allocCPU > 0 {
			share += (u.MilliCPU + cpu) * 1000 / allocCPU
		}
		if allocMem > 0 {
			share += (u.Memory + mem) * 1000 / allocMem
		}
		c.allocatedPermille = share / 2
		cands = append(cands, c)
	}
	if len(cands) == 0 {
		return "", explain(len(nodes), reasons)
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.spread != b.spread {
			return a.spread < b.spread
		}
		if a.images != b.images {
			return a.images > b.images
		}
		if a.allocatedPermille != b.allocatedPermille {
			return a.allocatedPermille < b.allocatedPermille
		}
		return a.name < b.name
	})
	best := cands[0].name
	u := usage[best]
	if u == nil {
		u = &NodeUsage{Owners: map[string]int{}}
		usage[best] = u
	}
	u.MilliCPU += cpu
	u.Memory += mem
	u.Pods++
	if owner != "" {
		u.Owners[owner]++
	}
	return best, ""
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
