package core_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/coretest"
)

// Scenario tests of the controllers, the scheduler pass and the reports,
// on the memory store (sqlite/ runs a few of them on SQLite).

var (
	deployment  = coretest.DeploymentYAML
	ctx         = context.Background()
	webKey      = core.Key{Kind: core.KindDeployment, Namespace: "default", Name: "web"}
	newCluster  = coretest.NewMemoryCluster
	logsDaemons = coretest.DaemonSetYAML
)

func TestControllers_DeploymentSpreadsAndPublishes(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "2", "1Gi")
	c.AddNode("n2", nil, "2", "1Gi")
	c.AddNode("n3", nil, "2", "1Gi")
	c.Apply(deployment("web", 6, ""))
	c.Sync()
	if got := c.Placement(); got["n1"] != 2 || got["n2"] != 2 || got["n3"] != 2 {
		t.Fatalf("placement %v, want 2/2/2", got)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		ds := c.Bus.Desired(n)
		if ds == nil || len(ds.Pods) != 2 || ds.Node != n {
			t.Fatalf("desired state of %s: %+v", n, ds)
		}
		for _, p := range ds.Pods {
			if p.Spec.NodeName != n || p.Metadata.UID == "" {
				t.Fatalf("desired pod %s on %q, uid %q", p.Metadata.Name, p.Spec.NodeName, p.Metadata.UID)
			}
		}
	}
	d := c.Deployment("web")
	if st := d.Status; st.Replicas != 6 || st.UpdatedReplicas != 6 || st.ReadyReplicas != 0 || st.ObservedGeneration != 1 {
		t.Fatalf("status before the agents report %+v", st)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		c.Agent(n)
	}
	c.Sync()
	if st := c.Deployment("web").Status; st.ReadyReplicas != 6 || st.AvailableReplicas != 6 || st.UpdatedReplicas != 6 {
		t.Fatalf("status %+v", st)
	}
	for _, p := range c.Pods() {
		if cond := p.Status.Condition("PodScheduled"); cond == nil || cond.Status != core.ConditionTrue {
			t.Fatalf("pod %s lost its PodScheduled condition to the agent's report: %+v", p.Metadata.Name, p.Status.Conditions)
		}
	}
}

// An idle cluster writes nothing and publishes nothing again.
func TestControllers_IdleWritesNothing(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Apply(deployment("web", 4, ""))
	c.Apply(logsDaemons)
	c.Apply("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n")
	c.Sync()
	c.Agent("n1")
	c.Agent("n2")
	c.Sync()
	writes, published := c.Writes(), c.Bus.Published("n1")
	for i := 0; i < 10; i++ {
		c.Agent("n1")
		c.Agent("n2")
		c.Online("n1", true)
		c.Advance(time.Second)
		c.Sync()
	}
	if w := c.Writes() - writes; w != 0 {
		t.Fatalf("%d writes while idle", w)
	}
	if p := c.Bus.Published("n1") - published; p != 0 {
		t.Fatalf("%d publications while idle", p)
	}
}

func TestControllers_ScaleDownTerminatesThenAgentConfirms(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "2", "1Gi")
	c.Apply(deployment("web", 3, ""))
	c.Sync()
	c.Agent("n1")
	c.Sync()
	c.Apply(deployment("web", 1, ""))
	c.Sync()
	terminating := 0
	for _, p := range c.Pods() {
		if p.Terminating() {
			terminating++
		}
	}
	if terminating != 2 || len(c.Bus.Desired("n1").Pods) != 1 {
		t.Fatalf("terminating %d, desired %d; want 2 and 1", terminating, len(c.Bus.Desired("n1").Pods))
	}
	if st := c.Deployment("web").Status; st.Replicas != 1 || st.ReadyReplicas != 1 {
		t.Fatalf("status %+v, want 1 replica ready", st)
	}
	c.Agent("n1") // the agent stopped them: its report lacks them
	c.Sync()
	if n := len(c.Pods()); n != 1 {
		t.Fatalf("%d pods left, want 1", n)
	}
}

