package edgeagent

import (
	"slices"
	"sync"
	"testing"

	"github.com/edgeorch/edge/core"
)

// fakeServices records what the agent asks the node's service proxy.
type fakeServices struct {
	mu    sync.Mutex
	syncs int
	last  *core.NetworkState
	ready map[string]bool // pod uid -> ready, as local() said at the last sync
}

func (f *fakeServices) Sync(ns *core.NetworkState, local func(string) (bool, bool)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	f.last = ns
	f.ready = map[string]bool{}
	for _, s := range ns.Services {
		for _, e := range s.Endpoints {
			if r, ok := local(e.PodUID); ok {
				f.ready[e.PodUID] = r
			}
		}
	}
	return nil
}

func (f *fakeServices) state() (int, string, map[string]bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	hash := ""
	if f.last != nil {
		hash = f.last.Hash
	}
	return f.syncs, hash, f.ready
}

func netState(hash string, eps ...core.NetEndpoint) *core.NetworkState {
	return &core.NetworkState{Hash: hash, ClusterDomain: "cluster.local", ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16",
		Services: []core.NetService{{Namespace: "default", Name: "web-api", Type: core.ServiceClusterIP, ClusterIP: "10.43.0.10",
			Ports:     []core.ServicePort{{Name: "http", Port: 80, Protocol: "TCP"}, {Name: "dns", Port: 53, Protocol: "UDP"}},
			Endpoints: eps},
			{Namespace: "default", Name: "db", ClusterIP: core.ClusterIPNone, Ports: []core.ServicePort{{Port: 5432, Protocol: "TCP"}}},
			{Namespace: "other", Name: "x", ClusterIP: "10.43.0.11", Ports: []core.ServicePort{{Port: 1, Protocol: "TCP"}}}}}
}

// The agent hands the service proxy the network state with its own pods'
// readiness, syncs again when a local pod's readiness changes (master or
// not), keeps the state on disk for a restart, and gives containers the
// services' variables.
func TestAgentSyncsServicesWithLocalReadiness(t *testing.T) {
	clk := newFakeClock()
	rt := newFakeRuntime(clk.Now)
	rt.addImage("busybox")
	dir := t.TempDir()
	svc := &fakeServices{}
	a := newTestAgent(t, rt, clk, dir)
	a.Reporter = &fakeReporter{}
	a.Services = svc
	if err := a.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })

	c := busybox("app")
	c.Env = []core.EnvVar{{Name: "WEB_API_SERVICE_PORT", Value: "overridden"}}
	pod := testPod("web", c)
	a.SetNetwork(netState("n1", core.NetEndpoint{IP: "10.42.0.5", Node: "pi", PodUID: pod.Metadata.UID, Ready: false}))
	waitUntil(t, "a sync with the network state", func() bool { _, h, _ := svc.state(); return h == "n1" })
	a.SetDesired(desired("h1", pod))
	waitRunning(t, a, pod, 0)
	// The pod runs and (no probe) is ready: a sync follows with local
	// readiness true, though the published state still says not ready.
	waitUntil(t, "a sync seeing the local pod ready", func() bool { _, _, r := svc.state(); return r[pod.Metadata.UID] })

	env := rt.config(containerID(pod, "app")).Env
	for _, want := range []string{"WEB_API_SERVICE_HOST=10.43.0.10", "WEB_API_SERVICE_PORT=overridden", "WEB_API_SERVICE_PORT_DNS=53",
		"WEB_API_PORT=tcp://10.43.0.10:80", "WEB_API_PORT_53_UDP_PROTO=udp"} {
		if !slices.Contains(env, want) {
			t.Errorf("container env lacks %s: %v", want, env)
		}
	}
	if i, j := slices.Index(env, "WEB_API_SERVICE_PORT=80"), slices.Index(env, "WEB_API_SERVICE_PORT=overridden"); i > j {
		t.Errorf("the container's own env must come after (and override) service variables: %v", env)
	}
	for _, e := range env {
		if e == "DB_SERVICE_HOST=None" || e[:2] == "X_" {
			t.Errorf("env of a headless or foreign-namespace service: %s", e)
		}
	}

	// The same state again does not sync again.
	n, _, _ := svc.state()
	a.SetNetwork(netState("n1"))
	a.kickNetwork()
	a.SetNetwork(netState("n2", core.NetEndpoint{IP: "10.42.0.5", Node: "pi", PodUID: pod.Metadata.UID, Ready: true}))
	waitUntil(t, "a sync of the new state", func() bool { _, h, _ := svc.state(); return h == "n2" })
	if m, _, _ := svc.state(); m != n+1 {
		t.Fatalf("%d syncs for one new state", m-n)
	}

	// A restarted agent starts from the saved state.
	a.Close()
	svc2 := &fakeServices{}
	b := newTestAgent(t, rt, clk, dir)
	b.Services = svc2
	if err := b.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	waitUntil(t, "the restarted agent syncing the saved state", func() bool { _, h, _ := svc2.state(); return h == "n2" })
}
