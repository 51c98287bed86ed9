package core

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"
)

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

// Controllers is the master's control loop: the Deployment and DaemonSet
// controllers, the scheduler, node lifecycle and the publisher of each
// node's desired state. Every pass is a deterministic function of the store
// and the clock; the goroutine started by Open only decides when to run one.
type Controllers struct {
	Store Store
	Bus   Bus
	Log   *slog.Logger
	Now   func() time.Time
	// NodeLostGrace is how long a node may be NotReady before its Deployment
	// pods are replaced (default 5s).
	NodeLostGrace time.Duration
	// PrefetchTimeout bounds how long a rollout waits for a node to fetch
	// the new image before stopping an old pod there anyway (default 5m).
	PrefetchTimeout time.Duration
	// Resync is the period of passes without store events (default 1s); it
	// drives time-based decisions such as node-lost grace.
	Resync time.Duration
	// NewName returns a pod name for a workload and template hash.
	NewName func(owner, hash string) string
	// Online says whether a node's agent is connected; known is false when
	// nothing was heard of it since this master started. Nil: all known.
	Online func(node string) (online, known bool)
	// StartupGrace is how long after the master starts an agent has to
	// reconnect before its node turns Unknown (default 30s): a restarted
	// master has lost every session of its embedded broker.
	StartupGrace time.Duration
	// MaxCreatesPerPass bounds the pods one pass creates, all workloads
	// together (default 500); each workload starts with a batch of 32 and
	// doubles it while it keeps needing more (Kubernetes' slow start), so a
	// huge scale-up is spread over passes the API can interleave with.
	MaxCreatesPerPass int
	// BatchSize bounds the writes of one transaction when scheduling or
	// marking pods (default 500): no pass holds the store's write lock for
	// longer than one batch.
	BatchSize int

	started      time.Time
	window       map[string]int // workload uid -> its next creation batch
	once         sync.Once
	mu           sync.Mutex
	published    map[string]string    // node -> hash of the last published desired state
	publishedAt  map[string]time.Time // node -> when it was (re)published
	fingerprints map[string]string    // node -> pod uids@resourceVersions behind it
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	kick         chan struct{}
}

// Open starts the control loop.
func (c *Controllers) Open() {
	c.init()
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Add(1)
	go c.run(ctx)
}

func (c *Controllers) init() {
	c.once.Do(c.setDefaults)
}

func (c *Controllers) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.NodeLostGrace == 0 {
		c.NodeLostGrace = 5 * time.Second
	}
	if c.Resync == 0 {
		c.Resync = time.Second
	}
	if c.NewName == nil {
		c.NewName = RandomPodName
	}
	if c.StartupGrace == 0 {
		c.StartupGrace = 30 * time.Second
	}
	if c.PrefetchTimeout == 0 {
		c.PrefetchTimeout = 5 * time.Minute
	}
	if c.MaxCreatesPerPass == 0 {
		c.MaxCreatesPerPass = 500
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	c.window = map[string]int{}
	c.started = c.Now()
	c.published = map[string]string{}
	c.publishedAt = map[string]time.Time{}
	c.fingerprints = map[string]string{}
	c.kick = make(chan struct{}, 1)
}

// Close stops the loop and waits for it. It is idempotent.
func (c *Controllers) Close() {
	if c.cancel != nil {
		c.cancel()
		c.wg.Wait()
	}
}

// Kick asks for a pass soon.
func (c *Controllers) Kick() {
	c.init()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Controllers) run(ctx context.Context) {
	defer c.wg.Done()
	events, stop := c.Store.Watch()
	defer func() { stop() }()
	tick := time.NewTicker(c.Resync)
	defer tick.Stop()
	failures := 0
	for {
		start := time.Now()
		err := c.Sync(ctx)
		took := time.Since(start)
		if err != nil && ctx.Err() == nil {
			failures++
			if failures == 1 || failures%60 == 0 {
				c.Log.Error("control loop pass failed", "err", err, "failures", failures)
			}
		} else if failures > 0 {
			c.Log.Info("control loop recovered", "after", failures)
			failures = 0
		}
		// Under load a pass costs real time: leave at least as much to the
		// API and to the agents' reports before the next one.
		if pause := min(took, time.Second); pause > 10*time.Millisecond {
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
		}
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events, stop = c.Store.Watch()
			}
			// Coalesce a burst of events (one apply makes many) into one pass.
			debounce := time.NewTimer(2 * time.Millisecond)
		drain:
			for {
				select {
				case _, ok := <-events:
					if !ok {
						break drain
					}
				case <-debounce.C:
					break drain
				case <-ctx.Done():
					debounce.Stop()
					return
				}
			}
		case <-c.kick:
		case <-tick.C:
		}
	}
}