func TestControllers_PendingExplains(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "2", "64Mi")
	c.AddNode("n2", nil, "2", "64Mi")
	c.AddNode("n3", map[string]string{"zone": "b"}, "2", "1Gi")
	c.Apply(deployment("big", 1, "      nodeSelector: {zone: a}\n"))
	c.Sync()
	p := c.Pods()[0]
	cond := p.Status.Condition("PodScheduled")
	want := "0/3 nodes available: 3 didn't match node selector"
	if p.Spec.NodeName != "" || cond == nil || cond.Message != want || cond.Status != core.ConditionFalse || p.Status.Phase != core.PodPending {
		t.Fatalf("pod on %q, condition %+v; want pending with %q", p.Spec.NodeName, cond, want)
	}
	// The explanation does not change: further passes write nothing.
	w := c.Writes()
	c.Sync()
	if c.Writes() != w {
		t.Fatal("an unschedulable pod is written again on every pass")
	}
	c.Apply(strings.Replace(deployment("big", 1, ""), "memory: 32Mi", "memory: 512Mi", 1))
	c.Sync()
	for _, p := range c.Active() {
		if p.Spec.NodeName == "" {
			t.Fatalf("512Mi pod should fit n3, still pending: %+v", p.Status.Conditions)
		}
	}
	c.Apply(strings.Replace(deployment("huge", 1, ""), "memory: 32Mi", "memory: 2Gi", 1))
	c.Sync()
	found := false
	for _, p := range c.Pods() {
		if strings.HasPrefix(p.Metadata.Name, "huge") {
			found = true
			want := "0/3 nodes available: 3 insufficient memory"
			if got := p.Status.Condition("PodScheduled"); got == nil || got.Message != want {
				t.Fatalf("condition %+v, want %q", got, want)
			}
		}
	}
	if !found {
		t.Fatal("no huge pod")
	}
}

func TestControllers_RollingUpdateKeepsAvailability(t *testing.T) {
	c := newCluster(t)
	for _, n := range []string{"n1", "n2", "n3"} {
		c.AddNode(n, nil, "4", "4Gi")
	}
	c.Apply(deployment("web", 6, ""))
	c.Sync()
	for _, n := range []string{"n1", "n2", "n3"} {
		c.Agent(n)
	}
	c.Sync()
	c.Apply(strings.Replace(deployment("web", 6, ""), "demo:1", "demo:2", 1))
	maxPods := 0
	for round := 0; round < 30; round++ {
		c.Sync()
		ready, updated := 0, 0
		for _, p := range c.Active() {
			if p.Ready() {
				ready++
				if p.Spec.Containers[0].Image == "demo:2" {
					updated++
				}
			}
		}
		maxPods = max(maxPods, len(c.Active()))
		if ready < 5 {
			t.Fatalf("round %d: only %d ready pods (maxUnavailable 25%% of 6 allows 1 down)", round, ready)
		}
		if updated == 6 && len(c.Pods()) == 6 {
			if maxPods > 8 {
				t.Fatalf("up to %d active pods, maxSurge 25%% of 6 allows 8", maxPods)
			}
			if st := c.Deployment("web").Status; st.UpdatedReplicas != 6 || len(st.History) != 2 {
				t.Fatalf("status after the rollout %+v", st)
			}
			return
		}
		for _, n := range []string{"n1", "n2", "n3"} {
			c.Agent(n)
		}
	}
	t.Fatalf("rollout did not finish: %v", coretest.Names(c.Pods()))
}

func TestControllers_RecreateStopsAllFirst(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	recreate := func(image string) string {
		return strings.Replace(strings.Replace(deployment("web", 3, ""), "replicas: 3", "replicas: 3\n  strategy: {type: Recreate}", 1), "demo:1", image, 1)
	}
	c.Apply(recreate("demo:1"))
	c.Sync()
	c.Agent("n1")
	c.Apply(recreate("demo:2"))
	c.Sync() // its node fetches demo:2 first
	c.Agent("n1")
	c.Sync()
	for _, p := range c.Pods() {
		if !p.Terminating() {
			t.Fatalf("pod %s (%s) active while old pods stop", p.Metadata.Name, p.Spec.Containers[0].Image)
		}
	}
	c.Agent("n1") // the old pods are gone
	c.Sync()
	if got := len(c.Active()); got != 3 {
		t.Fatalf("%d pods after the old ones went, want 3: %v", got, coretest.Names(c.Pods()))
	}
	for _, p := range c.Pods() {
		if p.Spec.Containers[0].Image != "demo:2" {
			t.Fatalf("pod %s runs %s", p.Metadata.Name, p.Spec.Containers[0].Image)
		}
	}
}

