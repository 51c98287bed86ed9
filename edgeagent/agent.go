// Package edgeagent is the worker: it runs the pods its master wants through
// a container runtime (containerd, behind core.Runtime), reports what it
// sees, and keeps going when the master, the broker or the link is gone. Its
// only state outside the runtime is the last desired state, written
// crash-safely, and the pods' log files; everything else is read back from
// container labels, so a restarted agent adopts its running containers
// instead of duplicating them. It never talks to the master except through
// its Reporter, the callbacks the wiring sets and the registry mirror it
// pulls images through (SetMirror), and only containerd.go (with
// containerd_pull.go, image pulls, and containerd_gc.go, the image cache's
// garbage collection) knows containerd.
package edgeagent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/backoff"
	"github.com/edgeorch/edge/internal/fsutil"
	"github.com/edgeorch/edge/internal/preflight"
)

// Agent runs a node's pods. Configure the fields, then Open.
type Agent struct {
	Name    string
	DataDir string
	RunDir  string // netns mounts; default /run/edge/<Name>
	// Runtime runs the containers. Nil means containerd at the Containerd
	// socket, in Namespace, with cgroups under CgroupParent.
	Runtime    core.Runtime
	Containerd string // socket path
	Namespace  string // containerd namespace, default "edge"
	// CgroupParent holds every container's cgroup; default /edge/<Name>.
	CgroupParent string
	Labels       map[string]string
	// NodeIP is the node's LAN address (InternalIP); empty: the first
	// global IPv4 address of an interface that is not a bridge.
	NodeIP string
	// PidsLimit caps the processes of each container (default 1024).
	PidsLimit int64
	// SystemReserved is capacity kept from pods for the OS, containerd and
	// the agent: the node reports Allocatable = Capacity - SystemReserved
	// and the scheduler fits pods into that. Nil means defaultReserved.
	SystemReserved core.ResourceList
	Version        string
	Reporter       core.Reporter
	Network        Network // pod networking; nil gives pods a loopback-only namespace
	// Services programs the cluster's services on this node (routes, proxy,
	// DNS); nil: none.
	Services ServiceProxy
	// ResolvConf returns the resolv.conf of a pod in a namespace (cluster
	// DNS); nil: pods get the node's own.
	ResolvConf func(namespace string) []byte
	Log        *slog.Logger
	Now        func() time.Time
	// VolumeDir holds the volumes provisioned for claims on this node
	// (default DataDir/storage); StorageCapacity is what claims may
	// reserve there, in bytes (0: the size of its filesystem).
	VolumeDir       string
	StorageCapacity int64
	// ContainerLogMaxSize (bytes per file) and ContainerLogMaxFiles (files
	// kept, the live one included) cap each container's log; zero: 10 MiB
	// and 5, the kubelet's defaults.
	ContainerLogMaxSize  int64
	ContainerLogMaxFiles int
	// LogDriver is the executable containerd's shim runs to write and
	// rotate each container's log: edge-logdriver, or any whose main runs
	// RunLogDriver on the arguments IsLogDriver recognises
	// (the agent's own). Empty: the shim appends to the log file itself,
	// with no rotation.
	LogDriver string
	// Resync is how often every pod is checked without an event (default
	// 30s): the runtime's exit events wake a pod at once, this is the net
	// under them, and polling costs an idle Pi CPU.
	Resync time.Duration
	// Preflight checks the machine (edgeagent check's checks). The agent
	// runs it in the background once open, again every 5 minutes while a
	// check fails, and reports the outcome as the node's PreflightPassed
	// condition. Nil: no checks, no condition.
	Preflight func(ctx context.Context) []preflight.Result
	// ImageCacheSize bounds, in bytes, the disk the node's images take
	// (their blobs and unpacked snapshots); 0: unbounded. ImageGCInterval
	// (default 5m) paces the collector; images used or stored within
	// ImageGCMinAge (default 10m) stay. See imagegc.go.
	ImageCacheSize  int64
	ImageGCInterval time.Duration
	ImageGCMinAge   time.Duration
	// Online says whether the master is reachable (the node's MQTT
	// connection); nil: never. Image GC waits while it is not and a pod
	// waits for an image.
	Online func() bool

	rt core.Runtime
	// releasing holds the released volume paths being removed.
	releasing map[string]bool
	closeRT   func() error // set when the agent made rt itself
	// timer, createNetNS and removeNetNS are replaced by tests (fake time,
	// namespaces without root).
	timer       timerFunc
	createNetNS func(path string) error
	removeNetNS func(path string) error

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	desired     *core.DesiredState // latest known; nil until one is known
	newDesired  chan struct{}
	workers     map[string]*podWorker // by pod UID
	byContainer map[string]string     // runtime container id -> pod UID
	workerDone  chan string
	dirty       chan struct{}
	lastSent    []byte
	node        core.NodeStatus
	hostIP      atomic.Value    // string: the node's InternalIP
	ooms        map[string]bool // containers the kernel OOM-killed
	events      *eventQueue
	eventsReady chan struct{} // events on disk to send
	// eventsRecorded wakes the writer: events in memory to put on disk.
	eventsRecorded chan struct{}
	fetching       map[string]bool // images being prefetched
	network        *core.NetworkState
	netDirty       chan struct{}
	podCIDR        string // the pod subnet Network was given (run goroutine only)
	// inherited holds the pods an earlier agent process may have started
	// to set up (saved desired state, adopted containers): their network
	// namespaces may hold an attachment or a lease it never recorded.
	inherited map[string]bool

	imgMu   sync.Mutex
	imgList []core.NodeImage // the last listing, for reports
	imgAt   time.Time
	fetchMu sync.Mutex // one prefetch at a time: a slow link has no room for more

	mirrorMu sync.Mutex
	mirror   *Mirror // set by SetMirror
}

