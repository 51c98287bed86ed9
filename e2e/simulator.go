package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/mqtt"
)

// SimulatedFleet is a fleet of hollow agents, a load generator for
// benchmarks only (like kubemark's hollow nodes): each joins with the real
// join API and speaks the real MQTT protocol through mqtt.Agent, but runs
// nothing; every pod it is given is reported Running at once.
type SimulatedFleet struct {
	Master string // API URL
	Token  string // join token
	Prefix string // node names: <prefix>-0001, ...
	// KeepAlive of the hollow agents' MQTT connections.
	KeepAlive time.Duration

	nodes   []*hollowNode
	running atomic.Int64
}

type hollowNode struct {
	name  string
	agent *mqtt.Agent
	mu    sync.Mutex
	pods  []*core.Pod
	fleet *SimulatedFleet
}

// Start joins and connects n hollow nodes, concurrency at a time.
func (f *SimulatedFleet) Start(ctx context.Context, n, concurrency int) error {
	jt, err := api.ParseJoinToken(f.Token)
	if err != nil {
		return err
	}
	client := api.NewClient(f.Master, f.Token, api.PinnedTLS(jt.CAHash))
	sem := make(chan struct{}, concurrency)
	errs := make(chan error, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			h, err := f.startNode(ctx, client, fmt.Sprintf("%s-%04d", f.Prefix, i))
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			f.nodes = append(f.nodes, h)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (f *SimulatedFleet) startNode(ctx context.Context, client *api.Client, name string) (*hollowNode, error) {
	resp, err := client.Join(ctx, name, "hollow-node-password-"+name)
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", name, err)
	}
	tlsConfig, err := api.CATLS([]byte(resp.CACert))
	if err != nil {
		return nil, err
	}
	h := &hollowNode{name: name, fleet: f}
	h.agent = &mqtt.Agent{URL: resp.MQTTURL, Node: name, Password: resp.MQTTPassword, TLS: tlsConfig,
		KeepAlive: f.KeepAlive, OnDesired: h.desired, OnConnect: h.report,
		Logs: func(ctx context.Context, req core.LogRequest, w func([]byte) error) error {
			return w([]byte("hollow node: no containers\n"))
		}}
	h.agent.Log = quietLogger
	if err := h.agent.Open(); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *hollowNode) desired(ds *core.DesiredState) {
	h.mu.Lock()
	h.fleet.running.Add(int64(len(ds.Pods) - len(h.pods)))
	h.pods = ds.Pods
	h.mu.Unlock()
	go h.report()
}

// report sends what a real agent would for pods that started at once.
func (h *hollowNode) report() {
	h.mu.Lock()
	rep := &core.NodeReport{Node: h.name, Labels: map[string]string{core.LabelArch: "arm64", core.LabelOS: "linux", core.LabelHostname: h.name, "simulated": "true"},
		Status: core.NodeStatus{
			Capacity:    core.ResourceList{"cpu": "4", "memory": "4Gi", "pods": "110"},
			Allocatable: core.ResourceList{"cpu": "4", "memory": "4Gi", "pods": "110"},
			NodeInfo:    core.NodeSystemInfo{Architecture: "arm64", OperatingSystem: "linux", KernelVersion: "simulated", KubeletVersion: "hollow"},
		}, Pods: []core.PodReport{}}
	started := core.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, p := range h.pods {
		m := p.Metadata
		rep.Pods = append(rep.Pods, core.PodReport{Namespace: m.Namespace, Name: m.Name, UID: m.UID, Status: core.PodStatus{
			Phase: core.PodRunning, StartTime: started,
			Conditions:        []core.PodCondition{{Type: "ContainersReady", Status: core.ConditionTrue}, {Type: "Ready", Status: core.ConditionTrue}},
			ContainerStatuses: []core.ContainerStatus{{Name: "main", Ready: true, State: core.ContainerState{Running: &core.ContainerStateRunning{StartedAt: started}}}},
		}})
	}
	h.mu.Unlock()
	h.agent.Report(rep)
}

// Pods returns how many pods the hollow nodes currently hold.
func (f *SimulatedFleet) Pods() int64 { return f.running.Load() }

// Close disconnects every hollow node.
func (f *SimulatedFleet) Close() {
	var wg sync.WaitGroup
	for _, h := range f.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); h.agent.Close() }()
	}
	wg.Wait()
}