func TestControllers_DaemonSetFollowsNodes(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "1", "1Gi")
	c.AddNode("n2", nil, "1", "1Gi")
	c.Apply(logsDaemons)
	c.Sync()
	if got := c.Placement(); got["n1"] != 1 || got["n2"] != 1 || len(got) != 2 {
		t.Fatalf("placement %v", got)
	}
	c.AddNode("n3", nil, "1", "1Gi")
	c.Sync()
	if got := c.Placement(); got["n3"] != 1 || len(got) != 3 {
		t.Fatalf("placement after join %v", got)
	}
	ds := c.Get(core.Key{Kind: core.KindDaemonSet, Namespace: "default", Name: "logs"}).(*core.DaemonSet)
	if ds.Status.DesiredNumberScheduled != 3 || ds.Status.CurrentNumberScheduled != 3 {
		t.Fatalf("status %+v", ds.Status)
	}
	// A deleted node's pods go with it, and it is told to stop everything.
	if err := c.Store.Update(ctx, func(tx core.Tx) error { return tx.Delete(core.Key{Kind: core.KindNode, Name: "n3"}) }); err != nil {
		t.Fatal(err)
	}
	c.Sync()
	if got := c.Placement(); got["n3"] != 0 || len(got) != 2 {
		t.Fatalf("placement after n3 was deleted %v", got)
	}
	if ds := c.Bus.Desired("n3"); ds == nil || len(ds.Pods) != 0 {
		t.Fatalf("deleted node's desired state %+v, want empty", ds)
	}
}

// A DaemonSet template change replaces its pods one node at a time.
func TestControllers_DaemonSetRollsOneNodeAtATime(t *testing.T) {
	c := newCluster(t)
	nodes := []string{"n1", "n2", "n3"}
	for _, n := range nodes {
		c.AddNode(n, nil, "1", "1Gi")
	}
	c.Apply(logsDaemons)
	c.Sync()
	for _, n := range nodes {
		c.Agent(n)
	}
	c.Apply(strings.Replace(logsDaemons, "demo:1", "demo:2", 1))
	for round := 0; round < 20; round++ {
		c.Sync()
		down := 0
		for _, n := range nodes {
			running := false
			for _, p := range c.Active() {
				running = running || (p.Spec.NodeName == n && p.Ready())
			}
			if !running {
				down++
			}
		}
		if down > 1 {
			t.Fatalf("round %d: %d nodes without a ready pod: %v", round, down, coretest.Names(c.Pods()))
		}
		done := len(c.Pods()) == 3
		for _, p := range c.Pods() {
			done = done && p.Spec.Containers[0].Image == "demo:2" && p.Ready()
		}
		if done {
			return
		}
		for _, n := range nodes {
			c.Agent(n)
		}
	}
	t.Fatalf("rollout did not finish: %v", coretest.Names(c.Pods()))
}

func TestControllers_NodeLostReplacesDeploymentPodsOnly(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Apply(deployment("web", 4, ""))
	c.Apply(logsDaemons)
	c.Sync()
	c.Agent("n1")
	c.Agent("n2")
	c.Online("n2", false)
	if r := c.Node("n2").Ready(); r != core.ConditionUnknown {
		t.Fatalf("n2 Ready=%s after its agent went away", r)
	}
	c.Advance(2 * time.Second)
	c.Sync()
	if got := c.Placement(); got["n2"] != 3 {
		t.Fatalf("replaced before the grace period: %v", got)
	}
	c.Advance(4 * time.Second)
	c.Sync()
	got := c.Placement()
	if got["n1"] != 5 || got["n2"] != 1 {
		t.Fatalf("placement %v, want 4 web + 1 ds on n1 and only the ds pod on n2", got)
	}
	// n2 returns: the agent gets a desired state without the replaced pods
	// and the count converges to exactly 4.
	c.Online("n2", true)
	c.Sync()
	for _, p := range c.Bus.Desired("n2").Pods {
		if strings.HasPrefix(p.Metadata.Name, "web") {
			t.Fatalf("replaced pod %s still desired on n2", p.Metadata.Name)
		}
	}
	c.Agent("n2")
	c.Sync()
	web := 0
	for _, p := range c.Pods() {
		if strings.HasPrefix(p.Metadata.Name, "web") {
			web++
		}
	}
	if web != 4 {
		t.Fatalf("%d web pods after reconnect, want 4: %v", web, coretest.Names(c.Pods()))
	}
}

// twoNodesRunning is a cluster of n1 and n2 running a web deployment of n
// replicas whose pod template carries the annotation (YAML "key: value").
func twoNodesRunning(t *testing.T, n int, annotation string) *coretest.Cluster {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Apply(strings.Replace(deployment("web", n, ""), "    metadata: {labels: {app: web}}",
		"    metadata:\n      labels: {app: web}\n      annotations: {"+annotation+"}", 1))
	c.Sync()
	c.Agent("n1")
	c.Agent("n2")
	return c
}

