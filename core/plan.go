package core

import (
	"context"
	"sort"
	"time"
)

// LabelTemplateHash marks a pod with the hash of the template it was made from.
const LabelTemplateHash = "pod-template-hash"

// Plan is what a controller wants changed: pods to create and pods to delete.
type Plan struct {
	Create []*Pod
	Delete []*Pod
}

// TemplateHash returns the hash that identifies a pod template revision.
func TemplateHash(t *PodTemplateSpec) string { return Hash(t) }

// NewPodFromTemplate makes a pod for owner from template t, whose
// TemplateHash is hash.
func NewPodFromTemplate(owner Object, t *PodTemplateSpec, hash, name string) *Pod {
	m := owner.GetMeta()
	p := &Pod{
		TypeMeta: TypeMeta{APIVersion: "v1", Kind: KindPod},
		Metadata: ObjectMeta{
			Name:        name,
			Namespace:   m.Namespace,
			Labels:      map[string]string{},
			Annotations: map[string]string{},
			OwnerReferences: []OwnerReference{{
				APIVersion: owner.GetTypeMeta().Kind.APIVersion(), Kind: owner.GetTypeMeta().Kind,
				Name: m.Name, UID: m.UID, Controller: true,
			}},
		},
	}
	for k, v := range t.Metadata.Labels {
		p.Metadata.Labels[k] = v
	}
	for k, v := range t.Metadata.Annotations {
		p.Metadata.Annotations[k] = v
	}
	p.Metadata.Labels[LabelTemplateHash] = hash
	// The spec is shared with the template: stored objects are never changed
	// in place, and a thousand replicas need not be a thousand deep copies.
	p.Spec = t.Spec
	p.Status.Phase = PodPending
	return p
}

// OwnedBy returns the pods whose controlling owner has uid.
func OwnedBy(pods []*Pod, uid string) []*Pod {
	var out []*Pod
	for _, p := range pods {
		if o := p.Owner(); o != nil && o.UID == uid {
			out = append(out, p)
		}
	}
	return out
}

// deletionOrder sorts pods so the cheapest to lose come first: unscheduled,
// then not ready, then the youngest.
func deletionOrder(pods []*Pod) {
	rank := func(p *Pod) int {
		switch {
		case p.Spec.NodeName == "":
			return 0
		case !p.Ready():
			return 1
		}
		return 2
	}
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := pods[i], pods[j]
		if rank(a) != rank(b) {
			return rank(a) < rank(b)
		}
		ta, tb := a.Metadata.CreationTimestamp, b.Metadata.CreationTimestamp
		if ta != nil && tb != nil && !ta.Equal(tb.Time) {
			return ta.After(tb.Time)
		}
		return a.Metadata.Name > b.Metadata.Name
	})
}

// PlanEnv is what a deployment plan needs to know of the cluster.
type PlanEnv struct {
	// TemplateHash is the deployment's TemplateHash, if the caller has it.
	TemplateHash string
	// NewName returns a fresh pod name for a template hash.
	NewName func(hash string) string
	// Lost marks pods on unreachable nodes that are kept but must not count.
	Lost func(*Pod) bool
	// CanStop says whether a ready old pod may stop now: not before its node
	// holds the new template's images, so a slow link does not lengthen the
	// outage (nil: always).
	CanStop func(*Pod) bool
	// Now is the time of the pass.
	Now time.Time
}

