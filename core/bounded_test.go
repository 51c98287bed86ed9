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

// txCounter is a store that records how many objects each transaction
// writes: no controller transaction may cover a whole large pass.
type txCounter struct {
	core.Store
	mu     sync.Mutex
	writes []int
}

type countingTx struct {
	core.Tx
	n *int
}

func (t countingTx) Create(o core.Object) error { *t.n++; return t.Tx.Create(o) }
func (t countingTx) Put(o core.Object) error    { *t.n++; return t.Tx.Put(o) }
func (t countingTx) Delete(k core.Key) error    { *t.n++; return t.Tx.Delete(k) }

func (s *txCounter) Update(ctx context.Context, fn func(core.Tx) error) error {
	n := 0
	err := s.Store.Update(ctx, func(tx core.Tx) error { return fn(countingTx{tx, &n}) })
	s.mu.Lock()
	s.writes = append(s.writes, n)
	s.mu.Unlock()
	return err
}

func (s *txCounter) reset() (largest, count int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.writes {
		largest = max(largest, n)
		if n > 0 {
			count++
		}
	}
	s.writes = nil
	return largest, count
}

func countingCluster(t *testing.T) (*coretest.Cluster, *txCounter) {
	var counter *txCounter
	c := coretest.NewCluster(t, func(now func() time.Time) core.Store {
		s := core.NewMemoryStore()
		s.Now = now
		counter = &txCounter{Store: s}
		return counter
	})
	return c, counter
}

// A huge scale-up is created in growing batches (Kubernetes' slow start),
// never more than MaxCreatesPerPass a pass, and no transaction writes more
// than a batch: deletes and applies sent meanwhile get through between them.
func TestControllers_SlowStartAndSmallTransactions(t *testing.T) {
	c, counter := countingCluster(t)
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		c.AddNode(n, nil, "1000", "1000Gi")
	}
	c.Apply(deployment("big", 5000, ""))
	ctx := context.Background()
	var created []int
	for pass := 0; pass < 12 && len(c.Pods()) < 5000; pass++ {
		before := len(c.Pods())
		counter.reset()
		if err := c.Ctl.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		created = append(created, len(c.Pods())-before)
		if largest, _ := counter.reset(); largest > 520 {
			t.Fatalf("pass %d wrote %d objects in one transaction", pass, largest)
		}
	}
	want := []int{32, 64, 128, 256, 512, 1024, 2000, 984}
	if len(created) != len(want) {
		t.Fatalf("pods created per pass = %v, want %v", created, want)
	}
	for i := range want {
		if created[i] != want[i] {
			t.Fatalf("pods created per pass = %v, want %v", created, want)
		}
	}
	// Scheduling 5000 pending pods is split into transactions too.
	c.Sync()
	for _, p := range c.Pods() {
		if p.Spec.NodeName == "" {
			t.Fatalf("pod %s still pending: %+v", p.Metadata.Name, p.Status.Conditions)
		}
	}
}

// Scaling a workload down to zero while it is being created stops at once.
func TestControllers_DeleteDuringScaleUp(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "64", "64Gi")
	c.Apply(deployment("big", 5000, ""))
	ctx := context.Background()
	if err := c.Ctl.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	c.Delete(core.Key{Kind: core.KindDeployment, Namespace: "default", Name: "big"})
	c.Sync()
	for _, p := range c.Pods() {
		if !p.Terminating() {
			t.Fatalf("pod %s of a deleted deployment is not terminating", p.Metadata.Name)
		}
	}
	if n := len(c.Pods()); n > 500 {
		t.Fatalf("%d pods exist after deleting a deployment mid-scale-up", n)
	}
}

// replicas is capped with an error that says the cap.
func TestValidate_ReplicasCap(t *testing.T) {
	_, err := core.DecodeManifest([]byte(deployment("web", 1000000, "")))
	if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "spec.replicas") || !strings.Contains(err.Error(), "10000") {
		t.Fatalf("replicas 1000000: %v", err)
	}
	if _, err := core.DecodeManifest([]byte(deployment("web", core.MaxReplicas, ""))); err != nil {
		t.Fatalf("replicas at the cap: %v", err)
	}
}

// A pod on a node that stopped answering turns Ready=False at once, while
// it waits out the grace before its replacement.
func TestControllers_PodsOnLostNodeNotReady(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Apply(deployment("web", 2, ""))
	c.Sync()
	c.Agent("n1")
	c.Agent("n2")
	c.Sync()
	if d := c.Deployment("web"); d.Status.ReadyReplicas != 2 {
		t.Fatalf("ready replicas %d", d.Status.ReadyReplicas)
	}
	c.Online("n2", false)
	c.Sync()
	for _, p := range c.Pods() {
		cond := p.Status.Condition("Ready")
		switch p.Spec.NodeName {
		case "n2":
			if p.Ready() || cond == nil || cond.Status != core.ConditionFalse || cond.Reason != core.ReasonNodeNotReady {
				t.Fatalf("pod %s on the lost node: Ready() = %v, condition %+v", p.Metadata.Name, p.Ready(), cond)
			}
		case "n1":
			if !p.Ready() {
				t.Fatalf("pod %s on the healthy node is not ready", p.Metadata.Name)
			}
		}
	}
	if d := c.Deployment("web"); d.Status.ReadyReplicas != 1 {
		t.Fatalf("ready replicas %d while n2 is away, want 1", d.Status.ReadyReplicas)
	}
	// The node returns and its agent reports: ready again.
	c.Online("n2", true)
	c.Agent("n2")
	c.Sync()
	for _, p := range c.Pods() {
		if !p.Ready() {
			t.Fatalf("pod %s not ready after its node returned", p.Metadata.Name)
		}
	}
}