// The node-lost grace can be set per workload.
func TestControllers_NodeLostGraceAnnotation(t *testing.T) {
	c := twoNodesRunning(t, 2, `edge.io/node-lost-grace-seconds: "60"`)
	c.Online("n2", false)
	c.Advance(30 * time.Second)
	c.Sync()
	if got := c.Placement(); got["n2"] != 1 {
		t.Fatalf("replaced before the workload's 60 s grace: %v", got)
	}
	c.Advance(31 * time.Second)
	c.Sync()
	if got := c.Placement(); got["n1"] != 2 || got["n2"] != 0 {
		t.Fatalf("placement %v after the grace", got)
	}
}

// A malformed grace annotation falls back to the cluster default.
func TestControllers_NodeLostGraceAnnotationInvalid(t *testing.T) {
	c := twoNodesRunning(t, 2, `edge.io/node-lost-grace-seconds: "soon"`)
	c.Online("n2", false)
	c.Advance(6 * time.Second) // past the default 5 s
	c.Sync()
	if got := c.Placement(); got["n1"] != 2 || got["n2"] != 0 {
		t.Fatalf("placement %v, want the default grace to apply", got)
	}
}

// With keep-original, a partitioned node's replicas are replaced while it
// is away and the replacements go when it returns; the originals survive.
func TestControllers_ReconnectKeepOriginal(t *testing.T) {
	c := twoNodesRunning(t, 4, "edge.io/reconnect-policy: keep-original")
	originals := map[string]bool{}
	for _, p := range c.Pods() {
		if p.Spec.NodeName == "n2" {
			originals[p.Metadata.Name] = true
		}
	}
	c.Online("n2", false)
	c.Advance(6 * time.Second)
	c.Sync()
	var lost, replacements int
	for _, p := range c.Pods() {
		switch {
		case originals[p.Metadata.Name]:
			if p.Terminating() || p.Status.Reason != core.ReasonNodeLost || p.Status.Phase != core.PodUnknown {
				t.Fatalf("original %s: terminating=%v phase=%s reason=%q", p.Metadata.Name, p.Terminating(), p.Status.Phase, p.Status.Reason)
			}
			lost++
		case p.Spec.NodeName == "n1":
			replacements++
		}
	}
	if lost != 2 || replacements != 4 {
		t.Fatalf("%d lost originals, %d pods on n1; want 2 and 4", lost, replacements)
	}
	if st := c.Deployment("web").Status; st.Replicas != 4 {
		t.Fatalf("status counts lost pods: %+v", st)
	}
	c.Agent("n1")
	// n2 returns and reports its originals running.
	c.Online("n2", true)
	c.Agent("n2")
	c.Sync()
	c.Agent("n1")
	c.Sync()
	active := 0
	for _, p := range c.Pods() {
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
		o, err := c.Store.Get(ctx, core.Key{Kind: core.KindPod, Namespace: "default", Name: name})
		if err != nil || o.(*core.Pod).Terminating() {
			t.Fatalf("original %s gone: %v", name, err)
		}
	}
}

func TestControllers_DeleteDeployment(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(deployment("web", 2, ""))
	c.Sync()
	c.Agent("n1")
	c.Delete(webKey)
	c.Sync()
	if len(c.Bus.Desired("n1").Pods) != 0 {
		t.Fatal("deleted deployment's pods still desired")
	}
	if got := len(c.Pods()); got != 2 {
		t.Fatalf("%d pods: they must stay, terminating, until the agent confirms", got)
	}
	c.Agent("n1")
	c.Sync()
	if n := len(c.Pods()); n != 0 {
		t.Fatalf("%d pods left", n)
	}
}

// A generated name that is taken is replaced, not fatal to the pass.
func TestControllers_NameCollision(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	names := []string{"web-same", "web-same", "web-same", "web-other"}
	c.Ctl.NewName = func(owner, hash string) string {
		n := names[0]
		names = names[1:]
		return n
	}
	c.Apply(deployment("web", 2, ""))
	c.Sync()
	if got := coretest.Names(c.Pods()); len(got) != 2 || got[0] != "web-other@n1" || got[1] != "web-same@n1" {
		t.Fatalf("pods %v, want web-other and web-same despite the collision", got)
	}
}