// Network sets up and tears down a pod's network in its namespace.
type Network interface {
	// SetPodCIDR gives the network the node's pod subnet, from the master.
	// Setup fails until it has one.
	SetPodCIDR(cidr string) error
	// Setup attaches the namespace at netnsPath and returns the pod's IP;
	// ports with a hostPort are published on the node.
	Setup(ctx context.Context, podUID, podName, podNamespace, netnsPath string, ports []core.ContainerPort) (string, error)
	// Teardown detaches it; it must tolerate a namespace already gone.
	Teardown(ctx context.Context, podUID, podName, podNamespace, netnsPath string) error
}

func (a *Agent) desiredPath() string { return filepath.Join(a.DataDir, "desired.json") }

// Open loads the last desired state from disk and starts reconciling. It
// does not wait for the runtime or the master.
func (a *Agent) Open() error {
	if err := a.init(); err != nil {
		return err
	}
	a.wg.Add(5)
	go a.netLoop()
	go a.run()
	go a.reportLoop()
	go a.sendEvents()
	go a.writeEvents()
	if a.Preflight != nil {
		a.wg.Add(1)
		go a.preflightLoop()
	}
	if a.ImageCacheSize > 0 {
		a.wg.Add(1)
		go a.imageGCLoop()
	}
	return nil
}

// setDefaults fills the fields left empty.
func (a *Agent) setDefaults() {
	if a.Namespace == "" {
		a.Namespace = "edge"
	}
	if a.RunDir == "" {
		a.RunDir = "/run/edge/" + a.Name
	}
	if a.CgroupParent == "" {
		a.CgroupParent = CgroupParent(a.Name)
	}
	if a.PidsLimit == 0 {
		a.PidsLimit = 1024
	}
	if a.Log == nil {
		a.Log = slog.Default()
	}
	if a.Now == nil {
		a.Now = time.Now
	}
	if a.Resync == 0 {
		a.Resync = 30 * time.Second
	}
	if a.VolumeDir == "" {
		a.VolumeDir = filepath.Join(a.DataDir, "storage")
	}
	if a.ContainerLogMaxSize == 0 {
		a.ContainerLogMaxSize = DefaultContainerLogMaxSize
	}
	if a.ContainerLogMaxFiles == 0 {
		a.ContainerLogMaxFiles = DefaultContainerLogMaxFiles
	}
	if a.ImageGCInterval == 0 {
		a.ImageGCInterval = DefaultImageGCInterval
	}
	if a.ImageGCMinAge == 0 {
		a.ImageGCMinAge = DefaultImageGCMinAge
	}
	a.releasing = map[string]bool{}
	if a.timer == nil {
		a.timer = realTimer
	}
	if a.createNetNS == nil {
		a.createNetNS, a.removeNetNS = createNetNS, removeNetNS
	}
}

