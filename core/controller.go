package core

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Controllers is the master's control loop: the Deployment and DaemonSet
// controllers, the scheduler, node lifecycle and the publisher of each
// node's desired state. Every pass is a deterministic function of the store
// and the clock; the goroutine started by Open only decides when to run one.
type Controllers struct {
	Store Store
	Bus   Bus
	Log   *slog.Logger
	Now   func() time.Time
	// Network is the cluster's address plan (zero: DefaultNetworkConfig).
	Network NetworkConfig
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
	// PinnedImages lists the master's pinned images (REPO:TAG), which each
	// node is told of when it holds them; nil: none. Called every pass:
	// it must be cheap.
	PinnedImages func() []string
	// StartupGrace is how long after the master starts an agent has to
	// reconnect before its node turns Unknown (default 30s): a restarted
	// master has lost every session of its embedded broker.
	StartupGrace time.Duration
	// MaxCreatesPerPass bounds the pods one pass creates, all workloads
	// together (default 2000); each workload starts with a batch of 32 and
	// doubles it while it keeps needing more (Kubernetes' slow start), so a
	// huge scale-up is spread over passes the API can interleave with. The
	// creates themselves go in transactions of BatchSize. (500 a pass made
	// a pass's fixed cost, publishing every node's state, the bulk of a
	// 10,000-pod rollout: 23 s against 12 s on 1,000 simulated nodes.)
	MaxCreatesPerPass int
	// BatchSize bounds the writes of one transaction when scheduling or
	// marking pods (default 500): no pass holds the store's write lock for
	// longer than one batch.
	BatchSize int
	// Location is the zone of CronJob schedules without a timeZone
	// (default time.Local, the master's).
	Location *time.Location

	started      time.Time
	window       map[string]int // workload uid -> its next creation batch
	hashMu       sync.Mutex
	hashes       map[string]templateHashEntry // deployment uid -> its template's hash
	once         sync.Once
	mu           sync.Mutex
	published    map[string]string    // node -> hash of the last published desired state
	publishedAt  map[string]time.Time // node -> when it was (re)published
	republishes  map[string]int       // node -> republishes in a row for a hash mismatch
	fingerprints map[string]string    // node -> pod uids@resourceVersions behind it
	netHash      string               // hash of the last network state published
	netPrint     string               // what it was built from
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	kick         chan struct{}

	crons map[string]*cronEntry // schedule and zone -> parsed, for the CronJob pass
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
		c.MaxCreatesPerPass = 2000
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	c.window = map[string]int{}
	c.hashes = map[string]templateHashEntry{}
	c.started = c.Now()
	c.published = map[string]string{}
	c.publishedAt = map[string]time.Time{}
	c.republishes = map[string]int{}
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
	nodes        []*Node
	pods         []*Pod
	deployments  []*Deployment
	daemonsets   []*DaemonSet
	statefulsets []*StatefulSet
	claims       []*PersistentVolumeClaim
	volumes      []*PersistentVolume
	classes      []*StorageClass
	jobs         []*Job
	cronjobs     []*CronJob
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
	for _, n := range s.nodes {
		if n.Spec.PodCIDR == "" { // a node that just registered
			if err := c.Store.Update(ctx, c.allocatePodCIDRs); err != nil {
				return err
			}
			if s, err = c.load(ctx); err != nil {
				return err
			}
			break
		}
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
	if len(s.claims)+len(s.volumes) > 0 {
		if err := c.syncVolumes(ctx, s, now); err != nil {
			return err
		}
	}
	if s, err = c.load(ctx); err != nil {
		return err
	}
	if err := c.schedule(ctx, s); err != nil {
		return err
	}
	if err := c.Store.Update(ctx, func(tx Tx) error {
		return GCEvents(tx)
	}); err != nil {
		return err
	}
	if s, err = c.load(ctx); err != nil {
		return err
	}
	if err := c.syncServices(ctx, s); err != nil {
		return err
	}
	if err := c.publish(ctx); err != nil {
		return err
	}
	return c.publishNetwork(ctx)
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
	if s.statefulsets, err = ListAs[*StatefulSet](ctx, c.Store, KindStatefulSet, ""); err != nil {
		return nil, err
	}
	if s.claims, err = ListAs[*PersistentVolumeClaim](ctx, c.Store, KindPersistentVolumeClaim, ""); err != nil {
		return nil, err
	}
	if s.volumes, err = ListAs[*PersistentVolume](ctx, c.Store, KindPersistentVolume, ""); err != nil {
		return nil, err
	}
	if s.classes, err = ListAs[*StorageClass](ctx, c.Store, KindStorageClass, ""); err != nil {
		return nil, err
	}
	if s.jobs, err = ListAs[*Job](ctx, c.Store, KindJob, ""); err != nil {
		return nil, err
	}
	if s.cronjobs, err = ListAs[*CronJob](ctx, c.Store, KindCronJob, ""); err != nil {
		return nil, err
	}
	return &s, nil
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

// RandomPodName returns "<owner>-<hash>-<5 random chars>" like Kubernetes.
func RandomPodName(owner, hash string) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, 5)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	base := owner + "-"
	if hash != "" {
		base += hash + "-"
	}
	// A pod's name is its containers' hostname: at most 63 characters, as
	// Kubernetes keeps generated names (it cuts the base at 58).
	if len(base) > 58 {
		base = base[:58]
	}
	return base + string(b)
}
