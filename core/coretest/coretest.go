// Package coretest drives the master's logic (core.Controllers and
// core.Reports) over any core.Store by hand, for scenario tests: one fake
// clock for everything, a Bus that records what is published, and agents
// simulated by reports. core's tests run it on core.MemoryStore; sqlite's
// on a real database.
//
// It must never start goroutines of its own or sleep: a test decides when a
// control-loop pass runs and when time passes.
package coretest

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// Bus is a working in-memory core.Bus: it keeps the last desired state
// published for each node and counts publications.
type Bus struct {
	mu        sync.Mutex
	desired   map[string]*core.DesiredState
	published map[string]int
	network   *core.NetworkState
	netPubs   int
	err       error
	changed   chan struct{} // closed and replaced on every publication
}

var _ core.Bus = (*Bus)(nil)

// PublishDesired implements core.Bus.
func (b *Bus) PublishDesired(ctx context.Context, ds *core.DesiredState) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	if b.desired == nil {
		b.desired, b.published = map[string]*core.DesiredState{}, map[string]int{}
	}
	b.desired[ds.Node] = ds
	b.published[ds.Node]++
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return nil
}

// PublishNetwork implements core.Bus.
func (b *Bus) PublishNetwork(ctx context.Context, ns *core.NetworkState) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	b.network = ns
	b.netPubs++
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return nil
}

// Network returns the last network state published and how many were.
func (b *Bus) Network() (*core.NetworkState, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.network, b.netPubs
}

// WaitFor waits until cond (which may call b's methods) holds, checking it
// again after every publication; it reports false if timeout passes first.
// It is for controllers running on their own goroutine (Controllers.Open).
func (b *Bus) WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		changed := b.changed
		b.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return cond()
		}
	}
}

// Logs implements core.Bus: there are no agents to ask.
func (b *Bus) Logs(ctx context.Context, node string, req core.LogRequest) (io.ReadCloser, error) {
	return nil, core.Errorf(core.EUNAVAILABLE, "node %q: no agent in this test", node)
}

// Desired returns the last desired state published for node, or nil.
func (b *Bus) Desired(node string) *core.DesiredState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.desired[node]
}

// Published returns how many desired states were published for node.
func (b *Bus) Published(node string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.published[node]
}

// Fail makes every publication fail with err until Fail(nil).
func (b *Bus) Fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err = err
}

// Start is the time every Cluster's clock starts at.
var Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Cluster is a master's logic over a store, driven by hand: agents are
// simulated by reports (Agent says every desired pod runs and is ready).
type Cluster struct {
	T       testing.TB
	Store   core.Store
	Bus     *Bus
	Ctl     *core.Controllers
	Reports *core.Reports

	mu    sync.Mutex
	now   time.Time
	seq   int
	nodes int // added so far, for addresses
}

// NewCluster returns a cluster at Start on the store that open returns;
// open must make the store read the cluster's clock (now).
func NewCluster(t testing.TB, open func(now func() time.Time) core.Store) *Cluster {
	c := &Cluster{T: t, Bus: &Bus{}, now: Start}
	c.Store = open(c.Now)
	c.Ctl = c.NewControllers()
	c.Reports = &core.Reports{Store: c.Store, Now: c.Now}
	t.Cleanup(func() { c.verify() })
	return c
}

// NewMemoryCluster returns a cluster on a core.MemoryStore, which also
// checks after every pass that no stored object was changed in place.
func NewMemoryCluster(t testing.TB) *Cluster {
	return NewCluster(t, func(now func() time.Time) core.Store {
		s := core.NewMemoryStore()
		s.Now = now
		return s
	})
}

// NewControllers returns controllers on the cluster's store, bus and clock
// that name pods "<owner>-<seq>" (seq counting up from 001).
func (c *Cluster) NewControllers() *core.Controllers {
	return &core.Controllers{Store: c.Store, Bus: c.Bus, Now: c.Now, NewName: c.NewName}
}

// NewName returns "<owner>-<seq>".
func (c *Cluster) NewName(owner, hash string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	return fmt.Sprintf("%s-%03d", owner, c.seq)
}