// After a master restart, nodes get the startup grace to reconnect; one
// that never does turns Unknown and then loses its replicas.
func TestControllers_StartupGrace(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Apply(deployment("web", 4, ""))
	c.Sync()
	c.Agent("n1")
	c.Agent("n2")
	// A new master process: fresh controllers and reports, same store.
	heard := map[string]bool{}
	c.Reports = &core.Reports{Store: c.Store, Now: c.Now}
	c.Ctl = c.NewControllers()
	c.Ctl.StartupGrace = 30 * time.Second
	c.Ctl.Online = func(node string) (bool, bool) { return heard[node], heard[node] }
	c.Sync()
	c.Online("n1", true)
	heard["n1"] = true
	c.Advance(20 * time.Second)
	c.Sync()
	if got := c.Placement(); got["n2"] != 2 {
		t.Fatalf("pods moved within the startup grace: %v", got)
	}
	if c.Node("n2").Ready() != core.ConditionTrue {
		t.Fatal("n2 went Unknown within the startup grace")
	}
	c.Advance(15 * time.Second) // past the startup grace: n2 turns Unknown
	c.Sync()
	if c.Node("n2").Ready() != core.ConditionUnknown || c.Node("n1").Ready() != core.ConditionTrue {
		t.Fatalf("n1 %s, n2 %s; want n2 Unknown as it never reconnected", c.Node("n1").Ready(), c.Node("n2").Ready())
	}
	if got := c.Placement(); got["n2"] != 2 {
		t.Fatalf("pods moved before the node-lost grace: %v", got)
	}
	c.Advance(6 * time.Second)
	c.Sync()
	if got := c.Placement(); got["n1"] != 4 || got["n2"] != 0 {
		t.Fatalf("placement %v, want all 4 on n1", got)
	}
}

// A node lost before the master restarted is counted lost only from the
// end of the startup grace: the new master cannot tell how long it has been
// away, and its agent may be reconnecting.
func TestControllers_NodeLostBeforeRestart(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Apply(deployment("web", 4, ""))
	c.Sync()
	c.Agent("n1")
	c.Agent("n2")
	c.Online("n2", false)
	c.Advance(time.Minute) // the master is down meanwhile
	c.Reports = &core.Reports{Store: c.Store, Now: c.Now}
	c.Ctl = c.NewControllers()
	c.Ctl.StartupGrace = 30 * time.Second
	c.Ctl.Online = func(node string) (bool, bool) { return node == "n1", node == "n1" }
	c.Sync()
	c.Advance(34 * time.Second) // startup grace + less than the node-lost grace
	c.Sync()
	if got := c.Placement(); got["n2"] != 2 {
		t.Fatalf("placement %v: replaced before startup grace + node-lost grace", got)
	}
	c.Advance(time.Second)
	c.Sync()
	if got := c.Placement(); got["n1"] != 4 || got["n2"] != 0 {
		t.Fatalf("placement %v, want all 4 on n1", got)
	}
}

// A node that is not Ready cannot fetch anything: it does not hold a
// rollout back.
func TestControllers_NotReadyNodeDoesNotHoldRollout(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	recreate := strings.Replace(deployment("web", 1, ""), "replicas: 1", "replicas: 1\n  strategy: {type: Recreate}", 1)
	c.Apply(recreate)
	c.Sync()
	c.Agent("n1")
	c.Online("n1", false)
	c.Apply(strings.Replace(recreate, "demo:1", "demo:2", 1))
	c.Sync()
	if got := coretest.Names(c.Pods()); len(got) != 1 || !strings.HasSuffix(got[0], "(terminating)") {
		t.Fatalf("pods %v, want the old one stopping", got)
	}
}

func TestControllers_RolloutHistoryAndUndo(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(deployment("web", 2, ""))
	c.Sync()
	c.Agent("n1")
	c.Apply(strings.Replace(deployment("web", 2, ""), "demo:1", "demo:2", 1))
	for i := 0; i < 10; i++ {
		c.Sync()
		c.Agent("n1")
	}
	h := c.Deployment("web").Status.History
	if len(h) != 2 || h[0].Template.Spec.Containers[0].Image != "demo:1" || h[1].Revision != 2 {
		t.Fatalf("history %+v", h)
	}
	rev, err := core.Undo(ctx, c.Store, webKey, 0)
	if err != nil || rev != 1 {
		t.Fatalf("undo: %d %v", rev, err)
	}
	for i := 0; i < 10; i++ {
		c.Sync()
		c.Agent("n1")
	}
	for _, p := range c.Pods() {
		if p.Spec.Containers[0].Image != "demo:1" {
			t.Fatalf("pod %s still runs %s after undo", p.Metadata.Name, p.Spec.Containers[0].Image)
		}
	}
	d := c.Deployment("web")
	h = d.Status.History
	if len(h) != 2 || h[1].Hash != core.TemplateHash(&d.Spec.Template) || h[1].Revision != 3 || h[0].Revision != 2 {
		t.Fatalf("history after undo %+v", h)
	}
	if _, err := core.Undo(ctx, c.Store, webKey, 42); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("undo to a missing revision: %v", err)
	}
}