// PlanDeployment decides which of a deployment's pods to create and delete.
// pods are the pods the deployment owns (any state). It implements the
// RollingUpdate strategy (maxSurge / maxUnavailable) and Recreate, and
// returns the status the deployment should report.
func PlanDeployment(d *Deployment, pods []*Pod, env PlanEnv) (Plan, DeploymentStatus) {
	newName, lost := env.NewName, env.Lost
	canStop := env.CanStop
	if canStop == nil {
		canStop = func(*Pod) bool { return true }
	}
	var plan Plan
	hash := env.TemplateHash
	if hash == "" {
		hash = TemplateHash(&d.Spec.Template)
	}
	desired := d.DesiredReplicas()
	var cur, old []*Pod
	oldTerminating := 0
	for _, p := range pods {
		switch {
		case p.Terminating():
			if p.Metadata.Labels[LabelTemplateHash] != hash {
				oldTerminating++
			}
		case lost != nil && lost(p):
			// Kept for its node's return, replaced meanwhile.
		case p.Terminal():
			plan.Delete = append(plan.Delete, p) // replaced below
		case p.Metadata.Labels[LabelTemplateHash] == hash:
			cur = append(cur, p)
		default:
			old = append(old, p)
		}
	}
	ready := func(ps []*Pod) int {
		n := 0
		for _, p := range ps {
			if p.Ready() {
				n++
			}
		}
		return n
	}
	create := func(n int) {
		for i := 0; i < n; i++ {
			plan.Create = append(plan.Create, NewPodFromTemplate(d, &d.Spec.Template, hash, newName(hash)))
		}
	}
	status := DeploymentStatus{ObservedGeneration: d.Metadata.Generation, TemplateHash: hash}

	switch {
	case len(old) == 0 && d.Spec.Strategy.Type == StrategyRecreate && oldTerminating > 0:
		// Recreate: wait until every old pod is gone before starting new ones.
	case len(old) == 0:
		if len(cur) < desired {
			create(desired - len(cur))
		} else if len(cur) > desired {
			deletionOrder(cur)
			plan.Delete = append(plan.Delete, cur[:len(cur)-desired]...)
		}
	case d.Spec.Strategy.Type == StrategyRecreate:
		waiting := false
		for _, p := range old {
			if p.Ready() && !canStop(p) {
				waiting = true // its node is still fetching the new image
			}
		}
		if !waiting {
			plan.Delete = append(plan.Delete, old...)
			if len(cur) > 0 {
				plan.Delete = append(plan.Delete, cur...)
			}
		}
	default:
		surge, unavail := 1, 0
		if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
			if ru.MaxSurge != nil {
				surge, _ = ru.MaxSurge.Scaled(desired, true)
			}
			if ru.MaxUnavailable != nil {
				unavail, _ = ru.MaxUnavailable.Scaled(desired, false)
			}
		}
		if surge == 0 && unavail == 0 {
			unavail = 1
		}
		if len(cur) > desired {
			deletionOrder(cur)
			plan.Delete = append(plan.Delete, cur[:len(cur)-desired]...)
			cur = cur[len(cur)-desired:]
		}
		total := len(cur) + len(old)
		if up := min(desired-len(cur), desired+surge-total); up > 0 {
			create(up)
		}
		// Old pods that are not ready cost no availability: remove them first.
		minAvailable := desired - unavail
		canRemove := ready(cur) + ready(old) - minAvailable
		deletionOrder(old)
		for _, p := range old {
			if !p.Ready() {
				plan.Delete = append(plan.Delete, p)
			} else if canRemove > 0 && canStop(p) {
				canRemove--
				plan.Delete = append(plan.Delete, p)
			}
		}
	}
	status.History = recordRevision(d, hash, env.Now)
	active := append(append([]*Pod{}, cur...), old...)
	status.Replicas = int32(len(active))
	status.UpdatedReplicas = int32(len(cur))
	status.ReadyReplicas = int32(ready(active))
	status.AvailableReplicas = status.ReadyReplicas
	return plan, status
}

// DaemonSetNodes returns the nodes a DaemonSet must run on: matching, and
// with a pod subnet unless its pods use the node's network (a full cluster
// CIDR leaves a new node without one).
func DaemonSetNodes(ds *DaemonSet, nodes []*Node) []*Node {
	var out []*Node
	for _, n := range nodes {
		spec := &ds.Spec.Template.Spec
		fits, _ := nodeAffinityFits(spec.Affinity, n.Metadata.Labels)
		if n.Metadata.DeletionTimestamp == nil && MatchLabels(spec.NodeSelector, n.Metadata.Labels) && fits &&
			(n.Spec.PodCIDR != "" || spec.HostNetwork) && untolerated(n, spec.Tolerations, TaintNoSchedule, TaintNoExecute) == nil {
			out = append(out, n)
		}
	}
	return out
}