// Now returns the cluster's clock.
func (c *Cluster) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Cluster) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *Cluster) verify() {
	c.T.Helper()
	if v, ok := c.Store.(interface{ Verify() error }); ok {
		if err := v.Verify(); err != nil {
			c.T.Fatal(err)
		}
	}
}

// Sync runs a few control-loop passes: they converge, and a few catch
// follow-up work.
func (c *Cluster) Sync() {
	c.T.Helper()
	for i := 0; i < 3; i++ {
		if err := c.Ctl.Sync(context.Background()); err != nil {
			c.T.Fatal(err)
		}
		c.verify()
	}
}

// Settle runs control-loop passes, each round followed by a report from
// the agent of every node in nodes (Agent), until a round writes nothing:
// the cluster is idle. It fails the test if that takes 100 rounds.
func (c *Cluster) Settle(nodes ...string) {
	c.T.Helper()
	for i := 0; i < 100; i++ {
		w := c.Writes()
		c.Sync()
		for _, n := range nodes {
			c.Agent(n)
		}
		if c.Writes() == w {
			return
		}
	}
	c.T.Fatalf("the cluster still changes after 100 rounds of passes and reports")
}

// Writes returns the store's committed write count.
func (c *Cluster) Writes() int64 {
	c.T.Helper()
	w, ok := c.Store.(interface{ Writes() int64 })
	if !ok {
		c.T.Fatalf("%T does not count writes", c.Store)
	}
	return w.Writes()
}

// Online tells the master that node's agent connected or disconnected.
func (c *Cluster) Online(node string, online bool) {
	c.T.Helper()
	if err := c.Reports.NodeOnline(context.Background(), node, online); err != nil {
		c.T.Fatal(err)
	}
}

// AddNode connects and registers a Ready node with the well-known labels,
// labels and cpu and memory as both capacity and allocatable.
func (c *Cluster) AddNode(name string, labels map[string]string, cpu, mem string) {
	c.T.Helper()
	l := map[string]string{core.LabelHostname: name, core.LabelArch: "arm64", core.LabelOS: "linux"}
	for k, v := range labels {
		l[k] = v
	}
	res := core.ResourceList{"cpu": core.Quantity(cpu), "memory": core.Quantity(mem)}
	c.Online(name, true)
	c.mu.Lock()
	c.nodes++
	ip := fmt.Sprintf("192.168.%d.%d", 1+c.nodes/250, 1+c.nodes%250)
	c.mu.Unlock()
	c.Report(&core.NodeReport{Node: name, Labels: l, Status: core.NodeStatus{Capacity: res, Allocatable: res,
		Addresses: []core.NodeAddress{{Type: "InternalIP", Address: ip}}}})
}

// Report sends a node report.
func (c *Cluster) Report(rep *core.NodeReport) {
	c.T.Helper()
	if err := c.Reports.NodeReport(context.Background(), rep); err != nil {
		c.T.Fatal(err)
	}
}

// Running is the status of a pod whose one container runs and is ready.
func Running(*core.Pod) *core.PodStatus {
	return &core.PodStatus{Phase: core.PodRunning, ContainerStatuses: []core.ContainerStatus{{Name: "c", Ready: true,
		State: core.ContainerState{Running: &core.ContainerStateRunning{}}}}}
}

// Agent reports every pod in node's desired state as running and ready.
func (c *Cluster) Agent(node string) { c.T.Helper(); c.AgentWith(node, Running) }

