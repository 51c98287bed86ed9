package core

import (
	"context"
	"sync"
	"time"
)

// Reports stores what agents report, writing only what changed: an idle
// cluster must not wear out the master's SD card.
type Reports struct {
	Store Store
	Now   func() time.Time
	// DesiredHash receives the desired-state hash each report says its
	// agent acts on (Controllers.CheckDesired); nil: ignored.
	DesiredHash func(node, hash string)
	// MasterVersion is this master's version: an agent it does not serve
	// (CheckAgentVersion) has its node marked NotReady, saying which side
	// to upgrade, and its pods' reports ignored. "": not checked.
	MasterVersion string
	// Known says whether node still has a credential. A report of a node
	// that has none (deleted while its report waited in a queue) is dropped
	// instead of registering the node again. Nil: every node is known.
	Known func(node string) bool

	mu     sync.Mutex
	online map[string]bool // MQTT sessions may announce a node before it registers
}

func (r *Reports) isOnline(node string) bool {
	on, _ := r.Online(node)
	return on
}

// Online says whether node's agent is connected, and whether anything was
// heard of it since this master started (Controllers.Online).
func (r *Reports) Online(node string) (online, known bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	online, known = r.online[node]
	return online, known
}

var _ ReportSink = (*Reports)(nil)

// NodeReport implements ReportSink.
func (r *Reports) NodeReport(ctx context.Context, rep *NodeReport) error {
	now := r.Now()
	if r.Known != nil && !r.Known(rep.Node) {
		return nil
	}
	if r.DesiredHash != nil {
		r.DesiredHash(rep.Node, rep.DesiredHash)
	}
	if r.MasterVersion != "" {
		if err := CheckAgentVersion(r.MasterVersion, rep.Status.NodeInfo.KubeletVersion, rep.Protocol); err != nil {
			return r.refuseSkew(ctx, rep.Node, err, now)
		}
	}
	return r.Store.Update(ctx, func(tx Tx) error {
		obj, err := tx.Get(Key{Kind: KindNode, Name: rep.Node})
		var node *Node
		switch ErrorCode(err) {
		case "":
			node = Clone(obj.(*Node))
		case ENOTFOUND:
			// A node deleted while its agent kept running registers again.
			node = &Node{TypeMeta: TypeMeta{APIVersion: "v1", Kind: KindNode}, Metadata: ObjectMeta{Name: rep.Node}}
		default:
			return err
		}
		changed := false
		if node.Metadata.Labels == nil {
			node.Metadata.Labels = map[string]string{}
		}
		for k, v := range rep.Labels {
			if node.Metadata.Labels[k] != v {
				node.Metadata.Labels[k] = v
				changed = true
			}
		}
		st := rep.Status
		st.Conditions = nodeConditions(node.Status.Conditions, rep.Status.Conditions, NewTime(now))
		if !JSONEqual(st, node.Status) {
			node.Status = st
			changed = true
		}
		if r.isOnline(rep.Node) {
			changed = node.SetReady(ConditionTrue, "AgentReady", "agent is connected", NewTime(now)) || changed
		} else if node.joinedOnly() {
			changed = node.SetReady(ConditionUnknown, "Registered", "agent has not connected yet", NewTime(now)) || changed
		}
		changed = node.prunePrefetch() || changed // images it was asked to fetch and holds now
		if node.Metadata.UID == "" {
			node.SetReady(ConditionUnknown, "Registered", "agent has not connected yet", NewTime(now))
			if r.isOnline(rep.Node) {
				node.SetReady(ConditionTrue, "AgentReady", "agent is connected", NewTime(now))
			}
			if err := tx.Create(node); err != nil {
				return err
			}
		} else if changed {
			node.Metadata.ResourceVersion = ""
			if err := tx.Put(node); err != nil {
				return err
			}
		}

		reported := map[string]*PodReport{}
		for i := range rep.Pods {
			pr := &rep.Pods[i]
			reported[pr.Namespace+"/"+pr.Name] = pr
		}
		pods, err := tx.PodsOnNode(rep.Node) // a node reports only on its own pods
		if err != nil {
			return err
		}
		for _, p := range pods {
			pr := reported[p.Metadata.Namespace+"/"+p.Metadata.Name]
			if pr != nil && pr.UID != p.Metadata.UID {
				pr = nil // an older pod of the same name
			}
			switch {
			case pr == nil && p.Terminating():
				if err := tx.Delete(KeyOf(p)); err != nil {
					return err
				}
			case pr == nil:
				// Not started yet, or lost: the agent will act on its desired state.
			case p.Terminal():
				// A finished pod stays finished, as in Kubernetes: after a
				// reboot its agent may no longer know how it ended (and would
				// say Failed of a Job's succeeded pod).
			default:
				st := pr.Status
				st.Conditions = mergeScheduled(p.Status.Conditions, st.Conditions)
				if !JSONEqual(st, p.Status) {
					next := Clone(p)
					next.Status = st
					if err := tx.Put(next); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
}

// nodeConditions merges a node's stored conditions with those its agent
// reported: Ready is the master's to decide (from the agent's connection),
// every other condition (PreflightPassed) is the agent's. The master stamps
// the transition times: a Pi without a real-time clock may report from 1970.
func nodeConditions(stored, reported []NodeCondition, now *Time) []NodeCondition {
	var out []NodeCondition
	prev := map[string]NodeCondition{}
	for _, c := range stored {
		if c.Type == "Ready" {
			out = append(out, c)
		} else {
			prev[c.Type] = c
		}
	}
	for _, c := range reported {
		if c.Type == "Ready" {
			continue
		}
		c.LastTransitionTime = now
		if p, ok := prev[c.Type]; ok && p.Status == c.Status {
			c.LastTransitionTime = p.LastTransitionTime
		}
		out = append(out, c)
	}
	return out
}

// mergeScheduled keeps the master's PodScheduled condition in a status the
// agent reported.
func mergeScheduled(master, agent []PodCondition) []PodCondition {
	var out []PodCondition
	for _, c := range master {
		if c.Type == "PodScheduled" {
			out = append(out, c)
		}
	}
	for _, c := range agent {
		if c.Type != "PodScheduled" {
			out = append(out, c)
		}
	}
	return out
}

// NodeOnline implements ReportSink: Ready follows the agent's MQTT session.
func (r *Reports) NodeOnline(ctx context.Context, node string, online bool) error {
	now := r.Now()
	r.mu.Lock()
	if r.online == nil {
		r.online = map[string]bool{}
	}
	r.online[node] = online
	r.mu.Unlock()
	return r.Store.Update(ctx, func(tx Tx) error {
		obj, err := tx.Get(Key{Kind: KindNode, Name: node})
		if ErrorCode(err) == ENOTFOUND {
			return nil // it registers with its first report
		} else if err != nil {
			return err
		}
		n := Clone(obj.(*Node))
		var changed bool
		if online && n.joinedOnly() {
			// Joined, never reported: no labels, capacity or system info
			// yet for the scheduler to go by. Its first report (the broker
			// has it as online) makes it Ready.
			return nil
		}
		if online {
			changed = n.SetReady(ConditionTrue, "AgentReady", "agent is connected", NewTime(now))
		} else {
			changed = n.SetReady(ConditionUnknown, "NodeStatusUnknown", "agent connection lost", NewTime(now))
		}
		if !changed {
			return nil
		}
		n.Metadata.ResourceVersion = ""
		return tx.Put(n)
	})
}

// NodeEvents implements ReportSink.
func (r *Reports) NodeEvents(ctx context.Context, node string, events []PodEvent) error {
	now := r.Now()
	if r.Known != nil && !r.Known(node) {
		return nil
	}
	return r.Store.Update(ctx, func(tx Tx) error { return StoreEvents(tx, node, events, now) })
}

// refuseSkew marks a known node NotReady for a version skew; what its
// agent reports is not taken (it may mean something else to this master).
func (r *Reports) refuseSkew(ctx context.Context, node string, skew error, now time.Time) error {
	return r.Store.Update(ctx, func(tx Tx) error {
		obj, err := tx.Get(Key{Kind: KindNode, Name: node})
		if ErrorCode(err) == ENOTFOUND {
			return nil // registers once its version is served
		} else if err != nil {
			return err
		}
		n := Clone(obj.(*Node))
		if !n.SetReady(ConditionFalse, ReasonVersionSkew, versionSkewMessage(skew), NewTime(now)) {
			return nil
		}
		return tx.Put(n)
	})
}