// A rollout does not stop a ready old pod until its node holds the new
// image, and tells the node to fetch it first.
func TestControllers_PrefetchBeforeStop(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	recreate := strings.Replace(deployment("web", 1, ""), "replicas: 1", "replicas: 1\n  strategy: {type: Recreate}", 1)
	c.Apply(recreate)
	c.Sync()
	c.Agent("n1")
	c.Apply(strings.Replace(recreate, "demo:1", "demo:2", 1))
	c.Sync()
	ds := c.Bus.Desired("n1")
	if len(ds.Prefetch) != 1 || ds.Prefetch[0] != "demo:2" {
		t.Fatalf("prefetch %v, want [demo:2]", ds.Prefetch)
	}
	if ds.Hash == core.DesiredFor("n1", c.Pods()).Hash {
		t.Fatal("the hash of a desired state does not cover its prefetch list: the agent would not see the change")
	}
	for _, p := range c.Pods() {
		if p.Terminating() {
			t.Fatal("the old pod is stopping before its node has the new image")
		}
	}
	c.Agent("n1") // reports demo:2 pulled
	c.Sync()
	stopping := 0
	for _, p := range c.Pods() {
		if p.Terminating() {
			stopping++
		}
	}
	if stopping != 1 {
		t.Fatalf("%d pods stopping once the image is there, want 1", stopping)
	}
}

// A node that never fetches the new image holds a rollout back for at most
// PrefetchTimeout.
func TestControllers_PrefetchTimeout(t *testing.T) {
	c := newCluster(t)
	c.Ctl.PrefetchTimeout = time.Minute
	c.AddNode("n1", nil, "4", "4Gi")
	recreate := strings.Replace(deployment("web", 1, ""), "replicas: 1", "replicas: 1\n  strategy: {type: Recreate}", 1)
	c.Apply(recreate)
	c.Sync()
	c.Agent("n1")
	c.Apply(strings.Replace(recreate, "demo:1", "demo:2", 1))
	c.Sync()
	// The agent never reports the new image.
	c.Advance(30 * time.Second)
	c.Sync()
	if len(c.Active()) != 1 || c.Active()[0].Spec.Containers[0].Image != "demo:1" {
		t.Fatalf("pods within the prefetch timeout %v", coretest.Names(c.Pods()))
	}
	c.Advance(31 * time.Second)
	c.Sync()
	if got := len(c.Active()); got != 0 {
		t.Fatalf("%d active pods after the prefetch timeout, want the old one stopping", got)
	}
}

func TestControllers_TerminalPodsReplaced(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(deployment("web", 2, ""))
	c.Sync()
	failed := c.Pods()[0]
	c.AgentWith("n1", func(p *core.Pod) *core.PodStatus {
		if p.Metadata.UID == failed.Metadata.UID {
			return &core.PodStatus{Phase: core.PodFailed, Reason: "Error"}
		}
		return coretest.Running(p)
	})
	c.Sync()
	if _, err := c.Store.Get(ctx, core.KeyOf(failed)); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("failed pod still stored (%v): it need not be stopped", err)
	}
	if got := c.Placement(); got["n1"] != 2 {
		t.Fatalf("placement %v, want the failed pod replaced", got)
	}
}

