package core

import (
	"context"
	"time"
)

// The workload controllers' pass: Deployments and DaemonSets planned on a
// snapshot, written one workload per transaction.

// applyPlan writes p. Pods to delete are read again: one that is gone or
// was replaced by a namesake since the snapshot is left alone.
func (c *Controllers) applyPlan(tx Tx, p Plan, now time.Time) error {
	for _, pod := range p.Create {
		err := tx.Create(pod)
		// Generated names collide now and then (10,000 replicas make it
		// likely): pick another, as Kubernetes does for generateName.
		for try := 0; ErrorCode(err) == ECONFLICT && try < 10; try++ {
			owner := ""
			if o := pod.Owner(); o != nil {
				owner = o.Name
			}
			pod.Metadata.Name = c.NewName(owner, pod.Metadata.Labels[LabelTemplateHash])
			err = tx.Create(pod)
		}
		if err != nil {
			return err
		}
	}
	for _, planned := range p.Delete {
		obj, err := tx.Get(KeyOf(planned))
		if ErrorCode(err) == ENOTFOUND {
			continue
		} else if err != nil {
			return err
		}
		pod := obj.(*Pod)
		if pod.Metadata.UID != planned.Metadata.UID {
			continue
		}
		if pod.Terminal() && !pod.Terminating() {
			if err := tx.Delete(KeyOf(pod)); err != nil {
				return err
			}
			continue
		}
		if err := terminatePod(tx, pod, now); err != nil {
			return err
		}
	}
	return nil
}

// Batch sizes of slow start.
const (
	firstBatch = 32
	maxBatch   = 2000
)

// limitCreates trims plan.Create to the workload's current batch and the
// pass's remaining budget, and grows or resets the batch for next time.
func (c *Controllers) limitCreates(uid string, plan *Plan, budget *int) {
	w := c.window[uid]
	if w == 0 {
		w = firstBatch
	}
	n := min(len(plan.Create), w, *budget)
	switch {
	case len(plan.Create) > n && n == w:
		c.window[uid] = min(2*w, maxBatch) // it took a whole batch and needs more: the next is bigger
	case len(plan.Create) > n:
		c.window[uid] = w // the pass's budget ran out first: the same batch next time
	default:
		delete(c.window, uid)
	}
	plan.Create = plan.Create[:n]
	*budget -= n
}