// The scheduler honours a node's pod capacity.
func TestSchedule_PodCapacity(t *testing.T) {
	res := core.ResourceList{"cpu": "4", "memory": "4Gi", "pods": "2"}
	n := &core.Node{Metadata: core.ObjectMeta{Name: "n1"}, Status: core.NodeStatus{Allocatable: res,
		Conditions: []core.NodeCondition{{Type: "Ready", Status: core.ConditionTrue}}}}
	usage := map[string]*core.NodeUsage{"n1": {Pods: 2, Owners: map[string]int{}}}
	node, why := core.Schedule(&core.Pod{}, []*core.Node{n}, usage)
	if node != "" || !strings.Contains(why, "too many pods") {
		t.Fatalf("schedule onto a full node = %q, %q", node, why)
	}
	usage["n1"].Pods = 1
	if node, why := core.Schedule(&core.Pod{}, []*core.Node{n}, usage); node != "n1" {
		t.Fatalf("schedule onto a node with room = %q, %q", node, why)
	}
}

// An agent that reports another desired-state hash than the master
// published (it lost its local state) gets its desired state again, once
// the report cannot simply be one sent before the publish arrived.
func TestControllers_RepublishOnHashMismatch(t *testing.T) {
	c := newCluster(t)
	c.Reports.DesiredHash = c.Ctl.CheckDesired
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(deployment("web", 1, ""))
	c.Sync()
	want := c.Bus.Desired("n1").Hash
	before := c.Bus.Published("n1")
	report := func(hash string) {
		c.Report(&core.NodeReport{Node: "n1", DesiredHash: hash, Labels: map[string]string{core.LabelHostname: "n1"},
			Status: c.Node("n1").Status})
		c.Sync()
	}
	report("") // right after the publish: may be in flight
	if got := c.Bus.Published("n1"); got != before {
		t.Fatalf("republished %d times for a report that may predate the publish", got-before)
	}
	c.Advance(11 * time.Second)
	report(want) // in step: nothing to do
	if got := c.Bus.Published("n1"); got != before {
		t.Fatalf("republished %d times though the agent is in step", got-before)
	}
	report("") // lost its state
	if got := c.Bus.Published("n1"); got != before+1 {
		t.Fatalf("published %d times after the agent reported no desired state, want once more", got-before)
	}
	if c.Bus.Desired("n1").Hash != want {
		t.Fatal("republished another desired state")
	}
	report("") // again at once: rate limited
	if got := c.Bus.Published("n1"); got != before+1 {
		t.Fatalf("republished again within the limit (%d)", got-before)
	}
	// A node that keeps claiming another hash waits twice as long each time.
	c.Advance(11 * time.Second)
	report("")
	if got := c.Bus.Published("n1"); got != before+1 {
		t.Fatalf("republished after 11s the second time (%d); the wait doubles", got-before)
	}
	c.Advance(10 * time.Second)
	report("")
	if got := c.Bus.Published("n1"); got != before+2 {
		t.Fatalf("published %d times after 21s, want a second republish", got-before)
	}
	// In step again: the wait starts over.
	c.Advance(time.Minute)
	report(want)
	c.Advance(11 * time.Second)
	report("")
	if got := c.Bus.Published("n1"); got != before+3 {
		t.Fatalf("published %d times: the wait did not start over once the agent was in step", got-before)
	}
}

// hookStore runs before once, just before the next transaction: something
// that happens between a pass's snapshot and its writes.
type hookStore struct {
	core.Store
	mu     sync.Mutex
	before func()
}

func (s *hookStore) arm(f func()) { s.mu.Lock(); s.before = f; s.mu.Unlock() }

func (s *hookStore) Update(ctx context.Context, fn func(core.Tx) error) error {
	s.mu.Lock()
	f := s.before
	s.before = nil
	s.mu.Unlock()
	if f != nil {
		f()
	}
	return s.Store.Update(ctx, fn)
}

