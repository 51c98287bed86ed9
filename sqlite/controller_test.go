package sqlite_test

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/sqlite"
)

// recordingBus keeps the last desired state published for each node.
type recordingBus struct {
	mu      sync.Mutex
	desired map[string]*core.DesiredState
}

func (b *recordingBus) PublishDesired(ctx context.Context, ds *core.DesiredState) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.desired == nil {
		b.desired = map[string]*core.DesiredState{}
	}
	b.desired[ds.Node] = ds
	return nil
}

func (b *recordingBus) Logs(ctx context.Context, node string, req core.LogRequest) (io.ReadCloser, error) {
	return nil, core.Errorf(core.EUNAVAILABLE, "no agents in this test")
}

// cluster is the master's logic over a real store, driven by hand: agents
// are simulated by reports that say every desired pod runs and is ready.
type cluster struct {
	t       testing.TB
	db      *sqlite.DB
	bus     *recordingBus
	ctl     *core.Controllers
	reports *core.Reports
	now     time.Time
	seq     int
}

func newCluster(t testing.TB) *cluster {
	c := &cluster{t: t, db: MustOpenDB(t), bus: &recordingBus{}, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	clock := func() time.Time { return c.now }
	c.db.Now = clock
	c.ctl = &core.Controllers{Store: c.db, Bus: c.bus, Now: clock, NewName: func(owner, hash string) string {
		c.seq++
		return fmt.Sprintf("%s-%03d", owner, c.seq)
	}}
	c.reports = &core.Reports{Store: c.db, Now: clock}
	return c
}

func (c *cluster) sync() {
	c.t.Helper()
	for i := 0; i < 3; i++ { // passes converge; a few catch follow-up work
		if err := c.ctl.Sync(context.Background()); err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *cluster) addNode(name string, labels map[string]string, cpu, mem string) {
	c.t.Helper()
	l := map[string]string{core.LabelHostname: name, core.LabelArch: "arm64", core.LabelOS: "linux"}
	for k, v := range labels {
		l[k] = v
	}
	res := core.ResourceList{"cpu": core.Quantity(cpu), "memory": core.Quantity(mem)}
	ctx := context.Background()
	if err := c.reports.NodeOnline(ctx, name, true); err != nil {
		c.t.Fatal(err)
	}
	if err := c.reports.NodeReport(ctx, &core.NodeReport{Node: name, Labels: l, Status: core.NodeStatus{Capacity: res, Allocatable: res}}); err != nil {
		c.t.Fatal(err)
	}
}

// agent reports every pod in node's desired state as running and ready.
func (c *cluster) agent(node string) {
	c.t.Helper()
	c.bus.mu.Lock()
	ds := c.bus.desired[node]
	c.bus.mu.Unlock()
	rep := &core.NodeReport{Node: node}
	if o, err := c.db.Get(context.Background(), core.Key{Kind: core.KindNode, Name: node}); err == nil {
		n := o.(*core.Node)
		rep.Labels, rep.Status = n.Metadata.Labels, n.Status
	}
	if ds != nil {
		// Like a real agent: it holds the images of its pods and fetches
		// what it is told to prefetch.
		rep.Status.Images = nil
		for _, img := range ds.Prefetch {
			rep.Status.Images = append(rep.Status.Images, core.NodeImage{Names: []string{img}})
		}
		for _, p := range ds.Pods {
			for _, ctr := range p.Spec.Containers {
				rep.Status.Images = append(rep.Status.Images, core.NodeImage{Names: []string{ctr.Image}})
			}
		}
		for _, p := range ds.Pods {
			rep.Pods = append(rep.Pods, core.PodReport{Namespace: p.Metadata.Namespace, Name: p.Metadata.Name, UID: p.Metadata.UID,
				Status: core.PodStatus{Phase: core.PodRunning, ContainerStatuses: []core.ContainerStatus{{Name: "c", Ready: true,
					State: core.ContainerState{Running: &core.ContainerStateRunning{}}}}}})
		}
	}
	if err := c.reports.NodeReport(context.Background(), rep); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) apply(doc string) {
	c.t.Helper()
	objs, err := core.DecodeManifests([]core.ManifestFile{{Name: "test.yaml", Data: []byte(doc)}})
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := core.Apply(context.Background(), c.db, objs, c.now); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) pods() []*core.Pod {
	ps, err := core.ListAs[*core.Pod](context.Background(), c.db, core.KindPod, "")
	if err != nil {
		c.t.Fatal(err)
	}
	return ps
}

// placement counts active (not terminating) pods per node, "" for pending.
func (c *cluster) placement() map[string]int {
	m := map[string]int{}
	for _, p := range c.pods() {
		if !p.Terminating() {
			m[p.Spec.NodeName]++
		}
	}
	return m
}

func deployment(name string, replicas int, extra string) string {
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

func TestControllers_DeploymentSpreadsAndPublishes(t *testing.T) {
	c := newCluster(t)
	c.addNode("n1", nil, "2", "1Gi")
	c.addNode("n2", nil, "2", "1Gi")
	c.addNode("n3", nil, "2", "1Gi")
	c.apply(deployment("web", 6, ""))
	c.sync()
	if got := c.placement(); got["n1"] != 2 || got["n2"] != 2 || got["n3"] != 2 {
		t.Fatalf("placement %v, want 2/2/2", got)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if ds := c.bus.desired[n]; ds == nil || len(ds.Pods) != 2 {
			t.Fatalf("desired state of %s: %+v", n, ds)
		}
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		c.agent(n)
	}
	c.sync()
	d, _ := c.db.Get(context.Background(), core.Key{Kind: core.KindDeployment, Namespace: "default", Name: "web"})
	if st := d.(*core.Deployment).Status; st.ReadyReplicas != 6 || st.UpdatedReplicas != 6 {
		t.Fatalf("status %+v", st)
	}
}

func TestControllers_ScaleDownTerminatesThenAgentConfirms(t *testing.T) {
	c := newCluster(t)
	c.addNode("n1", nil, "2", "1Gi")
	c.apply(deployment("web", 3, ""))
	c.sync()
	c.agent("n1")
	c.apply(deployment("web", 1, ""))
	c.sync()
	terminating := 0
	for _, p := range c.pods() {
		if p.Terminating() {
			terminating++
		}
	}
	if terminating != 2 || len(c.bus.desired["n1"].Pods) != 1 {
		t.Fatalf("terminating %d, desired %d; want 2 and 1", terminating, len(c.bus.desired["n1"].Pods))
	}
	c.agent("n1") // the agent stopped them: its report lacks them
	c.sync()
	if n := len(c.pods()); n != 1 {
		t.Fatalf("%d pods left, want 1", n)
	}
}

func TestControllers_PendingExplains(t *testing.T) {
	c := newCluster(t)
	c.addNode("n1", nil, "2", "64Mi")
	c.addNode("n2", nil, "2", "64Mi")
	c.addNode("n3", map[string]string{"zone": "b"}, "2", "1Gi")
	c.apply(deployment("big", 1, `      nodeSelector: {zone: a}
`))
	c.sync()
	p := c.pods()[0]
	cond := p.Status.Condition("PodScheduled")
	want := "0/3 nodes available: 3 didn't match node selector"
	if p.Spec.NodeName != "" || cond == nil || cond.Message != want {
		t.Fatalf("pod on %q, condition %+v; want pending with %q", p.Spec.NodeName, cond, want)
	}
	c.apply(strings.Replace(deployment("big", 1, ""), "memory: 32Mi", "memory: 512Mi", 1))
	c.sync()
	var pending *core.Pod
	for _, p := range c.pods() {
		if !p.Terminating() && p.Spec.NodeName == "" {
			pending = p
		}
	}
	if pending != nil {
		t.Fatalf("512Mi pod should fit n3, still pending: %+v", pending.Status.Conditions)
	}
	c.apply(strings.Replace(deployment("huge", 1, ""), "memory: 32Mi", "memory: 2Gi", 1))
	c.sync()
	for _, p := range c.pods() {
		if strings.HasPrefix(p.Metadata.Name, "huge") {
			want := "0/3 nodes available: 3 insufficient memory"
			if got := p.Status.Condition("PodScheduled"); got == nil || got.Message != want {
				t.Fatalf("condition %+v, want %q", got, want)
			}
		}
	}
}

func TestControllers_RollingUpdateKeepsAvailability(t *testing.T) {
	c := newCluster(t)
	for _, n := range []string{"n1", "n2", "n3"} {
		c.addNode(n, nil, "4", "4Gi")
	}
	c.apply(deployment("web", 6, ""))
	c.sync()
	for _, n := range []string{"n1", "n2", "n3"} {
		c.agent(n)
	}
	c.sync()
	c.apply(strings.Replace(deployment("web", 6, ""), "demo:1", "demo:2", 1))
	for round := 0; round < 30; round++ {
		c.sync()
		ready, updated := 0, 0
		for _, p := range c.pods() {
			if !p.Terminating() && p.Ready() {
				ready++
				if p.Spec.Containers[0].Image == "demo:2" {
					updated++
				}
			}
		}
		if ready < 5 {
			t.Fatalf("round %d: only %d ready pods (maxUnavailable 25%% of 6 allows 1 down)", round, ready)
		}
		if updated == 6 && len(c.pods()) == 6 {
			return
		}
		for _, n := range []string{"n1", "n2", "n3"} {
			c.agent(n)
		}
	}
	t.Fatalf("rollout did not finish: %d pods", len(c.pods()))
}

const logsDaemonSet = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: logs}
spec:
  selector: {matchLabels: {app: logs}}
  template:
    metadata: {labels: {app: logs}}
    spec:
      containers: [{name: c, image: demo:1}]
`

func TestControllers_DaemonSetFollowsNodes(t *testing.T) {
	c := newCluster(t)
	c.addNode("n1", nil, "1", "1Gi")
	c.addNode("n2", nil, "1", "1Gi")
	c.apply(logsDaemonSet)
	c.sync()
	if got := c.placement(); got["n1"] != 1 || got["n2"] != 1 || len(got) != 2 {
		t.Fatalf("placement %v", got)
	}
	c.addNode("n3", nil, "1", "1Gi")
	c.sync()
	if got := c.placement(); got["n3"] != 1 || len(got) != 3 {
		t.Fatalf("placement after join %v", got)
	}
}

func TestControllers_NodeLostReplacesDeploymentPodsOnly(t *testing.T) {
	c := newCluster(t)
	c.addNode("n1", nil, "4", "4Gi")
	c.addNode("n2", nil, "4", "4Gi")
	c.apply(deployment("web", 4, ""))
	c.apply(logsDaemonSet)
	c.sync()
	c.agent("n1")
	c.agent("n2")
	if err := c.reports.NodeOnline(context.Background(), "n2", false); err != nil {
		t.Fatal(err)
	}
	c.now = c.now.Add(2 * time.Second)
	c.sync()
	if got := c.placement(); got["n2"] != 3 {
		t.Fatalf("replaced before the grace period: %v", got)
	}
	c.now = c.now.Add(4 * time.Second)
	c.sync()
	got := c.placement()
	if got["n1"] != 5 || got["n2"] != 1 {
		t.Fatalf("placement %v, want 4 web + 1 ds on n1 and only the ds pod on n2", got)
	}
	// n2 returns: the agent gets a desired state without the replaced pods
	// and the count converges to exactly 4.
	if err := c.reports.NodeOnline(context.Background(), "n2", true); err != nil {
		t.Fatal(err)
	}
	c.sync()
	c.agent("n2")
	c.sync()
	web := 0
	for _, p := range c.pods() {
		if strings.HasPrefix(p.Metadata.Name, "web") {
			web++
		}
	}
	if web != 4 {
		names := []string{}
		for _, p := range c.pods() {
			names = append(names, p.Metadata.Name+"@"+p.Spec.NodeName)
		}
		sort.Strings(names)
		t.Fatalf("%d web pods after reconnect, want 4: %v", web, names)
	}
}

func TestControllers_DeleteDeployment(t *testing.T) {
	c := newCluster(t)
	c.addNode("n1", nil, "4", "4Gi")
	c.apply(deployment("web", 2, ""))
	c.sync()
	c.agent("n1")
	if err := core.Delete(context.Background(), c.db, core.Key{Kind: core.KindDeployment, Namespace: "default", Name: "web"}, c.now); err != nil {
		t.Fatal(err)
	}
	c.sync()
	if len(c.bus.desired["n1"].Pods) != 0 {
		t.Fatal("deleted deployment's pods still desired")
	}
	c.agent("n1")
	c.sync()
	if n := len(c.pods()); n != 0 {
		t.Fatalf("%d pods left", n)
	}
}

// A report from one node must not change pods bound to another.
func TestReports_NodeCannotReportForOthers(t *testing.T) {
	c := newCluster(t)
	c.addNode("n1", nil, "4", "4Gi")
	c.addNode("n2", nil, "4", "4Gi")
	c.apply(deployment("web", 2, ""))
	c.sync()
	var onN2 *core.Pod
	for _, p := range c.pods() {
		if p.Spec.NodeName == "n2" {
			onN2 = p
		}
	}
	before := onN2.Metadata.ResourceVersion
	err := c.reports.NodeReport(context.Background(), &core.NodeReport{Node: "n1", Pods: []core.PodReport{{
		Namespace: "default", Name: onN2.Metadata.Name, UID: onN2.Metadata.UID, Status: core.PodStatus{Phase: core.PodFailed}}}})
	if err != nil {
		t.Fatal(err)
	}
	o, _ := c.db.Get(context.Background(), core.KeyOf(onN2))
	if o.GetMeta().ResourceVersion != before {
		t.Fatal("n1's report changed a pod on n2")
	}
}

// Reports that repeat what is stored write nothing.
func TestReports_UnchangedWritesNothing(t *testing.T) {
	c := newCluster(t)
	c.addNode("n1", nil, "4", "4Gi")
	c.apply(deployment("web", 10, ""))
	c.sync()
	c.agent("n1")
	c.sync()
	before := c.db.Writes()
	for i := 0; i < 20; i++ {
		c.agent("n1")
		c.reports.NodeOnline(context.Background(), "n1", true)
		c.now = c.now.Add(time.Second)
		c.sync()
	}
	if w := c.db.Writes() - before; w != 0 {
		t.Fatalf("%d writes while idle", w)
	}
}

// After a master restart, nodes get the startup grace to reconnect; one
// that never does turns Unknown and then loses its replicas.
func TestControllers_StartupGrace(t *testing.T) {
	c := newCluster(t)
	c.addNode("n1", nil, "4", "4Gi")
	c.addNode("n2", nil, "4", "4Gi")
	c.apply(deployment("web", 4, ""))
	c.sync()
	c.agent("n1")
	c.agent("n2")
	// A new master process: fresh controllers and reports, same store.
	heard := map[string]bool{}
	reports := &core.Reports{Store: c.db, Now: func() time.Time { return c.now }}
	c.reports = reports
	c.ctl = &core.Controllers{Store: c.db, Bus: c.bus, Now: c.ctl.Now, NewName: c.ctl.NewName, StartupGrace: 30 * time.Second,
		Online: func(node string) (bool, bool) { return heard[node], heard[node] }}
	c.sync()
	reports.NodeOnline(context.Background(), "n1", true)
	heard["n1"] = true
	c.now = c.now.Add(20 * time.Second)
	c.sync()
	if got := c.placement(); got["n2"] != 2 {
		t.Fatalf("pods moved within the startup grace: %v", got)
	}
	o, _ := c.db.Get(context.Background(), core.Key{Kind: core.KindNode, Name: "n2"})
	if o.(*core.Node).Ready() != core.ConditionTrue {
		t.Fatal("n2 went Unknown within the startup grace")
	}
	c.now = c.now.Add(15 * time.Second) // past the startup grace: n2 turns Unknown
	c.sync()
	o, _ = c.db.Get(context.Background(), core.Key{Kind: core.KindNode, Name: "n2"})
	if o.(*core.Node).Ready() != core.ConditionUnknown {
		t.Fatal("n2 never reconnected but is still Ready")
	}
	if got := c.placement(); got["n2"] != 2 {
		t.Fatalf("pods moved before the node-lost grace: %v", got)
	}
	c.now = c.now.Add(6 * time.Second)
	c.sync()
	if got := c.placement(); got["n1"] != 4 || got["n2"] != 0 {
		t.Fatalf("placement %v, want all 4 on n1", got)
	}
}

// With keep-original, a partitioned node's replicas are replaced while it
// is away and the replacements go when it returns; the originals survive.
func TestControllers_ReconnectKeepOriginal(t *testing.T) {
	c := twoNodesRunning(t, 4, "edge.io/reconnect-policy: keep-original")
	originals := map[string]bool{}
	for _, p := range c.pods() {
		if p.Spec.NodeName == "n2" {
			originals[p.Metadata.Name] = true
		}
	}
	c.reports.NodeOnline(context.Background(), "n2", false)
	c.now = c.now.Add(6 * time.Second)
	c.sync()
	var lost, replacements int
	for _, p := range c.pods() {
		switch {
		case originals[p.Metadata.Name]:
			if p.Terminating() || p.Status.Reason != core.ReasonNodeLost {
				t.Fatalf("original %s: terminating=%v reason=%q", p.Metadata.Name, p.Terminating(), p.Status.Reason)
			}
			lost++
		case p.Spec.NodeName == "n1":
			replacements++
		}
	}
	if lost != 2 || replacements != 4 {
		t.Fatalf("%d lost originals, %d pods on n1; want 2 and 4", lost, replacements)
	}
	c.agent("n1")
	// n2 returns and reports its originals running.
	c.reports.NodeOnline(context.Background(), "n2", true)
	c.agent("n2")
	c.sync()
	c.agent("n1")
	c.sync()
	active := 0
	for _, p := range c.pods() {
		if !p.Terminating() {
			active++
		} else if originals[p.Metadata.Name] {
			t.Fatalf("original %s is being stopped", p.Metadata.Name)
		}
	}
	if active != 4 {
		t.Fatalf("%d active pods after the return, want 4", active)
	}
	for name := range originals {
		o, err := c.db.Get(context.Background(), core.Key{Kind: core.KindPod, Namespace: "default", Name: name})
		if err != nil || o.(*core.Pod).Terminating() {
			t.Fatalf("original %s gone: %v", name, err)
		}
	}
}

func TestEvents_StoreDedupTrimGC(t *testing.T) {
	c := newCluster(t)
	c.addNode("n1", nil, "4", "4Gi")
	c.addNode("n2", nil, "4", "4Gi")
	c.apply(deployment("web", 2, ""))
	c.sync()
	var p1 *core.Pod
	for _, p := range c.pods() {
		if p.Spec.NodeName == "n1" {
			p1 = p
		}
	}
	ctx := context.Background()
	ev := func(id uint64) core.PodEvent {
		return core.PodEvent{ID: id, Time: core.NewTime(c.now.Add(time.Duration(id) * time.Second)), Namespace: "default",
			Pod: p1.Metadata.Name, UID: p1.Metadata.UID, Type: core.EventNormal, Reason: "Started", Message: fmt.Sprint(id)}
	}
	if err := c.reports.NodeEvents(ctx, "n1", []core.PodEvent{ev(1), ev(2), ev(2)}); err != nil {
		t.Fatal(err)
	}
	if err := c.reports.NodeEvents(ctx, "n2", []core.PodEvent{ev(3)}); err != nil { // n2 speaks of n1's pod
		t.Fatal(err)
	}
	events, _ := core.ListAs[*core.EventObj](ctx, c.db, core.KindEvent, "")
	if len(events) != 2 || events[0].Message == events[1].Message {
		t.Fatalf("%d events stored, want 2 (a repeat and a foreign one dropped)", len(events))
	}
	var many []core.PodEvent
	for i := 10; i < 10+core.MaxEventsPerPod+5; i++ {
		many = append(many, ev(uint64(i)))
	}
	c.reports.NodeEvents(ctx, "n1", many)
	events, _ = core.ListAs[*core.EventObj](ctx, c.db, core.KindEvent, "")
	mine := core.EventsFor(events, p1.Metadata.UID)
	if len(mine) != core.MaxEventsPerPod || mine[len(mine)-1].Message != fmt.Sprint(10+core.MaxEventsPerPod+4) {
		t.Fatalf("%d events kept (last %q)", len(mine), mine[len(mine)-1].Message)
	}
	// The pod goes: so do its events.
	core.Delete(ctx, c.db, core.Key{Kind: core.KindDeployment, Namespace: "default", Name: "web"}, c.now)
	c.sync()
	c.agent("n1")
	c.agent("n2")
	c.sync()
	if events, _ = core.ListAs[*core.EventObj](ctx, c.db, core.KindEvent, ""); len(events) != 0 {
		t.Fatalf("%d events outlive their pod", len(events))
	}
}

func TestControllers_RolloutHistoryAndUndo(t *testing.T) {
	c := newCluster(t)
	c.addNode("n1", nil, "4", "4Gi")
	c.apply(deployment("web", 2, ""))
	c.sync()
	c.agent("n1")
	c.apply(strings.Replace(deployment("web", 2, ""), "demo:1", "demo:2", 1))
	for i := 0; i < 10; i++ {
		c.sync()
		c.agent("n1")
	}
	ctx := context.Background()
	key := core.Key{Kind: core.KindDeployment, Namespace: "default", Name: "web"}
	o, _ := c.db.Get(ctx, key)
	h := o.(*core.Deployment).Status.History
	if len(h) != 2 || h[0].Template.Spec.Containers[0].Image != "demo:1" || h[1].Revision != 2 {
		t.Fatalf("history %+v", h)
	}
	rev, err := core.Undo(ctx, c.db, key, 0)
	if err != nil || rev != 1 {
		t.Fatalf("undo: %d %v", rev, err)
	}
	for i := 0; i < 10; i++ {
		c.sync()
		c.agent("n1")
	}
	for _, p := range c.pods() {
		if p.Spec.Containers[0].Image != "demo:1" {
			t.Fatalf("pod %s still runs %s after undo", p.Metadata.Name, p.Spec.Containers[0].Image)
		}
	}
	o, _ = c.db.Get(ctx, key)
	h = o.(*core.Deployment).Status.History
	if len(h) != 2 || h[1].Hash != core.TemplateHash(&o.(*core.Deployment).Spec.Template) || h[1].Revision != 3 {
		t.Fatalf("history after undo %+v", h)
	}
	if _, err := core.Undo(ctx, c.db, key, 42); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("undo to a missing revision: %v", err)
	}
}

// A rollout does not stop a ready old pod until its node holds the new
// image, and tells the node to fetch it first.
func TestControllers_PrefetchBeforeStop(t *testing.T) {
	c := newCluster(t)
	c.addNode("n1", nil, "4", "4Gi")
	c.apply(strings.Replace(deployment("web", 1, ""), "replicas: 1", "replicas: 1\n  strategy: {type: Recreate}", 1))
	c.sync()
	c.agent("n1")
	c.apply(strings.Replace(strings.Replace(deployment("web", 1, ""), "replicas: 1", "replicas: 1\n  strategy: {type: Recreate}", 1), "demo:1", "demo:2", 1))
	c.sync()
	if ds := c.bus.desired["n1"]; len(ds.Prefetch) != 1 || ds.Prefetch[0] != "demo:2" {
		t.Fatalf("prefetch %v, want [demo:2]", ds.Prefetch)
	}
	for _, p := range c.pods() {
		if p.Terminating() {
			t.Fatal("the old pod is stopping before its node has the new image")
		}
	}
	c.agent("n1") // reports demo:2 pulled
	c.sync()
	stopping := 0
	for _, p := range c.pods() {
		if p.Terminating() {
			stopping++
		}
	}
	if stopping != 1 {
		t.Fatalf("%d pods stopping once the image is there, want 1", stopping)
	}
}

// A generated name that is taken is replaced, not fatal to the pass.
func TestControllers_NameCollision(t *testing.T) {
	c := newCluster(t)
	c.addNode("n1", nil, "4", "4Gi")
	names := []string{"web-same", "web-same", "web-same", "web-other"}
	c.ctl.NewName = func(owner, hash string) string {
		n := names[0]
		names = names[1:]
		return n
	}
	c.apply(deployment("web", 2, ""))
	c.sync()
	if n := len(c.pods()); n != 2 {
		t.Fatalf("%d pods, want 2 despite the name collision", n)
	}
}

// The node-lost grace can be set per workload.
func TestControllers_NodeLostGraceAnnotation(t *testing.T) {
	c := twoNodesRunning(t, 2, `edge.io/node-lost-grace-seconds: "60"`)
	c.reports.NodeOnline(context.Background(), "n2", false)
	c.now = c.now.Add(30 * time.Second)
	c.sync()
	if got := c.placement(); got["n2"] != 1 {
		t.Fatalf("replaced before the workload's 60 s grace: %v", got)
	}
	c.now = c.now.Add(31 * time.Second)
	c.sync()
	if got := c.placement(); got["n1"] != 2 || got["n2"] != 0 {
		t.Fatalf("placement %v after the grace", got)
	}
}

// twoNodesRunning is a cluster of n1 and n2 running a web deployment of n
// replicas whose pod template carries the annotation (YAML "key: value").
func twoNodesRunning(t *testing.T, n int, annotation string) *cluster {
	c := newCluster(t)
	c.addNode("n1", nil, "4", "4Gi")
	c.addNode("n2", nil, "4", "4Gi")
	c.apply(strings.Replace(deployment("web", n, ""), "    metadata: {labels: {app: web}}",
		"    metadata:\n      labels: {app: web}\n      annotations: {"+annotation+"}", 1))
	c.sync()
	c.agent("n1")
	c.agent("n2")
	return c
}