// PlanDaemonSet keeps exactly one current pod on every matching node. A
// template change replaces pods one node at a time (maxUnavailable 1).
func PlanDaemonSet(ds *DaemonSet, nodes []*Node, pods []*Pod, newName func(hash string) string) (Plan, DaemonSetStatus) {
	var plan Plan
	hash := TemplateHash(&ds.Spec.Template)
	want := map[string]bool{}
	for _, n := range DaemonSetNodes(ds, nodes) {
		want[n.Metadata.Name] = true
	}
	byNode := map[string][]*Pod{}
	replacing := 0
	for _, p := range pods {
		if p.Terminating() {
			if want[p.Spec.NodeName] {
				replacing++
			}
			continue
		}
		if p.Terminal() {
			plan.Delete = append(plan.Delete, p)
			continue
		}
		byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
	}
	// A node whose current pod is yet to be created or to become ready is
	// still being replaced: no other node's stale pod stops meanwhile.
	for node := range want {
		if len(byNode[node]) == 0 {
			replacing++
		}
		for _, p := range byNode[node] {
			if p.Metadata.Labels[LabelTemplateHash] == hash && !p.Ready() {
				replacing++
			}
		}
	}
	st := DaemonSetStatus{ObservedGeneration: ds.Metadata.Generation, DesiredNumberScheduled: int32(len(want))}
	names := make([]string, 0, len(byNode)+len(want))
	for n := range want {
		names = append(names, n)
	}
	for n := range byNode {
		if !want[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, node := range names {
		ps := byNode[node]
		if !want[node] {
			plan.Delete = append(plan.Delete, ps...)
			continue
		}
		var current, stale []*Pod
		for _, p := range ps {
			if p.Metadata.Labels[LabelTemplateHash] == hash {
				current = append(current, p)
			} else {
				stale = append(stale, p)
			}
		}
		if len(current) > 1 {
			deletionOrder(current)
			plan.Delete = append(plan.Delete, current[:len(current)-1]...)
			current = current[len(current)-1:]
		}
		switch {
		case len(current) == 1:
			plan.Delete = append(plan.Delete, stale...)
			st.CurrentNumberScheduled++
			st.UpdatedNumberScheduled++
			if current[0].Ready() {
				st.NumberReady++
				st.NumberAvailable++
			}
		case len(stale) > 0:
			st.CurrentNumberScheduled++
			if stale[0].Ready() {
				st.NumberReady++
				st.NumberAvailable++
			}
			if ds.Spec.UpdateStrategy.Type != DaemonSetOnDelete && replacing < ds.maxUnavailable(len(want)) {
				replacing++
				plan.Delete = append(plan.Delete, stale...)
			}
		default:
			hasTerminating := false
			for _, p := range pods {
				if p.Terminating() && p.Spec.NodeName == node {
					hasTerminating = true
				}
			}
			if !hasTerminating {
				p := NewPodFromTemplate(ds, &ds.Spec.Template, hash, newName(hash))
				p.Spec.NodeName = node
				plan.Create = append(plan.Create, p)
			}
		}
	}
	return plan, st
}

// recordRevision returns the deployment's history with the current
// template last, trimmed to revisionHistoryLimit (default 10) old ones.
func recordRevision(d *Deployment, hash string, now time.Time) []Revision {
	h := append([]Revision(nil), d.Status.History...)
	if n := len(h); n > 0 && h[n-1].Hash == hash {
		return h
	}
	var next int64 = 1
	if n := len(h); n > 0 {
		next = h[n-1].Revision + 1
	}
	// Returning to an older template moves it to the end, as kubectl does.
	for i := 0; i < len(h); i++ {
		if h[i].Hash == hash {
			h = append(h[:i], h[i+1:]...)
			i--
		}
	}
	h = append(h, Revision{Revision: next, Hash: hash, Template: d.Spec.Template, Time: NewTime(now)})
	limit := 10
	if d.Spec.RevisionHistoryLimit != nil {
		limit = int(*d.Spec.RevisionHistoryLimit)
	}
	if len(h) > limit+1 {
		h = h[len(h)-limit-1:]
	}
	return h
}

// Undo sets a deployment's template back to revision toRevision, or to the
// one before the current when toRevision is 0. It returns the revision
// rolled back to.
func Undo(ctx context.Context, s Store, k Key, toRevision int64) (int64, error) {
	var rev int64
	err := s.Update(ctx, func(tx Tx) error {
		obj, err := tx.Get(k)
		if err != nil {
			return err
		}
		d := Clone(obj.(*Deployment))
		h := d.Status.History
		var target *Revision
		switch {
		case toRevision == 0 && len(h) < 2:
			return Errorf(EINVALID, "%s has no previous revision to roll back to", k)
		case toRevision == 0:
			target = &h[len(h)-2]
		default:
			for i := range h {
				if h[i].Revision == toRevision {
					target = &h[i]
				}
			}
			if target == nil {
				return Errorf(ENOTFOUND, "%s has no revision %d (see rollout history)", k, toRevision)
			}
		}
		rev = target.Revision
		if TemplateHash(&target.Template) == TemplateHash(&d.Spec.Template) {
			return nil // already there
		}
		d.Spec.Template = target.Template
		return tx.Put(d)
	})
	return rev, err
}
