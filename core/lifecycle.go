package core

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Node lifecycle: nodes that stop answering, their pods' readiness, and
// when their replicas move elsewhere.

// AnnotationNodeLostGrace overrides, per workload, how long a node may be
// unreachable before its replicas are replaced elsewhere ("30", seconds).
const AnnotationNodeLostGrace = "edge.io/node-lost-grace-seconds"

// AnnotationReconnectPolicy says, per workload, which replicas survive when
// a partitioned node returns (Nomad's disconnect reconcile modes):
// ReconnectKeepReplacement (default) stops the returning node's originals;
// ReconnectKeepOriginal keeps them and stops the replacements.
const AnnotationReconnectPolicy = "edge.io/reconnect-policy"

const (
	ReconnectKeepReplacement = "keep-replacement"
	ReconnectKeepOriginal    = "keep-original"
)

// ReasonNodeLost marks a kept pod whose node is unreachable.
const ReasonNodeLost = "NodeLost"

// nodeLostGrace returns the grace for a pod, honouring the annotation of its
// template (copied to the pod), else its NoExecute toleration of an
// unreachable or not-ready node, Kubernetes' spelling of the same thing
// (without tolerationSeconds: forever).
func (c *Controllers) nodeLostGrace(p *Pod) time.Duration {
	if v, ok := p.Metadata.Annotations[AnnotationNodeLostGrace]; ok {
		if d, err := time.ParseDuration(v + "s"); err == nil && d >= 0 {
			return d
		}
	}
	for _, key := range []string{TaintNodeUnreachable, TaintNodeNotReady} {
		for _, tol := range p.Spec.Tolerations {
			if tol.Tolerates(Taint{Key: key, Effect: TaintNoExecute}) {
				if tol.TolerationSeconds == nil {
					return time.Duration(math.MaxInt64)
				}
				return time.Duration(max(*tol.TolerationSeconds, 0)) * time.Second
			}
		}
	}
	return c.NodeLostGrace
}

// evictAt returns when a pod on n must go for n's NoExecute taints: now
// for a taint it does not tolerate, tolerationSeconds after the taint (or
// the pod, if it came later: a pod pinned to a tainted node gets its own
// time) for one it tolerates for a while, the shortest of them as in
// Kubernetes; zero when it may stay.
func evictAt(p *Pod, n *Node, started time.Time) (time.Time, *Taint) {
	var at time.Time
	var why *Taint
	for i, t := range n.Spec.Taints {
		if t.Effect != TaintNoExecute {
			continue
		}
		added := started
		if t.TimeAdded != nil {
			added = t.TimeAdded.Time
		}
		if c := p.Metadata.CreationTimestamp; c != nil && c.After(added) {
			added = c.Time
		}
		var tolerated *Toleration
		forever := false
		for j, tol := range p.Spec.Tolerations {
			if !tol.Tolerates(t) {
				continue
			}
			if tol.TolerationSeconds == nil {
				forever = true
				continue
			}
			if tolerated == nil || *tol.TolerationSeconds < *tolerated.TolerationSeconds {
				tolerated = &p.Spec.Tolerations[j]
			}
		}
		if forever && tolerated == nil {
			continue // tolerated for ever
		}
		when := added
		if tolerated != nil {
			when = added.Add(time.Duration(max(*tolerated.TolerationSeconds, 0)) * time.Second)
		}
		if at.IsZero() || when.Before(at) {
			at, why = when, &n.Spec.Taints[i]
		}
	}
	return at, why
}

// nodeSince returns since when node n has not been Ready, counting a loss
// from before this master started from the end of its startup grace.
func (c *Controllers) nodeSince(n *Node) *Time {
	since := n.Metadata.CreationTimestamp
	for _, cond := range n.Status.Conditions {
		if cond.Type == "Ready" && cond.LastTransitionTime != nil {
			since = cond.LastTransitionTime
		}
	}
	if since != nil && since.Before(c.started) {
		since = NewTime(c.started.Add(c.StartupGrace))
	}
	return since
}

// lostPods returns the UIDs of Deployment and Job pods whose node has been
// unreachable for longer than the pod's node-lost grace.
func (c *Controllers) lostPods(s *snapshot, now time.Time) map[string]bool {
	nodes := map[string]*Node{}
	for _, n := range s.nodes {
		nodes[n.Metadata.Name] = n
	}
	lost := map[string]bool{}
	for _, p := range s.pods {
		n := nodes[p.Spec.NodeName]
		if n == nil || p.Terminating() || p.Terminal() || n.Ready() == ConditionTrue {
			continue
		}
		if o := p.Owner(); o == nil || (o.Kind != KindDeployment && o.Kind != KindJob) {
			continue // DaemonSet pods and bare pods stay with their node.
		}
		if since := c.nodeSince(n); since != nil && now.Sub(since.Time) >= c.nodeLostGrace(p) {
			lost[p.Metadata.UID] = true
		}
	}
	return lost
}

// ReasonNodeNotReady marks the Ready condition of a pod whose node does
// not answer: it may well run, but nobody can vouch for it.
const ReasonNodeNotReady = "NodeNotReady"