// snapshot is everything one pass looks at: read from the store's cache
// without a transaction, so planning holds no lock at all.
type snapshot struct {
	nodes       []*Node
	pods        []*Pod
	deployments []*Deployment
	daemonsets  []*DaemonSet
}

// Sync runs one pass of every controller. Each step plans on a snapshot and
// writes in small transactions of its own (one per workload, one per batch
// of pods), checking in each that what it planned on has not changed: the
// API's writes interleave with a pass instead of waiting for all of it.
func (c *Controllers) Sync(ctx context.Context) error {
	c.init()
	now := c.Now()
	s, err := c.load(ctx)
	if err != nil {
		return err
	}
	if err := c.syncWorkloads(ctx, s, now); err != nil {
		return err
	}
	if s, err = c.load(ctx); err != nil {
		return err
	}
	if err := c.syncNodeLifecycle(ctx, s, now); err != nil {
		return err
	}
	if s, err = c.load(ctx); err != nil {
		return err
	}
	if err := c.schedule(ctx, s); err != nil {
		return err
	}
	if err := c.Store.Update(ctx, func(tx Tx) error {
		if err := GCEvents(tx); err != nil {
			return err
		}
		return c.allocateClusterIPs(tx)
	}); err != nil {
		return err
	}
	return c.publish(ctx)
}

func (c *Controllers) load(ctx context.Context) (*snapshot, error) {
	var s snapshot
	var err error
	if s.nodes, err = ListAs[*Node](ctx, c.Store, KindNode, ""); err != nil {
		return nil, err
	}
	if s.pods, err = ListAs[*Pod](ctx, c.Store, KindPod, ""); err != nil {
		return nil, err
	}
	if s.deployments, err = ListAs[*Deployment](ctx, c.Store, KindDeployment, ""); err != nil {
		return nil, err
	}
	if s.daemonsets, err = ListAs[*DaemonSet](ctx, c.Store, KindDaemonSet, ""); err != nil {
		return nil, err
	}
	return &s, nil
}

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
	maxBatch   = 500
)

// limitCreates trims plan.Create to the workload's current batch and the
// pass's remaining budget, and grows or resets the batch for next time.
func (c *Controllers) limitCreates(uid string, plan *Plan, budget *int) {
	w := c.window[uid]
	if w == 0 {
		w = firstBatch
	}
	n := min(len(plan.Create), w, *budget)
	if len(plan.Create) > n {
		c.window[uid] = min(2*w, maxBatch) // it needs more: the next batch is bigger
	} else {
		delete(c.window, uid)
	}
	plan.Create = plan.Create[:n]
	*budget -= n
}