// Pods whose owner is gone are terminated; bare pods are scheduled and left alone.
func TestControllers_OrphansAndBarePods(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply("apiVersion: v1\nkind: Pod\nmetadata: {name: bare}\nspec:\n  containers: [{name: c, image: demo:1}]\n")
	orphan := &core.Pod{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindPod},
		Metadata: core.ObjectMeta{Name: "orphan", Namespace: "default",
			OwnerReferences: []core.OwnerReference{{Kind: core.KindDeployment, Name: "gone", UID: "gone-uid", Controller: true}}},
		Spec: core.PodSpec{NodeName: "n1", Containers: []core.Container{{Name: "c", Image: "demo:1"}}}}
	if err := c.Store.Update(ctx, func(tx core.Tx) error { return tx.Create(orphan) }); err != nil {
		t.Fatal(err)
	}
	c.Sync()
	got := coretest.Names(c.Pods())
	if len(got) != 2 || got[0] != "bare@n1" || got[1] != "orphan@n1(terminating)" {
		t.Fatalf("pods %v, want bare scheduled and orphan terminating", got)
	}
	if ds := c.Bus.Desired("n1"); len(ds.Pods) != 1 || ds.Pods[0].Metadata.Name != "bare" {
		t.Fatalf("desired %+v", ds.Pods)
	}
	c.Agent("n1")
	c.Sync()
	if got := coretest.Names(c.Pods()); len(got) != 1 || got[0] != "bare@n1" {
		t.Fatalf("pods %v after the agent confirmed", got)
	}
	// Its node is deleted: no agent can confirm a stop, the pod goes.
	if err := c.Store.Update(ctx, func(tx core.Tx) error { return tx.Delete(core.Key{Kind: core.KindNode, Name: "n1"}) }); err != nil {
		t.Fatal(err)
	}
	c.Sync()
	if got := coretest.Names(c.Pods()); len(got) != 0 {
		t.Fatalf("pods %v of a deleted node", got)
	}
}

// Allocation skips network and broadcast addresses of each /24.
func TestControllers_ClusterIPsSkipReserved(t *testing.T) {
	c := newCluster(t)
	var docs []string
	for i := 0; i < 250; i++ {
		docs = append(docs, fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: s%03d}\nspec:\n  ports: [{port: 80}]\n", i))
	}
	c.Apply(strings.Join(docs, "---\n"))
	seen := map[string]bool{}
	svcs, _ := core.ListAs[*core.Service](ctx, c.Store, core.KindService, "")
	for _, s := range svcs {
		ip := s.Spec.ClusterIP
		if ip == "" || seen[ip] || strings.HasSuffix(ip, ".0") || strings.HasSuffix(ip, ".255") || !strings.HasPrefix(ip, "10.43.") {
			t.Fatalf("service %s got %q", s.Metadata.Name, ip)
		}
		seen[ip] = true
	}
	if !seen["10.43.1.1"] || seen["10.43.0.255"] || seen["10.43.1.0"] {
		t.Fatal("allocation does not continue into 10.43.1.0/24 past the reserved addresses")
	}
}

func TestControllers_PublishFailureFailsThePass(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(deployment("web", 1, ""))
	boom := core.Errorf(core.EUNAVAILABLE, "broker down")
	c.Bus.Fail(boom)
	if err := c.Ctl.Sync(ctx); err != boom {
		t.Fatalf("Sync = %v, want the bus error", err)
	}
	c.Bus.Fail(nil)
	c.Sync() // publishes what it could not before
	if ds := c.Bus.Desired("n1"); ds == nil || len(ds.Pods) != 1 {
		t.Fatalf("desired %+v after the bus recovered", ds)
	}
}

