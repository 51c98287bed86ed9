package core

import "fmt"

// Topology spread constraints, as Kubernetes' PodTopologySpread: the
// matching pods of each domain (the nodes sharing a value of TopologyKey)
// may differ by at most MaxSkew. DoNotSchedule filters nodes out;
// ScheduleAnyway only prefers the emptier domains.

const (
	SpreadDoNotSchedule  = "DoNotSchedule"
	SpreadScheduleAnyway = "ScheduleAnyway"
)

type TopologySpreadConstraint struct {
	MaxSkew           int32          `json:"maxSkew"`
	TopologyKey       string         `json:"topologyKey"`
	WhenUnsatisfiable string         `json:"whenUnsatisfiable"`
	LabelSelector     *LabelSelector `json:"labelSelector,omitempty"`
	MinDomains        *int32         `json:"minDomains,omitempty"`
	// NodeAffinityPolicy, NodeTaintsPolicy and MatchLabelKeys are accepted
	// as Kubernetes writes them: domains are the nodes the pod may go to.
	NodeAffinityPolicy *string  `json:"nodeAffinityPolicy,omitempty"`
	NodeTaintsPolicy   *string  `json:"nodeTaintsPolicy,omitempty"`
	MatchLabelKeys     []string `json:"matchLabelKeys,omitempty"`
}

func validateSpread(p string, cs []TopologySpreadConstraint) error {
	var pr problems
	for i, c := range cs {
		cp := fmt.Sprintf("%s[%d]", p, i)
		if c.MaxSkew < 1 {
			pr.add(invalid(cp+".maxSkew", "%d must be at least 1", c.MaxSkew))
		}
		if c.TopologyKey == "" {
			pr.add(invalid(cp+".topologyKey", "required"))
		}
		switch c.WhenUnsatisfiable {
		case SpreadDoNotSchedule, SpreadScheduleAnyway:
		default:
			pr.add(invalid(cp+".whenUnsatisfiable", "%q: must be DoNotSchedule or ScheduleAnyway", c.WhenUnsatisfiable))
		}
		if c.MinDomains != nil && (*c.MinDomains < 1 || c.WhenUnsatisfiable != SpreadDoNotSchedule) {
			pr.add(invalid(cp+".minDomains", "must be at least 1, and only with DoNotSchedule"))
		}
		pr.add(validateSelector(cp+".labelSelector", c.LabelSelector, false))
	}
	return pr.err()
}

// spreadFits checks pod's spread constraints for node n: fits is false
// when a DoNotSchedule constraint's skew would pass MaxSkew; penalty
// counts the ScheduleAnyway ones' excess, for the score. eligible are the
// nodes the pod may go to (its domains); onNode the active pods per node.
func spreadFits(pod *Pod, n *Node, eligible []*NodeInfo, onNode func(string) []*Pod) (fits bool, penalty int) {
	for _, c := range pod.Spec.TopologySpreadConstraints {
		value, ok := n.Metadata.Labels[c.TopologyKey]
		if !ok {
			if c.WhenUnsatisfiable == SpreadDoNotSchedule {
				return false, 0 // a node outside every domain
			}
			continue
		}
		sel := c.LabelSelector
		count := map[string]int{}
		for _, ni := range eligible {
			v, ok := ni.Node.Metadata.Labels[c.TopologyKey]
			if !ok {
				continue
			}
			if _, seen := count[v]; !seen {
				count[v] = 0
			}
			for _, other := range onNode(ni.Node.Metadata.Name) {
				if other.Metadata.Namespace == pod.Metadata.Namespace && !other.Terminating() && !other.Terminal() && sel.Matches(other.Metadata.Labels) {
					count[v]++
				}
			}
		}
		if _, seen := count[value]; !seen {
			count[value] = 0
		}
		least := -1
		for _, k := range count {
			if least < 0 || k < least {
				least = k
			}
		}
		if c.MinDomains != nil && len(count) < int(*c.MinDomains) {
			least = 0 // too few domains: as if the missing ones were empty
		}
		skew := count[value] + 1 - least
		if skew > int(c.MaxSkew) {
			if c.WhenUnsatisfiable == SpreadDoNotSchedule {
				return false, 0
			}
			penalty += skew - int(c.MaxSkew)
		}
	}
	return true, penalty
}