// init prepares everything Open needs before its goroutines start; tests
// of the pod worker use it to drive workers by hand.
func (a *Agent) init() error {
	if a.Name == "" || a.DataDir == "" || (a.Containerd == "" && a.Runtime == nil) {
		return errors.New("agent: name, data dir and containerd socket are required")
	}
	a.setDefaults()
	if err := os.MkdirAll(a.DataDir, 0o755); err != nil {
		return err
	}
	if err := a.checkFormat(); err != nil {
		return err
	}
	for _, d := range []string{filepath.Join(a.DataDir, "logs"), filepath.Join(a.DataDir, "pods"), filepath.Join(a.RunDir, "netns")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	a.workers = map[string]*podWorker{}
	a.byContainer = map[string]string{}
	a.ooms = map[string]bool{}
	a.fetching = map[string]bool{}
	a.inherited = map[string]bool{}
	a.newDesired = make(chan struct{}, 1)
	a.workerDone = make(chan string, 64)
	a.dirty = make(chan struct{}, 1)
	a.netDirty = make(chan struct{}, 1)
	a.loadNetwork()
	if b, err := os.ReadFile(a.desiredPath()); err == nil {
		var ds core.DesiredState
		if err := json.Unmarshal(b, &ds); err != nil {
			a.Log.Error("ignoring unreadable saved desired state", "file", a.desiredPath(), "err", err)
		} else {
			a.desired = &ds
			a.loadSecrets(&ds)
			for _, p := range ds.Pods {
				a.inherited[p.Metadata.UID] = true
			}
			a.Log.Info("loaded saved desired state", "pods", len(ds.Pods))
		}
	}
	var err error
	if a.node, err = a.nodeStatus(); err != nil {
		return err
	}
	if a.events, err = openEventQueue(filepath.Join(a.DataDir, "events"), 1000); err != nil {
		return err
	}
	a.eventsReady = make(chan struct{}, 1)
	a.eventsRecorded = make(chan struct{}, 1)
	a.rt = a.Runtime
	if a.rt == nil {
		r, err := newContainerdRuntime(a.Containerd, a.Namespace, a.CgroupParent)
		if err != nil {
			return err
		}
		r.logDriver, r.logMaxSize, r.logMaxFiles = a.LogDriver, a.ContainerLogMaxSize, a.ContainerLogMaxFiles
		r.logger = a.Log
		a.mirrorMu.Lock()
		if a.mirror != nil {
			r.setMirror(a.mirror)
		}
		a.mirrorMu.Unlock()
		a.rt, a.closeRT = r, r.Close
		version := "v1"
		if r.cgroups.v2 {
			version = "v2"
		}
		a.Log.Info("cgroups", "version", version, "parent", a.CgroupParent, "memory", r.cgroups.memory, "swapLimit", r.cgroups.swap)
		if !r.cgroups.memory {
			a.Log.Warn("containers with a memory limit will not start: " + memoryOffHelp)
		}
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return nil
}

// Close stops the agent. Containers keep running: a restarted agent adopts them.
func (a *Agent) Close() error {
	if a.cancel == nil {
		return nil
	}
	a.cancel()
	a.wg.Wait()
	a.cancel = nil
	// Events recorded by workers as they stopped, after the writer's last
	// flush.
	if _, err := a.events.flush(); err != nil {
		a.Log.Error("writing pod events failed; they are lost", "err", err)
	}
	if a.closeRT != nil {
		err := a.closeRT()
		a.closeRT = nil
		return err
	}
	return nil
}

// SetDesired hands the agent a new desired state (from the master). It does
// not block.
func (a *Agent) SetDesired(ds *core.DesiredState) {
	if ds.Node != "" && ds.Node != a.Name {
		a.Log.Error("ignoring a desired state for another node", "node", ds.Node)
		return
	}
	if !saveLatest(a, &a.desired, ds, func(d *core.DesiredState) string { return d.Hash }, a.saveDesired, "the desired state") {
		return
	}
	select {
	case a.newDesired <- struct{}{}:
	default:
	}
}

// saveLatest makes next the agent's *cur, unless both carry the same
// (non-empty) hash, and writes it crash-safely to path so it outlives a
// restart. It reports whether next was new.
func saveLatest[T any](a *Agent, cur **T, next *T, hash func(*T) string, save func(*T) error, what string) bool {
	a.mu.Lock()
	same := *cur != nil && hash(next) != "" && hash(*cur) == hash(next)
	if !same {
		*cur = next
	}
	a.mu.Unlock()
	if same {
		return false
	}
	if err := save(next); err != nil {
		a.Log.Error("saving "+what+" failed; it will not survive a restart", "err", err)
	}
	return true
}

// saveJSON writes v crash-safely to path, readable by root only.
func saveJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, b, 0o600)
}