// AgentWith reports every pod in node's last published desired state with
// the status that status returns; a nil status leaves the pod out. Like a
// real agent it holds the images of its pods and those it was told to
// prefetch, and keeps the labels and status the node has.
func (c *Cluster) AgentWith(node string, status func(*core.Pod) *core.PodStatus) {
	c.T.Helper()
	ds := c.Bus.Desired(node)
	rep := &core.NodeReport{Node: node}
	if o, err := c.Store.Get(context.Background(), core.Key{Kind: core.KindNode, Name: node}); err == nil {
		n := o.(*core.Node)
		rep.Labels, rep.Status = n.Metadata.Labels, n.Status
	}
	if ds != nil {
		rep.Status.Images = nil
		for _, img := range ds.Prefetch {
			rep.Status.Images = append(rep.Status.Images, core.NodeImage{Names: []string{img}})
		}
		for _, p := range ds.Pods {
			for _, img := range p.Spec.Images() {
				rep.Status.Images = append(rep.Status.Images, core.NodeImage{Names: []string{img}})
			}
		}
		for _, p := range ds.Pods {
			if st := status(p); st != nil {
				rep.Pods = append(rep.Pods, core.PodReport{Namespace: p.Metadata.Namespace, Name: p.Metadata.Name,
					UID: p.Metadata.UID, Status: *st})
			}
		}
		rep.DesiredHash = ds.Hash
	}
	c.Report(rep)
}

// Apply decodes and applies manifests at the cluster's time.
func (c *Cluster) Apply(doc string) []core.ApplyResult {
	c.T.Helper()
	objs, err := core.DecodeManifests([]core.ManifestFile{{Name: "test.yaml", Data: []byte(doc)}})
	if err != nil {
		c.T.Fatal(err)
	}
	res, err := core.Apply(context.Background(), c.Store, objs, c.Now(), c.Ctl.Network)
	if err != nil {
		c.T.Fatal(err)
	}
	return res
}

// Delete deletes an object as the API does.
func (c *Cluster) Delete(k core.Key) {
	c.T.Helper()
	if err := core.Delete(context.Background(), c.Store, k, c.Now()); err != nil {
		c.T.Fatal(err)
	}
}

// Get returns a stored object.
func (c *Cluster) Get(k core.Key) core.Object {
	c.T.Helper()
	o, err := c.Store.Get(context.Background(), k)
	if err != nil {
		c.T.Fatal(err)
	}
	return o
}

// Node returns a stored node.
func (c *Cluster) Node(name string) *core.Node {
	c.T.Helper()
	return c.Get(core.Key{Kind: core.KindNode, Name: name}).(*core.Node)
}

// Deployment returns a stored deployment in the default namespace.
func (c *Cluster) Deployment(name string) *core.Deployment {
	c.T.Helper()
	return c.Get(core.Key{Kind: core.KindDeployment, Namespace: core.DefaultNamespace, Name: name}).(*core.Deployment)
}

// Pods returns every pod, sorted by namespace and name.
func (c *Cluster) Pods() []*core.Pod {
	c.T.Helper()
	ps, err := core.ListAs[*core.Pod](context.Background(), c.Store, core.KindPod, "")
	if err != nil {
		c.T.Fatal(err)
	}
	return ps
}

// Active returns the pods that are not terminating.
func (c *Cluster) Active() []*core.Pod {
	c.T.Helper()
	var out []*core.Pod
	for _, p := range c.Pods() {
		if !p.Terminating() {
			out = append(out, p)
		}
	}
	return out
}

// Placement counts active (not terminating) pods per node, "" for pending.
func (c *Cluster) Placement() map[string]int {
	c.T.Helper()
	m := map[string]int{}
	for _, p := range c.Active() {
		m[p.Spec.NodeName]++
	}
	return m
}

// Names lists pods as "name@node" (sorted), for failure messages.
func Names(pods []*core.Pod) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.Metadata.Name + "@" + p.Spec.NodeName
		if p.Terminating() {
			out[i] += "(terminating)"
		}
	}
	sort.Strings(out)
	return out
}

// DeploymentYAML is a Deployment of replicas pods of image demo:1 labelled
// app=name, each limited to 32Mi and 250m; extra is appended to the pod
// spec (indent it by six spaces).
func DeploymentYAML(name string, replicas int, extra string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s}
spec:
  replicas: %d
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      containers:
      - name: c
        image: demo:1
        resources: {limits: {memory: 32Mi, cpu: 250m}}
%s`, name, replicas, name, name, extra)
}

// DaemonSetYAML is a DaemonSet "logs" of image demo:1 on every node.
const DaemonSetYAML = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: logs}
spec:
  selector: {matchLabels: {app: logs}}
  template:
    metadata: {labels: {app: logs}}
    spec:
      containers: [{name: c, image: demo:1}]
`