func (c *Controllers) syncNodeLifecycle(ctx context.Context, s *snapshot, now time.Time) error {
	nodes := map[string]*Node{}
	var unknown []*Node
	for _, n := range s.nodes {
		nodes[n.Metadata.Name] = n
		// A node Ready before this master started, whose agent has not come
		// back within the startup grace, is no longer known to be alive.
		if c.Online != nil && n.Ready() == ConditionTrue && now.Sub(c.started) >= c.StartupGrace {
			if _, known := c.Online(n.Metadata.Name); !known {
				unknown = append(unknown, n)
			}
		}
	}
	for _, n := range unknown {
		err := c.Store.Update(ctx, func(tx Tx) error {
			obj, err := tx.Get(KeyOf(n))
			if err != nil || obj.GetMeta().ResourceVersion != n.Metadata.ResourceVersion {
				return err
			}
			next := Clone(n)
			next.SetReady(ConditionUnknown, "NodeStatusUnknown", "agent did not reconnect after the master restarted", NewTime(now))
			return tx.Put(next)
		})
		if err != nil && ErrorCode(err) != ECONFLICT && ErrorCode(err) != ENOTFOUND {
			return err
		}
	}
	var gone, lostPods, notReady, evicted []*Pod
	lost := c.lostPods(s, now)
	for _, p := range s.pods {
		n := nodes[p.Spec.NodeName]
		if n != nil && len(n.Spec.Taints) > 0 && !p.Terminal() && !p.Terminating() {
			if at, _ := evictAt(p, n, c.started); !at.IsZero() && !now.Before(at) {
				evicted = append(evicted, p)
				continue
			}
		}
		switch {
		case p.Spec.NodeName == "":
		case n == nil:
			gone = append(gone, p) // the node was deleted: nobody can confirm a stop
		case lost[p.Metadata.UID]:
			lostPods = append(lostPods, p)
		case n.Ready() != ConditionTrue && !p.Terminal() && !p.Terminating():
			if cond := p.Status.Condition("Ready"); cond == nil || cond.Status != ConditionFalse || cond.Reason != ReasonNodeNotReady {
				notReady = append(notReady, p)
			}
		}
	}
	if err := c.inBatches(ctx, gone, func(tx Tx, p *Pod) error {
		if cur, err := fresh(tx, p); cur == nil || err != nil {
			return err
		}
		return tx.Delete(KeyOf(p))
	}); err != nil {
		return err
	}
	// NoExecute taints evict what does not tolerate them (for longer).
	if err := c.inBatches(ctx, evicted, func(tx Tx, p *Pod) error {
		cur, err := fresh(tx, p)
		if cur == nil || err != nil {
			return err
		}
		obj, err := tx.Get(Key{Kind: KindNode, Name: p.Spec.NodeName})
		if err != nil {
			return err
		}
		_, t := evictAt(cur, obj.(*Node), c.started)
		if t == nil {
			return nil // untainted since the snapshot
		}
		if err := RecordEvent(tx, cur, EventWarning, "TaintManagerEviction", fmt.Sprintf("evicted: node %q has taint {%s}", p.Spec.NodeName, t), now); err != nil {
			return err
		}
		return terminatePod(tx, cur, now)
	}); err != nil {
		return err
	}
	if err := c.inBatches(ctx, lostPods, func(tx Tx, p *Pod) error {
		cur, err := freshOnDownNode(tx, p)
		if cur == nil || err != nil {
			return err
		}
		if p.Metadata.Annotations[AnnotationReconnectPolicy] != ReconnectKeepOriginal {
			return terminatePod(tx, cur, now)
		}
		if cur.Status.Reason == ReasonNodeLost {
			return nil
		}
		next := Clone(cur)
		next.Status.Phase = PodUnknown
		next.Status.Reason = ReasonNodeLost
		next.Status.Message = fmt.Sprintf("node %q is unreachable; kept for its return (%s)", p.Spec.NodeName, AnnotationReconnectPolicy)
		markNotReady(next)
		return tx.Put(next)
	}); err != nil {
		return err
	}
	// Until its node answers again, a pod is not Ready (as in Kubernetes):
	// rollouts stop counting on it; its agent's next report sets it again.
	return c.inBatches(ctx, notReady, func(tx Tx, p *Pod) error {
		cur, err := freshOnDownNode(tx, p)
		if cur == nil || err != nil {
			return err
		}
		next := Clone(cur)
		markNotReady(next)
		return tx.Put(next)
	})
}

// freshOnDownNode is fresh, and nil too if p's node is Ready again: its
// return may have been stored after the snapshot this pass planned on, and
// its agent's report (the same status as before it left) changes nothing
// that would undo a mark made now.
func freshOnDownNode(tx Tx, p *Pod) (*Pod, error) {
	cur, err := fresh(tx, p)
	if cur == nil || err != nil {
		return nil, err
	}
	obj, err := tx.Get(Key{Kind: KindNode, Name: p.Spec.NodeName})
	if ErrorCode(err) == ENOTFOUND {
		return cur, nil
	} else if err != nil {
		return nil, err
	}
	if obj.(*Node).Ready() == ConditionTrue {
		return nil, nil
	}
	return cur, nil
}

func markNotReady(p *Pod) {
	p.Status.SetCondition(PodCondition{Type: "Ready", Status: ConditionFalse, Reason: ReasonNodeNotReady,
		Message: fmt.Sprintf("node %q is not ready", p.Spec.NodeName)})
}