// A node that returns between a pass's snapshot and its writes must not
// have its pods marked not ready after its agent already reported them
// (the report changed nothing, so nothing would ever clear the mark).
func TestControllers_NodeReturnsMidPass(t *testing.T) {
	var hs *hookStore
	c := coretest.NewCluster(t, func(now func() time.Time) core.Store {
		s := core.NewMemoryStore()
		s.Now = now
		hs = &hookStore{Store: s}
		return hs
	})
	c.AddNode("n1", nil, "4", "4Gi")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Apply(deployment("web", 2, ""))
	c.Sync()
	c.Agent("n1")
	c.Agent("n2")
	c.Sync()
	c.Online("n2", false) // stored before the next pass's snapshot
	hs.arm(func() {
		c.Online("n2", true)
		c.Agent("n2") // the same status as before: nothing written
	})
	c.Sync()
	c.Sync()
	for _, p := range c.Pods() {
		if !p.Ready() {
			t.Fatalf("pod %s on %s is not ready after its node returned: %+v", p.Metadata.Name, p.Spec.NodeName, p.Status.Conditions)
		}
	}
}

// BenchmarkIdlePass2000Deployments is one control-loop pass over 2,000
// one-replica deployments that are all running: what an idle master pays
// every second.
func BenchmarkIdlePass2000Deployments(b *testing.B) {
	c := coretest.NewMemoryCluster(b)
	var nodes []string
	for i := 0; i < 10; i++ {
		nodes = append(nodes, fmt.Sprintf("n%d", i))
		c.AddNode(nodes[i], nil, "1000", "1000Gi")
	}
	var docs []string
	for i := 0; i < 2000; i++ {
		docs = append(docs, deployment(fmt.Sprintf("d%04d", i), 1, ""))
	}
	c.Apply(strings.Join(docs, "---\n"))
	c.Settle(nodes...)
	writes := c.Writes()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Ctl.Sync(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if w := c.Writes() - writes; w != 0 {
		b.Fatalf("%d writes in idle passes", w)
	}
}

// A manifest document is at most 1.5 MiB, and a pod's lists are bounded.
func TestDecode_SizeLimits(t *testing.T) {
	big := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    args: [" +
		strings.Repeat(`"aaaaaaaaaaaaaaaa",`, 90000) + `"a"]` + "\n"
	_, err := core.DecodeManifests([]core.ManifestFile{{Name: "big.yaml", Data: []byte(big)}})
	if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "big.yaml") || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("a %d-byte document: %v", len(big), err)
	}
	many := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    args: [" +
		strings.Repeat(`"a",`, 2000) + `"a"]` + "\n"
	_, err = core.DecodeManifests([]core.ManifestFile{{Name: "many.yaml", Data: []byte(many)}})
	if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "spec.containers[0].args") {
		t.Fatalf("2001 args: %v", err)
	}
}

// A Parallel StatefulSet's scale-up is bounded like a Deployment's: slow
// start, and no transaction, which makes pods with their claims, writes
// more than a batch (3,000 replicas were 6,001 objects in one).
func TestControllers_StatefulSetSlowStartAndSmallTransactions(t *testing.T) {
	c, counter := countingCluster(t)
	c.AddNode("n1", nil, "1000", "1000Gi")
	c.Apply(statefulSetYAML(3000, "  podManagementPolicy: Parallel\n"))
	ctx := context.Background()
	var created []int
	for pass := 0; pass < 40 && len(c.Pods()) < 3000; pass++ {
		before := len(c.Pods())
		counter.reset()
		if err := c.Ctl.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		created = append(created, len(c.Pods())-before)
		if largest, _ := counter.reset(); largest > 520 {
			t.Fatalf("pass %d wrote %d objects in one transaction (created per pass: %v)", pass, largest, created)
		}
	}
	if len(c.Pods()) != 3000 || created[0] != 32 {
		t.Fatalf("%d pods; created per pass %v, want 3000 starting with 32", len(c.Pods()), created)
	}
	// Every pod's claim was made with it.
	for _, p := range c.Pods() {
		k := core.Key{Kind: core.KindPersistentVolumeClaim, Namespace: "default", Name: "data-" + p.Metadata.Name}
		if _, err := c.Store.Get(ctx, k); err != nil {
			t.Fatalf("claim of %s: %v", p.Metadata.Name, err)
		}
	}
}

// Slow start holds for a workload the pass's budget starved: its batch
// grows only after it created a whole one, so when the budget frees up it
// does not jump to the largest batch at once.
func TestControllers_SlowStartWhenStarved(t *testing.T) {
	c := newCluster(t)
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		c.AddNode(n, nil, "1000", "1000Gi")
	}
	c.Apply(deployment("a", 6000, ""))
	c.Apply(deployment("b", 6000, ""))
	ctx := context.Background()
	count := func() int {
		n := 0
		for _, p := range c.Pods() {
			if strings.HasPrefix(p.Metadata.Name, "b-") {
				n++
			}
		}
		return n
	}
	var batches []int
	largest := 0
	for pass := 0; pass < 30 && count() < 6000; pass++ {
		before := count()
		if err := c.Ctl.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		n := count() - before
		batches = append(batches, n)
		if largest > 0 && n > 2*largest {
			t.Fatalf("b's batches %v: %d after at most %d (slow start skipped while starved)", batches, n, largest)
		}
		largest = max(largest, n)
	}
	if count() != 6000 {
		t.Fatalf("b has %d pods after %v", count(), batches)
	}
}