// writeWorkload applies a workload's plan and status in one transaction,
// unless the workload changed since the snapshot it was planned on (the
// next pass plans again).
func (c *Controllers) writeWorkload(ctx context.Context, owner Object, plan Plan, status func(Object) (Object, bool), now time.Time) error {
	err := c.Store.Update(ctx, func(tx Tx) error {
		cur, err := tx.Get(KeyOf(owner))
		if ErrorCode(err) == ENOTFOUND {
			return nil
		} else if err != nil {
			return err
		}
		if cur.GetMeta().ResourceVersion != owner.GetMeta().ResourceVersion {
			return nil
		}
		if err := c.applyPlan(tx, plan, now); err != nil {
			return err
		}
		if next, changed := status(cur); changed {
			return tx.Put(next)
		}
		return nil
	})
	if ErrorCode(err) == ECONFLICT {
		return nil // raced with another writer: the next pass sees it
	}
	return err
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
	byOwner := map[string][]*Pod{}
	for _, p := range s.pods {
		if o := p.Owner(); o != nil {
			byOwner[o.UID] = append(byOwner[o.UID], p)
		}
	}
	budget := c.MaxCreatesPerPass
	for _, d := range s.deployments {
		owners[d.Metadata.UID] = true
		name := d.Metadata.Name
		plan, st := PlanDeployment(d, byOwner[d.Metadata.UID], PlanEnv{
			NewName: func(h string) string { return c.NewName(name, h) },
			Lost:    isLost,
			CanStop: func(p *Pod) bool { return c.canStop(d, p, nodes[p.Spec.NodeName], now) },
			Now:     now,
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
	for uid := range c.window {
		if !owners[uid] {
			delete(c.window, uid)
		}
	}
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

// inBatches runs fn for each pod, BatchSize pods to a transaction.
func (c *Controllers) inBatches(ctx context.Context, pods []*Pod, fn func(Tx, *Pod) error) error {
	for len(pods) > 0 {
		n := min(len(pods), c.BatchSize)
		batch := pods[:n]
		pods = pods[n:]
		err := c.Store.Update(ctx, func(tx Tx) error {
			for _, p := range batch {
				if err := fn(tx, p); err != nil {
					return err
				}
			}
			return nil
		})
		if ErrorCode(err) != ECONFLICT && err != nil {
			return err
		}
	}
	return nil
}

// fresh returns the stored version of p if it is still the pod p was (same
// uid) and unchanged since the snapshot, else nil.
func fresh(tx Tx, p *Pod) (*Pod, error) {
	obj, err := tx.Get(KeyOf(p))
	if ErrorCode(err) == ENOTFOUND {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	cur := obj.(*Pod)
	if cur.Metadata.UID != p.Metadata.UID || cur.Metadata.ResourceVersion != p.Metadata.ResourceVersion {
		return nil, nil
	}
	return cur, nil
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
	for _, ctr := range d.Spec.Template.Spec.Containers {
		if !n.HasImage(ctr.Image) {
			return false
		}
	}
	return true
}

// prefetch returns, per node, the images of rollouts that will replace pods
// there and that the node does not hold yet.
func prefetch(deployments []*Deployment, pods []*Pod, nodes []*Node) map[string][]string {
	byName := map[string]*Node{}
	for _, n := range nodes {
		byName[n.Metadata.Name] = n
	}
	out := map[string][]string{}
	for _, d := range deployments {
		hash := TemplateHash(&d.Spec.Template)
		for _, p := range OwnedBy(pods, d.Metadata.UID) {
			n := byName[p.Spec.NodeName]
			if n == nil || p.Terminating() || p.Metadata.Labels[LabelTemplateHash] == hash {
				continue
			}
			for _, ctr := range d.Spec.Template.Spec.Containers {
				if !n.HasImage(ctr.Image) && !contains(out[n.Metadata.Name], ctr.Image) {
					out[n.Metadata.Name] = append(out[n.Metadata.Name], ctr.Image)
				}
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// nodeLostGrace returns the grace for a pod, honouring the annotation of its
// template (copied to the pod).
func (c *Controllers) nodeLostGrace(p *Pod) time.Duration {
	if v, ok := p.Metadata.Annotations[AnnotationNodeLostGrace]; ok {
		if d, err := time.ParseDuration(v + "s"); err == nil && d >= 0 {
			return d
		}
	}
	return c.NodeLostGrace
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

// lostPods returns the UIDs of Deployment pods whose node has been
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
		if o := p.Owner(); o == nil || o.Kind != KindDeployment {
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
	var gone, lostPods, notReady []*Pod
	lost := c.lostPods(s, now)
	for _, p := range s.pods {
		n := nodes[p.Spec.NodeName]
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
	if err := c.inBatches(ctx, lostPods, func(tx Tx, p *Pod) error {
		cur, err := fresh(tx, p)
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
		cur, err := fresh(tx, p)
		if cur == nil || err != nil {
			return err
		}
		next := Clone(cur)
		markNotReady(next)
		return tx.Put(next)
	})
}

func markNotReady(p *Pod) {
	p.Status.SetCondition(PodCondition{Type: "Ready", Status: ConditionFalse, Reason: ReasonNodeNotReady,
		Message: fmt.Sprintf("node %q is not ready", p.Spec.NodeName)})
}

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
	sched := &Scheduler{Nodes: NewNodeInfos(s.nodes), Usage: usage}
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
		return tx.Put(next)
	})
}

// allocateClusterIPs gives every ClusterIP/NodePort service without an
// address one from 10.43.0.0/16 (k3s' default service range).
func (c *Controllers) allocateClusterIPs(tx Tx) error {
	services, err := TxListAs[*Service](tx, KindService, "")
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, svc := range services {
		used[svc.Spec.ClusterIP] = true
	}
	next := 10
	for _, svc := range services {
		if svc.Spec.ClusterIP != "" {
			continue
		}
		for ; next < 65534; next++ {
			ip := "10.43." + itoa(next/256) + "." + itoa(next%256)
			if !used[ip] && next%256 != 0 && next%256 != 255 {
				used[ip] = true
				cp := Clone(svc)
				cp.Spec.ClusterIP = ip
				if err := tx.Put(cp); err != nil {
					return err
				}
				break
			}
		}
	}
	return nil
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

// DesiredFor builds a node's desired state from all pods.
func DesiredFor(node string, pods []*Pod) *DesiredState {
	ds := &DesiredState{Node: node, Pods: []*Pod{}}
	for _, p := range pods {
		if p.Spec.NodeName != node || p.Terminating() {
			continue
		}
		ds.Pods = append(ds.Pods, &Pod{TypeMeta: p.TypeMeta, Metadata: ObjectMeta{
			Name: p.Metadata.Name, Namespace: p.Metadata.Namespace, UID: p.Metadata.UID,
			Labels: p.Metadata.Labels, Annotations: p.Metadata.Annotations,
		}, Spec: p.Spec})
	}
	ds.Hash = Hash(ds.Pods)
	return ds
}

// publish sends each node whose desired pod set changed its new set. A
// cheap fingerprint (pod UIDs and resourceVersions) skips unchanged nodes
// without hashing their pods on every pass.
func (c *Controllers) publish(ctx context.Context) error {
	nodes, err := ListAs[*Node](ctx, c.Store, KindNode, "")
	if err != nil {
		return err
	}
	pods, err := ListAs[*Pod](ctx, c.Store, KindPod, "")
	if err != nil {
		return err
	}
	deployments, err := ListAs[*Deployment](ctx, c.Store, KindDeployment, "")
	if err != nil {
		return err
	}
	fetch := prefetch(deployments, pods, nodes)
	byNode := map[string][]*Pod{}
	for _, p := range pods {
		if p.Spec.NodeName != "" && !p.Terminating() {
			byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	present := map[string]bool{}
	for _, n := range nodes {
		present[n.Metadata.Name] = true
	}
	for name := range c.published {
		if !present[name] { // a deleted node must stop everything it still runs
			if err := c.Bus.PublishDesired(ctx, DesiredFor(name, nil)); err != nil {
				return err
			}
			delete(c.published, name)
			delete(c.publishedAt, name)
			delete(c.fingerprints, name)
		}
	}
	var fp strings.Builder
	for _, n := range nodes {
		name := n.Metadata.Name
		fp.Reset()
		for _, p := range byNode[name] {
			fp.WriteString(p.Metadata.UID)
			fp.WriteByte('@')
			fp.WriteString(p.Metadata.ResourceVersion)
			fp.WriteByte(',')
		}
		for _, img := range fetch[name] {
			fp.WriteString(img)
			fp.WriteByte(',')
		}
		if _, ok := c.published[name]; ok && c.fingerprints[name] == fp.String() {
			continue
		}
		ds := DesiredFor(name, byNode[name])
		if len(fetch[name]) > 0 {
			ds.Prefetch = fetch[name]
			ds.Hash = Hash(ds)
		}
		if c.published[name] != ds.Hash {
			if err := c.Bus.PublishDesired(ctx, ds); err != nil {
				return err
			}
			c.published[name] = ds.Hash
			c.publishedAt[name] = c.Now()
		}
		c.fingerprints[name] = fp.String()
	}
	return nil
}

// republishAfter is how long an agent may report another desired-state
// hash than the one published for its node before it is sent again: longer
// than a publish and a report take to cross, so a report already on its way
// does not cause a second publish.
const republishAfter = 10 * time.Second

// CheckDesired compares the desired-state hash an agent says it acts on
// with the one last published for its node. When they differ (the agent
// lost its local state, or a broker lost the retained message) the node's
// desired state is published again, at most once per republishAfter.
func (c *Controllers) CheckDesired(node, hash string) {
	c.init()
	c.mu.Lock()
	pub, ok := c.published[node]
	stale := ok && pub != hash && c.Now().Sub(c.publishedAt[node]) >= republishAfter
	if stale {
		delete(c.published, node)
		delete(c.fingerprints, node)
		c.publishedAt[node] = c.Now()
	}
	c.mu.Unlock()
	if stale {
		c.Log.Info("publishing a node's desired state again: its agent acts on another", "node", node, "agent-hash", hash, "published", pub)
		c.Kick()
	}
}

// RandomPodName returns "<owner>-<hash>-<5 random chars>" like Kubernetes.
func RandomPodName(owner, hash string) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, 5)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	if hash == "" {
		return owner + "-" + string(b)
	}
	return owner + "-" + hash + "-" + string(b)
}