// ForceReport makes the next report go out even if nothing changed (after a
// reconnection, the master may have missed the last one).
func (a *Agent) ForceReport() {
	a.mu.Lock()
	a.lastSent = nil
	a.mu.Unlock()
	a.markDirty()
	select { // events queued while away go first
	case a.eventsReady <- struct{}{}:
	default:
	}
}

func (a *Agent) markDirty() {
	select {
	case a.dirty <- struct{}{}:
	default:
	}
	a.kickNetwork() // a pod's readiness may have changed
}

// configurePodCIDR gives the pod network the subnet the master assigned
// (also from the saved desired state, before the master answers).
func (a *Agent) configurePodCIDR() {
	a.mu.Lock()
	ds := a.desired
	a.mu.Unlock()
	if ds == nil || ds.PodCIDR == "" || a.Network == nil || ds.PodCIDR == a.podCIDR {
		return
	}
	if err := a.Network.SetPodCIDR(ds.PodCIDR); err != nil {
		a.Log.Error("configuring the pod network failed; pods wait for it", "podCIDR", ds.PodCIDR, "err", err)
		return
	}
	a.Log.Info("pod network configured", "podCIDR", ds.PodCIDR)
	a.podCIDR = ds.PodCIDR
	a.kickNetwork() // the DNS server listens on the new subnet's gateway
}

// waitRuntime asks the runtime for its version until it answers.
func (a *Agent) waitRuntime() bool {
	bo := backoff.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	failures := 0
	for {
		ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
		_, err := a.rt.Version(ctx)
		cancel()
		if err == nil {
			if failures > 0 {
				a.Log.Info("container runtime reachable again", "socket", a.Containerd)
			}
			return true
		}
		if a.ctx.Err() != nil {
			return false
		}
		failures++
		if failures == 1 || failures%30 == 0 {
			a.Log.Warn("container runtime not reachable; retrying", "socket", a.Containerd, "err", err)
		}
		if !a.sleep(bo.Next()) {
			return false
		}
	}
}

// sleep waits d in real time (retries of the agent itself, not pod
// logic); false if the agent is closing.
func (a *Agent) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (a *Agent) run() {
	defer a.wg.Done()
	if !a.waitRuntime() {
		return
	}
	// Subscribe before listing: an exit after a worker's first look at its
	// container then waits in the stream for the loop below, instead of
	// going unseen until the next resync.
	events := eventStream{a: a, bo: backoff.Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second}}
	events.subscribe()
	if err := a.adopt(); err != nil {
		a.Log.Error("listing existing containers failed", "err", err)
	}
	a.configurePodCIDR()
	a.apply()
	for {
		select {
		case <-a.ctx.Done():
			a.eachWorker((*podWorker).stop)
			return
		case <-a.newDesired:
			a.configurePodCIDR()
			a.apply()
		case uid := <-a.workerDone:
			a.reap(uid)
			a.apply() // a pod of the same name may wait for this one to go
			a.markDirty()
		case <-events.retry:
			events.subscribe()
		case ev, ok := <-events.c:
			if !ok {
				events.broken()
				a.eachWorker((*podWorker).kickNow) // exits may have gone unseen
				continue
			}
			events.bo.Reset()
			a.handleEvent(ev)
		}
	}
}

// eventStream is the agent's subscription to the runtime's events: exits
// wake a pod's worker at once. When the stream breaks (the runtime
// restarted) the agent subscribes again after a backoff.
type eventStream struct {
	a        *Agent
	c        <-chan core.RuntimeEvent // nil while not subscribed
	retry    <-chan time.Time         // fires when to subscribe again
	bo       backoff.Backoff
	failures int
}

func (s *eventStream) subscribe() {
	s.retry = nil
	ch, err := s.a.rt.Events(s.a.ctx)
	if err != nil {
		if s.failures++; s.failures == 1 || s.failures%30 == 0 {
			s.a.Log.Warn("subscribing to runtime events failed; retrying", "err", err)
		}
		s.retry = time.After(s.bo.Next())
		return
	}
	if s.failures > 0 {
		s.a.Log.Info("runtime events flowing again")
		s.failures = 0
	}
	s.c = ch
}

func (s *eventStream) broken() {
	s.c = nil
	if s.a.ctx.Err() == nil {
		s.a.Log.Warn("runtime event stream broke; subscribing again")
		s.retry = time.After(s.bo.Next())
	}
}

