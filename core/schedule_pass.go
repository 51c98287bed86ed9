package core

import (
	"context"
	"sort"
)

// The scheduling pass: pending pods placed with Scheduler, in batches.

func (c *Controllers) schedule(ctx context.Context, s *snapshot) error {
	usage := Usage(s.pods)
	var pending []*Pod
	for _, p := range s.pods {
		if p.Spec.NodeName == "" && !p.Terminating() && !p.Terminal() {
			pending = append(pending, p)
		}
	}
	// Oldest first, so a waiting pod is not overtaken forever.
	sort.SliceStable(pending, func(i, j int) bool {
		a, b := pending[i].Metadata.CreationTimestamp, pending[j].Metadata.CreationTimestamp
		if a != nil && b != nil && !a.Equal(b.Time) {
			return a.Before(b.Time)
		}
		return pending[i].Metadata.Name < pending[j].Metadata.Name
	})
	sched := &Scheduler{Nodes: NewNodeInfos(s.nodes), Usage: usage, NeedPodCIDR: true}
	for _, p := range pending {
		if len(p.Spec.ClaimNames()) > 0 { // a claim may be missing: the index says so
			sched.volumes = newVolumeIndex(s)
			break
		}
	}
	nodes := map[string]*Node{}
	for _, n := range s.nodes {
		nodes[n.Metadata.Name] = n
	}
	var writes []*Pod
	for _, p := range pending {
		node, why := sched.Schedule(p)
		// A shallow copy: stored objects are never changed in place, so
		// only what this pass changes (node, conditions) needs copying.
		next := &Pod{}
		*next = *p
		next.Status.Conditions = append([]PodCondition(nil), p.Status.Conditions...)
		if node != "" {
			next.Spec.NodeName = node
			next.Status.SetCondition(PodCondition{Type: "PodScheduled", Status: ConditionTrue})
		} else {
			next.Status.Phase = PodPending
			next.Status.SetCondition(PodCondition{Type: "PodScheduled", Status: ConditionFalse, Reason: "Unschedulable", Message: why})
			if JSONEqual(next.Status, p.Status) {
				continue
			}
		}
		writes = append(writes, next)
	}
	// Placements were decided on the snapshot; a pod changed since (deleted,
	// bound elsewhere) is skipped and decided again next pass.
	return c.inBatches(ctx, writes, func(tx Tx, next *Pod) error {
		if cur, err := fresh(tx, next); cur == nil || err != nil {
			return err
		}
		// The pod's claims get their volumes on its node in the same
		// transaction; one changed since the snapshot leaves the pod
		// pending for the next pass.
		for _, claim := range sched.provisions[next.Metadata.UID] {
			if ok, err := provision(tx, claim, nodes[next.Spec.NodeName]); !ok || err != nil {
				return err
			}
		}
		// A claim another pod provisioned in this pass must be bound by
		// now (that pod's write may have been skipped).
		for _, claim := range sched.pinnedClaims[next.Metadata.UID] {
			obj, err := tx.Get(KeyOf(claim))
			if ErrorCode(err) == ENOTFOUND {
				return nil
			} else if err != nil {
				return err
			}
			if !obj.(*PersistentVolumeClaim).Bound() {
				return nil // next pass
			}
		}
		return tx.Put(next)
	})
}
