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

	started      time.Time
	once         sync.Once
	mu           sync.Mutex
	published    map[string]string // node -> hash of the last published desired state
	fingerprints map[string]string // node -> pod uids@resourceVersions behind it
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
	c.started = c.Now()
	c.published = map[string]string{}
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

// snapshot is everything one pass looks at.
type snapshot struct {
	nodes       []*Node
	pods        []*Pod
	deployments []*Deployment
	daemonsets  []*DaemonSet
	services    []*Service
}

// Sync runs one pass of every controller.
func (c *Controllers) Sync(ctx context.Context) error {
	c.init()
	now := c.Now()
	err := c.Store.Update(ctx, func(tx Tx) error {
		s, err := c.load(tx)
		if err != nil {
			return err
		}
		if err := c.syncWorkloads(tx, s, now); err != nil {
			return err
		}
		if s, err = c.load(tx); err != nil {
			return err
		}
		if err := c.syncNodeLifecycle(tx, s, now); err != nil {
			return err
		}
		if s, err = c.load(tx); err != nil {
			return err
		}
		if err := c.schedule(tx, s, now); err != nil {
			return err
		}
		if err := GCEvents(tx); err != nil {
			return err
		}
		return c.allocateClusterIPs(tx, s)
	})
	if err != nil {
		return err
	}
	return c.publish(ctx)
}

func (c *Controllers) load(tx Tx) (*snapshot, error) {
	var s snapshot
	var err error
	if s.nodes, err = TxListAs[*Node](tx, KindNode, ""); err != nil {
		return nil, err
	}
	if s.pods, err = TxListAs[*Pod](tx, KindPod, ""); err != nil {
		return nil, err
	}
	if s.deployments, err = TxListAs[*Deployment](tx, KindDeployment, ""); err != nil {
		return nil, err
	}
	if s.daemonsets, err = TxListAs[*DaemonSet](tx, KindDaemonSet, ""); err != nil {
		return nil, err
	}
	if s.services, err = TxListAs[*Service](tx, KindService, ""); err != nil {
		return nil, err
	}
	return &s, nil
}

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
	for _, pod := range p.Delete {
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

func (c *Controllers) syncWorkloads(tx Tx, s *snapshot, now time.Time) error {
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
	for _, d := range s.deployments {
		owners[d.Metadata.UID] = true
		name := d.Metadata.Name
		plan, st := PlanDeployment(d, OwnedBy(s.pods, d.Metadata.UID), PlanEnv{
			NewName: func(h string) string { return c.NewName(name, h) },
			Lost:    isLost,
			CanStop: func(p *Pod) bool { return c.canStop(d, p, nodes[p.Spec.NodeName], now) },
			Now:     now,
		})
		if err := c.applyPlan(tx, plan, now); err != nil {
			return err
		}
		if !JSONEqual(st, d.Status) {
			next := Clone(d)
			next.Status = st
			if err := tx.Put(next); err != nil {
				return err
			}
		}
	}
	for _, ds := range s.daemonsets {
		owners[ds.Metadata.UID] = true
		name := ds.Metadata.Name
		plan, st := PlanDaemonSet(ds, s.nodes, OwnedBy(s.pods, ds.Metadata.UID), func(h string) string { return c.NewName(name, "") })
		if err := c.applyPlan(tx, plan, now); err != nil {
			return err
		}
		if !JSONEqual(st, ds.Status) {
			next := Clone(ds)
			next.Status = st
			if err := tx.Put(next); err != nil {
				return err
			}
		}
	}
	// Pods whose workload is gone are garbage.
	for _, p := range s.pods {
		if o := p.Owner(); o != nil && !owners[o.UID] && !p.Terminating() {
			if err := terminatePod(tx, p, now); err != nil {
				return err
			}
		}
	}
	return nil
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

func (c *Controllers) syncNodeLifecycle(tx Tx, s *snapshot, now time.Time) error {
	nodes := map[string]*Node{}
	for _, n := range s.nodes {
		nodes[n.Metadata.Name] = n
		// A node Ready before this master started, whose agent has not come
		// back within the startup grace, is no longer known to be alive.
		if c.Online != nil && n.Ready() == ConditionTrue && now.Sub(c.started) >= c.StartupGrace {
			if _, known := c.Online(n.Metadata.Name); !known {
				next := Clone(n)
				next.SetReady(ConditionUnknown, "NodeStatusUnknown", "agent did not reconnect after the master restarted", NewTime(now))
				if err := tx.Put(next); err != nil {
					return err
				}
				nodes[n.Metadata.Name] = next
			}
		}
	}
	for _, p := range s.pods {
		if p.Spec.NodeName != "" && nodes[p.Spec.NodeName] == nil {
			// The node was deleted: nobody can confirm a stop.
			if err := tx.Delete(KeyOf(p)); err != nil {
				return err
			}
		}
	}
	lost := c.lostPods(s, now)
	for _, p := range s.pods {
		if !lost[p.Metadata.UID] {
			continue
		}
		if p.Metadata.Annotations[AnnotationReconnectPolicy] != ReconnectKeepOriginal {
			if err := terminatePod(tx, p, now); err != nil {
				return err
			}
			continue
		}
		if p.Status.Reason == ReasonNodeLost {
			continue
		}
		next := Clone(p)
		next.Status.Phase = PodUnknown
		next.Status.Reason = ReasonNodeLost
		next.Status.Message = fmt.Sprintf("node %q is unreachable; kept for its return (%s)", p.Spec.NodeName, AnnotationReconnectPolicy)
		if err := tx.Put(next); err != nil {
			return err
		}
	}
	return nil
}

func (c *Controllers) schedule(tx Tx, s *snapshot, now time.Time) error {
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
		if err := tx.Put(next); err != nil {
			return err
		}
	}
	return nil
}

// allocateClusterIPs gives every ClusterIP/NodePort service without an
// address one from 10.43.0.0/16 (k3s' default service range).
func (c *Controllers) allocateClusterIPs(tx Tx, s *snapshot) error {
	used := map[string]bool{}
	for _, svc := range s.services {
		used[svc.Spec.ClusterIP] = true
	}
	next := 10
	for _, svc := range s.services {
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
		}
		c.fingerprints[name] = fp.String()
	}
	return nil
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