func (a *Agent) eachWorker(f func(*podWorker)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.workers {
		f(w)
	}
}

// reap forgets a worker that removed its pod.
func (a *Agent) reap(uid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if w := a.workers[uid]; w == nil || !w.isFinished() {
		return
	}
	delete(a.workers, uid)
	for id, u := range a.byContainer {
		if u == uid {
			delete(a.byContainer, id)
			delete(a.ooms, id)
		}
	}
}

// handleEvent notes an OOM kill for the worker to report, and wakes the
// worker of a container whose task exited.
func (a *Agent) handleEvent(ev core.RuntimeEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch ev.Type {
	case core.RuntimeTaskOOM:
		a.ooms[ev.ContainerID] = true
	case core.RuntimeTaskExit:
		if w := a.workers[a.byContainer[ev.ContainerID]]; w != nil {
			w.kickNow()
		}
	}
}

// adopt finds the containers a previous agent left running.
func (a *Agent) adopt() error {
	ctrs, err := a.rt.Containers(a.ctx, map[string]string{labelPodUID: ""})
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range ctrs {
		uid := c.Labels[labelPodUID]
		a.inherited[uid] = true
		w := a.workers[uid]
		if w == nil {
			w = a.newWorker(uid, c.Labels[labelPodNamespace], c.Labels[labelPodName])
			a.workers[uid] = w
		}
		// Any container of the pod may carry these: one that never started
		// has no address recorded, and must not hide its sibling's.
		if v := c.Labels[labelNetNS]; v != "" {
			w.netnsPath = v
		}
		if v := c.Labels[labelPodIP]; v != "" {
			w.podIP = v
		}
		a.byContainer[c.ID] = uid
	}
	if len(ctrs) > 0 {
		a.Log.Info("adopted running containers", "containers", len(ctrs), "pods", len(a.workers))
	}
	// Network namespaces of pods whose containers are all gone (an agent
	// stopped half-way through removing a pod) are removed; a pod that is
	// still wanted gets a new one from its worker.
	entries, _ := os.ReadDir(filepath.Join(a.RunDir, "netns"))
	for _, e := range entries {
		if a.workers[e.Name()] != nil {
			continue
		}
		path := filepath.Join(a.RunDir, "netns", e.Name())
		if a.Network != nil {
			if err := a.Network.Teardown(a.ctx, e.Name(), "", "", path); err != nil {
				a.Log.Warn("removing a stale pod network failed", "pod-uid", e.Name(), "err", err)
			}
		}
		a.removeNetNS(path)
	}
	for _, w := range a.workers {
		w.start()
	}
	return nil
}

// prefetch pulls images a coming rollout needs, in the background.
func (a *Agent) prefetch(images []string) {
	for _, ref := range images {
		if a.fetching[ref] {
			continue
		}
		a.fetching[ref] = true
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.fetchMu.Lock()
			_, err := a.ensureImage(a.ctx, ref, core.PullIfNotPresent, nil)
			a.fetchMu.Unlock()
			if err != nil && a.ctx.Err() == nil {
				a.Log.Warn("prefetching an image for a rollout failed", "image", ref, "err", err)
			}
			a.mu.Lock()
			delete(a.fetching, ref)
			a.mu.Unlock()
			a.markDirty() // the report lists the node's images
		}()
	}
}

// apply makes the set of pod workers match the desired state.
func (a *Agent) apply() {
	a.mu.Lock()
	defer a.mu.Unlock()
	ds := a.desired
	if ds == nil {
		return // nothing known yet: adopted containers are left alone
	}
	a.prefetch(ds.Prefetch)
	a.releaseVolumes(ds)
	want := map[string]*core.Pod{}
	names := map[string]string{} // namespace/name -> uid wanted
	for _, p := range ds.Pods {
		want[p.Metadata.UID] = p
		names[p.Metadata.Namespace+"/"+p.Metadata.Name] = p.Metadata.UID
	}
	for uid, w := range a.workers {
		if p := want[uid]; p != nil {
			w.setPod(p)
			if cms, secs := p.Spec.ConfigRefs(); len(cms)+len(secs) > 0 {
				w.kickNow() // its ConfigMaps or Secrets may have changed
			}
		} else {
			w.terminate()
		}
	}
	for uid, p := range want {
		if a.workers[uid] != nil {
			continue
		}
		// A replaced pod of the same name must be gone first: they would
		// share log paths and, with hostNetwork, ports.
		busy := false
		for _, w := range a.workers {
			if w.namespace == p.Metadata.Namespace && w.name == p.Metadata.Name {
				busy = true
			}
		}
		if busy {
			continue
		}
		w := a.newWorker(uid, p.Metadata.Namespace, p.Metadata.Name)
		w.claims = p.Spec.ClaimNames()
		w.setPod(p)
		a.workers[uid] = w
		p.Spec.EachContainer(func(c *core.Container, _ bool) {
			a.byContainer[containerID(p, c.Name)] = uid
		})
		w.start()
	}
	a.markDirty()
}