// writeWorkload applies a workload's plan and status, in transactions of
// at most BatchSize pods so that the API gets in between. Each checks that
// the workload is still what the plan was made from, and stops the write
// if not (the next pass plans again); the last writes the status.
func (c *Controllers) writeWorkload(ctx context.Context, owner Object, plan Plan, status func(Object) (Object, bool), now time.Time) error {
	parts := splitPlan(plan, c.BatchSize)
	for i, part := range parts {
		stale := false
		err := c.Store.Update(ctx, func(tx Tx) error {
			cur, err := tx.Get(KeyOf(owner))
			if ErrorCode(err) == ENOTFOUND {
				stale = true
				return nil
			} else if err != nil {
				return err
			}
			if cur.GetMeta().ResourceVersion != owner.GetMeta().ResourceVersion {
				stale = true
				return nil
			}
			if err := c.applyPlan(tx, part, now); err != nil {
				return err
			}
			if i < len(parts)-1 {
				return nil
			}
			if next, changed := status(cur); changed {
				return tx.Put(next)
			}
			return nil
		})
		if ErrorCode(err) == ECONFLICT || stale {
			return nil // raced with another writer: the next pass sees it
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// splitPlan cuts plan into parts of at most n pods, creates first; there
// is always at least one part (which may be empty: a status-only write).
func splitPlan(plan Plan, n int) []Plan {
	if n <= 0 || len(plan.Create)+len(plan.Delete) <= n {
		return []Plan{plan}
	}
	var parts []Plan
	for len(plan.Create) > 0 {
		k := min(n, len(plan.Create))
		parts = append(parts, Plan{Create: plan.Create[:k]})
		plan.Create = plan.Create[k:]
	}
	for len(plan.Delete) > 0 {
		k := min(n, len(plan.Delete))
		parts = append(parts, Plan{Delete: plan.Delete[:k]})
		plan.Delete = plan.Delete[k:]
	}
	return parts
}

func (c *Controllers) syncWorkloads(ctx context.Context, s *snapshot, now time.Time) error {
	owners := map[string]bool{}
	lost := c.lostPods(s, now)
	isLost := func(p *Pod) bool {
		// Kept originals count again only once their agent has reported.
		return lost[p.Metadata.UID] || p.Status.Reason == ReasonNodeLost
	}
	nodes := map[string]*Node{}
	for _, n := range s.nodes {
		nodes[n.Metadata.Name] = n
	}
	byOwner := podsByOwner(s.pods)
	budget := c.MaxCreatesPerPass
	for _, d := range s.deployments {
		owners[d.Metadata.UID] = true
		name := d.Metadata.Name
		plan, st := PlanDeployment(d, byOwner[d.Metadata.UID], PlanEnv{
			TemplateHash: c.templateHash(d),
			NewName:      func(h string) string { return c.NewName(name, h) },
			Lost:         isLost,
			CanStop:      func(p *Pod) bool { return c.canStop(d, p, nodes[p.Spec.NodeName], now) },
			Now:          now,
		})
		c.limitCreates(d.Metadata.UID, &plan, &budget)
		if len(plan.Create) == 0 && len(plan.Delete) == 0 && JSONEqual(st, d.Status) {
			continue
		}
		err := c.writeWorkload(ctx, d, plan, func(cur Object) (Object, bool) {
			if JSONEqual(st, cur.(*Deployment).Status) {
				return nil, false
			}
			next := Clone(cur.(*Deployment))
			next.Status = st
			return next, true
		}, now)
		if err != nil {
			return err
		}
	}
	for _, ds := range s.daemonsets {
		owners[ds.Metadata.UID] = true
		name := ds.Metadata.Name
		plan, st := PlanDaemonSet(ds, s.nodes, byOwner[ds.Metadata.UID], func(h string) string { return c.NewName(name, "") })
		c.limitCreates(ds.Metadata.UID, &plan, &budget)
		if len(plan.Create) == 0 && len(plan.Delete) == 0 && JSONEqual(st, ds.Status) {
			continue
		}
		err := c.writeWorkload(ctx, ds, plan, func(cur Object) (Object, bool) {
			if JSONEqual(st, cur.(*DaemonSet).Status) {
				return nil, false
			}
			next := Clone(cur.(*DaemonSet))
			next.Status = st
			return next, true
		}, now)
		if err != nil {
			return err
		}
	}
	if err := c.syncStatefulSets(ctx, s, byOwner, owners, &budget, now); err != nil {
		return err
	}
	if err := c.syncCronJobs(ctx, s, now); err != nil {
		return err
	}
	if err := c.syncJobs(ctx, s, now, byOwner, isLost, &budget, owners); err != nil {
		return err
	}
	for uid := range c.window {
		if !owners[uid] {
			delete(c.window, uid)
		}
	}
	c.hashMu.Lock()
	for uid := range c.hashes {
		if !owners[uid] {
			delete(c.hashes, uid)
		}
	}
	c.hashMu.Unlock()
	// Pods whose workload is gone are garbage.
	var orphans []*Pod
	for _, p := range s.pods {
		if o := p.Owner(); o != nil && !owners[o.UID] && !p.Terminating() {
			orphans = append(orphans, p)
		}
	}
	return c.inBatches(ctx, orphans, func(tx Tx, p *Pod) error {
		return c.applyPlan(tx, Plan{Delete: []*Pod{p}}, now)
	})
}

// canStop says whether a ready old pod of d may stop: once its node holds
// the images of d's current template, or it cannot fetch them (not Ready),
// or after PrefetchTimeout since the rollout began.
func (c *Controllers) canStop(d *Deployment, p *Pod, n *Node, now time.Time) bool {
	if n == nil || n.Ready() != ConditionTrue {
		return true
	}
	if h := d.Status.History; len(h) > 0 && h[len(h)-1].Time != nil && now.Sub(h[len(h)-1].Time.Time) > c.PrefetchTimeout {
		return true
	}
	for _, img := range d.Spec.Template.Spec.Images() {
		if !n.HasImage(img) {
			return false
		}
	}
	return true
}

// prefetch returns, per node, the images of rollouts that will replace pods
// there and that the node does not hold yet, after those the node was
// explicitly asked to fetch (AnnotationPrefetch).
func prefetch(deployments []*Deployment, pods []*Pod, nodes []*Node, hash func(*Deployment) string) map[string][]string {
	byName := map[string]*Node{}
	out := map[string][]string{}
	for _, n := range nodes {
		byName[n.Metadata.Name] = n
		for _, img := range n.PrefetchList() {
			if !n.HasImage(img) && !contains(out[n.Metadata.Name], img) {
				out[n.Metadata.Name] = append(out[n.Metadata.Name], img)
			}
		}
	}
	byOwner := podsByOwner(pods)
	for _, d := range deployments {
		hash := hash(d)
		for _, p := range byOwner[d.Metadata.UID] {
			n := byName[p.Spec.NodeName]
			if n == nil || p.Terminating() || p.Metadata.Labels[LabelTemplateHash] == hash {
				continue
			}
			for _, img := range d.Spec.Template.Spec.Images() {
				if !n.HasImage(img) && !contains(out[n.Metadata.Name], img) {
					out[n.Metadata.Name] = append(out[n.Metadata.Name], img)
				}
			}
		}
	}
	return out
}

// podsByOwner groups pods by their controlling owner's UID.
func podsByOwner(pods []*Pod) map[string][]*Pod {
	out := map[string][]*Pod{}
	for _, p := range pods {
		if o := p.Owner(); o != nil {
			out[o.UID] = append(out[o.UID], p)
		}
	}
	return out
}

// templateHash returns d's TemplateHash, computed once per generation: it
// encodes the whole template, and a pass would otherwise do it for every
// deployment twice a second.
func (c *Controllers) templateHash(d *Deployment) string {
	c.hashMu.Lock()
	defer c.hashMu.Unlock()
	if h, ok := c.hashes[d.Metadata.UID]; ok && h.generation == d.Metadata.Generation {
		return h.hash
	}
	h := TemplateHash(&d.Spec.Template)
	c.hashes[d.Metadata.UID] = templateHashEntry{generation: d.Metadata.Generation, hash: h}
	return h
}

type templateHashEntry struct {
	generation int64
	hash       string
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