// The loop started by Open runs a pass on store events and on Kick, and
// Close stops it.
func TestControllers_OpenRunsOnEventsAndKick(t *testing.T) {
	var mu sync.Mutex
	now := coretest.Start
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := core.NewMemoryStore()
	s.Now = clock
	s.WatchBuffer = 1 // the loop's own writes overflow its watch: it must watch again
	bus := &coretest.Bus{}
	// No resync within the test: only events and Kick run passes.
	ctl := &core.Controllers{Store: s, Bus: bus, Now: clock, Resync: time.Hour}
	reports := &core.Reports{Store: s, Now: clock}
	ctl.Open()
	defer ctl.Close()
	if err := reports.NodeOnline(ctx, "n1", true); err != nil {
		t.Fatal(err)
	}
	res := core.ResourceList{"cpu": "4", "memory": "4Gi"}
	if err := reports.NodeReport(ctx, &core.NodeReport{Node: "n1", Status: core.NodeStatus{Allocatable: res}}); err != nil {
		t.Fatal(err)
	}
	objs, err := core.DecodeManifests([]core.ManifestFile{{Name: "a.yaml", Data: []byte(deployment("web", 2, ""))}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.Apply(ctx, s, objs, clock(), core.NetworkConfig{}); err != nil {
		t.Fatal(err)
	}
	if !bus.WaitFor(10*time.Second, func() bool { ds := bus.Desired("n1"); return ds != nil && len(ds.Pods) == 2 }) {
		t.Fatalf("desired state of n1: %+v", bus.Desired("n1"))
	}
	for _, p := range bus.Desired("n1").Pods {
		if !strings.HasPrefix(p.Metadata.Name, "web-") || len(p.Metadata.Name) != len("web-")+len(p.Metadata.Labels[core.LabelTemplateHash])+6 {
			t.Fatalf("default pod name %q, want web-<hash>-<5 chars>", p.Metadata.Name)
		}
	}
	// The node goes away and, with no further store event, time passes:
	// only a kicked pass can notice that its pods are lost.
	if err := reports.NodeOnline(ctx, "n1", false); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	ctl.Kick()
	ctl.Kick() // coalesced
	if !bus.WaitFor(10*time.Second, func() bool { return len(bus.Desired("n1").Pods) == 0 }) {
		t.Fatalf("lost pods still desired on n1: %+v", bus.Desired("n1").Pods)
	}
	ctl.Close()
	ctl.Close() // idempotent
}

// A report from one node must not change pods bound to another.
func TestReports_NodeCannotReportForOthers(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Apply(deployment("web", 2, ""))
	c.Sync()
	var onN2 *core.Pod
	for _, p := range c.Pods() {
		if p.Spec.NodeName == "n2" {
			onN2 = p
		}
	}
	before := onN2.Metadata.ResourceVersion
	c.Report(&core.NodeReport{Node: "n1", Pods: []core.PodReport{{
		Namespace: "default", Name: onN2.Metadata.Name, UID: onN2.Metadata.UID, Status: core.PodStatus{Phase: core.PodFailed}}}})
	if o := c.Get(core.KeyOf(onN2)); o.GetMeta().ResourceVersion != before {
		t.Fatal("n1's report changed a pod on n2")
	}
}

// Reports that repeat what is stored write nothing.
func TestReports_UnchangedWritesNothing(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(deployment("web", 10, ""))
	c.Sync()
	c.Agent("n1")
	c.Sync()
	before := c.Writes()
	for i := 0; i < 20; i++ {
		c.Agent("n1")
		c.Online("n1", true)
		c.Advance(time.Second)
		c.Sync()
	}
	if w := c.Writes() - before; w != 0 {
		t.Fatalf("%d writes while idle", w)
	}
}

func TestEvents_StoreDedupTrimGC(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Apply(deployment("web", 2, ""))
	c.Sync()
	var p1 *core.Pod
	for _, p := range c.Pods() {
		if p.Spec.NodeName == "n1" {
			p1 = p
		}
	}
	ev := func(id uint64) core.PodEvent {
		return core.PodEvent{ID: id, Time: core.NewTime(c.Now().Add(time.Duration(id) * time.Second)), Namespace: "default",
			Pod: p1.Metadata.Name, UID: p1.Metadata.UID, Type: core.EventNormal, Reason: "Started", Message: fmt.Sprint(id)}
	}
	if err := c.Reports.NodeEvents(ctx, "n1", []core.PodEvent{ev(1), ev(2), ev(2)}); err != nil {
		t.Fatal(err)
	}
	if err := c.Reports.NodeEvents(ctx, "n2", []core.PodEvent{ev(3)}); err != nil { // n2 speaks of n1's pod
		t.Fatal(err)
	}
	events, _ := core.ListAs[*core.EventObj](ctx, c.Store, core.KindEvent, "")
	if len(events) != 2 || events[0].Message == events[1].Message {
		t.Fatalf("%d events stored, want 2 (a repeat and a foreign one dropped)", len(events))
	}
	var many []core.PodEvent
	for i := 10; i < 10+core.MaxEventsPerPod+5; i++ {
		many = append(many, ev(uint64(i)))
	}
	if err := c.Reports.NodeEvents(ctx, "n1", many); err != nil {
		t.Fatal(err)
	}
	events, _ = core.ListAs[*core.EventObj](ctx, c.Store, core.KindEvent, "")
	mine := core.EventsFor(events, p1.Metadata.UID)
	if len(mine) != core.MaxEventsPerPod || mine[len(mine)-1].Message != fmt.Sprint(10+core.MaxEventsPerPod+4) ||
		mine[0].Message != fmt.Sprint(10+5) {
		t.Fatalf("%d events kept (first %q, last %q)", len(mine), mine[0].Message, mine[len(mine)-1].Message)
	}
	// The pod goes: so do its events.
	c.Delete(webKey)
	c.Sync()
	c.Agent("n1")
	c.Agent("n2")
	c.Sync()
	if events, _ = core.ListAs[*core.EventObj](ctx, c.Store, core.KindEvent, ""); len(events) != 0 {
		t.Fatalf("%d events outlive their pod", len(events))
	}
}