// reportLoop sends a report whenever the snapshot changes.
func (a *Agent) reportLoop() {
	defer a.wg.Done()
	resend := time.NewTimer(time.Hour)
	defer resend.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.dirty:
		case <-resend.C:
		}
		// Let a burst of changes (20 pods starting) settle into one report.
		select {
		case <-time.After(20 * time.Millisecond):
		case <-a.ctx.Done():
			return
		}
		if a.Reporter == nil {
			continue
		}
		rep := a.Snapshot()
		b, _ := json.Marshal(rep)
		a.mu.Lock()
		same := string(b) == string(a.lastSent)
		a.mu.Unlock()
		if same {
			continue
		}
		if err := a.Reporter.Report(rep); err != nil {
			// Sent again on reconnect (ForceReport) or at the next change.
			resend.Reset(5 * time.Second)
			continue
		}
		a.mu.Lock()
		a.lastSent = b
		a.mu.Unlock()
		resend.Reset(time.Hour) // look again in an hour; a report goes out only if something changed
	}
}

// Snapshot returns the agent's current report.
func (a *Agent) Snapshot() *core.NodeReport {
	a.mu.Lock()
	workers := make([]*podWorker, 0, len(a.workers))
	for _, w := range a.workers {
		workers = append(workers, w)
	}
	rep := &core.NodeReport{Node: a.Name, Labels: a.nodeLabels(), Status: a.node, Pods: []core.PodReport{}, Protocol: core.ProtocolVersion}
	if a.desired != nil {
		rep.DesiredHash = a.desired.Hash
	}
	a.mu.Unlock()
	if imgs := a.images(); imgs != nil {
		rep.Status.Images = imgs
	}
	rep.Status.VolumeDir = a.VolumeDir
	rep.Status.Volumes = a.localVolumes()
	for _, w := range workers {
		if r, ok := w.report(); ok {
			rep.Pods = append(rep.Pods, r)
		}
	}
	sort.Slice(rep.Pods, func(i, j int) bool {
		if rep.Pods[i].Namespace != rep.Pods[j].Namespace {
			return rep.Pods[i].Namespace < rep.Pods[j].Namespace
		}
		return rep.Pods[i].Name < rep.Pods[j].Name
	})
	return rep
}

// imagesTTL is how long the node's image list is reused in reports: a
// burst of pod starts sends a report every few tens of milliseconds, and
// images change only when pulled (which refreshes the list at once) or
// imported by hand.
const imagesTTL = 30 * time.Second

// images lists the images present, for the scheduler's image locality.
func (a *Agent) images() []core.NodeImage {
	a.imgMu.Lock()
	defer a.imgMu.Unlock()
	if a.imgList != nil && a.Now().Sub(a.imgAt) < imagesTTL {
		return a.imgList
	}
	ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
	defer cancel()
	imgs, err := a.rt.Images(ctx)
	if err != nil {
		return nil
	}
	out := []core.NodeImage{}
	for _, img := range imgs {
		out = append(out, core.NodeImage{Names: []string{img.Name}, SizeBytes: img.Size})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Names[0] < out[j].Names[0] })
	a.imgList, a.imgAt = out, a.Now()
	return out
}

// imagesChanged drops the cached image list (an image was pulled).
func (a *Agent) imagesChanged() {
	a.imgMu.Lock()
	a.imgList = nil
	a.imgMu.Unlock()
}

// imageSeen drops the cached image list unless it holds name: the node's
// report must show an image as soon as the node has it (a rollout waits
// for that before it stops an old pod there).
func (a *Agent) imageSeen(name string) {
	a.imgMu.Lock()
	defer a.imgMu.Unlock()
	for _, img := range a.imgList {
		for _, n := range img.Names {
			if n == name {
				return
			}
		}
	}
	a.imgList = nil
}
