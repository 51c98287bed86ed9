package core

import (
	"context"
	"sort"
	"time"
)

// Cordon marks node unschedulable (or schedulable again). The result says
// what changed, kubectl style ("cordoned", "already cordoned").
func Cordon(ctx context.Context, s Store, node string, unschedulable bool) ([]ApplyResult, error) {
	var results []ApplyResult
	err := s.Update(ctx, func(tx Tx) error {
		r, err := cordon(tx, node, unschedulable)
		results = []ApplyResult{r}
		return err
	})
	return results, err
}

func cordon(tx Tx, node string, unschedulable bool) (ApplyResult, error) {
	r := ApplyResult{Kind: KindNode, Name: node, Action: "cordoned"}
	if !unschedulable {
		r.Action = "uncordoned"
	}
	obj, err := tx.Get(Key{Kind: KindNode, Name: node})
	if err != nil {
		return r, err
	}
	if obj.(*Node).Spec.Unschedulable == unschedulable {
		r.Action = "already " + r.Action
		return r, nil
	}
	n := Clone(obj.(*Node))
	n.Spec.Unschedulable = unschedulable
	return r, tx.Put(n)
}

// Drain cordons node and evicts its pods, as kubectl drain
// --ignore-daemonsets does: DaemonSet pods stay (they would come straight
// back), every other pod is marked terminating for its agent to stop; a
// workload's replacements start elsewhere. Terminating pods are left as
// they are.
func Drain(ctx context.Context, s Store, node string, now time.Time) ([]ApplyResult, error) {
	var results []ApplyResult
	err := s.Update(ctx, func(tx Tx) error {
		r, err := cordon(tx, node, true)
		if err != nil {
			return err
		}
		results = []ApplyResult{r}
		pods, err := tx.PodsOnNode(node)
		if err != nil {
			return err
		}
		sort.Slice(pods, func(i, j int) bool { return pods[i].Metadata.Name < pods[j].Metadata.Name })
		for _, p := range pods {
			if p.Terminating() {
				continue
			}
			if o := p.Owner(); o != nil && o.Kind == KindDaemonSet {
				continue
			}
			if err := terminatePod(tx, p, now); err != nil {
				return err
			}
			results = append(results, ApplyResult{Kind: KindPod, Name: p.Metadata.Name, Action: "evicted"})
		}
		return nil
	})
	return results, err
}

// RegisterNode creates node's object, not yet Ready, if it does not exist:
// a node is listed (and can be deleted) from the moment it joins, not only
// once its agent first reports.
func RegisterNode(ctx context.Context, s Store, node string, now time.Time) error {
	return s.Update(ctx, func(tx Tx) error {
		if _, err := tx.Get(Key{Kind: KindNode, Name: node}); ErrorCode(err) != ENOTFOUND {
			return err
		}
		n := &Node{TypeMeta: TypeMeta{APIVersion: "v1", Kind: KindNode}, Metadata: ObjectMeta{Name: node}}
		n.SetReady(ConditionUnknown, reasonJoined, "joined; the agent has not reported yet", NewTime(now))
		return tx.Create(n)
	})
}

// reasonJoined is the Ready reason of a node that joined and whose agent
// has not reported yet (its first report replaces it).
const reasonJoined = "Joined"

// joinedOnly reports whether n was registered by its join and its agent has
// not reported yet.
func (n *Node) joinedOnly() bool {
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			return c.Reason == reasonJoined
		}
	}
	return false
}

// TaintNode adds (or, with remove, takes away) a taint on node, kubectl
// style: a taint with the same key and effect is replaced. A NoExecute
// taint records when it was added: tolerationSeconds count from then.
func TaintNode(ctx context.Context, s Store, node string, t Taint, remove bool, now time.Time) ([]ApplyResult, error) {
	r := ApplyResult{Kind: KindNode, Name: node, Action: "tainted"}
	if remove {
		r.Action = "untainted"
	}
	err := s.Update(ctx, func(tx Tx) error {
		obj, err := tx.Get(Key{Kind: KindNode, Name: node})
		if err != nil {
			return err
		}
		n := Clone(obj.(*Node))
		var keep []Taint
		found := false
		for _, old := range n.Spec.Taints {
			if old.Key == t.Key && (old.Effect == t.Effect || (remove && t.Effect == "")) {
				found = true
				continue
			}
			keep = append(keep, old)
		}
		if remove && !found {
			return Errorf(ENOTFOUND, "node %q has no taint %s", node, t)
		}
		if !remove {
			if t.Effect == TaintNoExecute {
				t.TimeAdded = NewTime(now)
			}
			keep = append(keep, t)
		}
		n.Spec.Taints = keep
		return tx.Put(n)
	})
	return []ApplyResult{r}, err
}
