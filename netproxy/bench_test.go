package netproxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// state100x10 is 100 services of 10 ready endpoints each, over 10 nodes;
// every tenth service is a NodePort.
func state100x10() *core.NetworkState {
	st := &core.NetworkState{ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16"}
	for s := range 100 {
		svc := core.NetService{Namespace: "bench", Name: fmt.Sprintf("svc-%03d", s), Type: core.ServiceClusterIP,
			ClusterIP: fmt.Sprintf("10.43.%d.%d", s/250, s%250+1),
			Ports:     []core.ServicePort{{Name: "http", Protocol: "TCP", Port: 80}}}
		if s%10 == 0 {
			svc.Type = core.ServiceNodePort
			svc.Ports[0].NodePort = int32(30000 + s)
		}
		for e := range 10 {
			svc.Endpoints = append(svc.Endpoints, core.NetEndpoint{
				IP: fmt.Sprintf("10.42.%d.%d", e, s+2), Node: fmt.Sprintf("n%d", e),
				Ports: []int32{8080}, Ready: true})
		}
		st.Services = append(st.Services, svc)
	}
	return st
}

func BenchmarkRender100x10(b *testing.B) {
	st := state100x10()
	b.ReportAllocs()
	var size int
	for b.Loop() {
		nat, filter := Render(st, "n0", "192.168.50.1", nil)
		size = len(nat) + len(filter)
	}
	b.ReportMetric(float64(size), "restore-bytes")
}

// BenchmarkSync100x10 measures Sync in a network namespace with one
// endpoint flipping each time, so every Sync writes:
//
//   - full-sync-ms/op: a full Sync (as the first one, and every
//     ResyncPeriod): Render, iptables-save of both tables, and
//     iptables-restore of every chain of ours;
//   - update-ms/op: the usual Sync after a change: Render and one
//     iptables-restore of the changed chains;
//   - render-µs/op: Render alone.
//
// Anchor: kube-proxy's iptables mode does the same work per sync (before
// 1.26 every sync wrote every rule; since, only changed chains, with a full
// sync now and then), and the Kubernetes nftables blog (2025-02-28) shows
// that cost growing linearly with services and endpoints to seconds at tens
// of thousands of services. We know no published figure for a 100x10
// cluster, so these numbers are our own baseline.
func BenchmarkSync100x10(b *testing.B) {
	enterNetns(b)
	st := state100x10()
	p := &Proxy{Node: "n0", NodeIP: "192.168.50.1", Log: quietLog(b)}
	flip := false
	local := func(uid string) (bool, bool) { return flip, uid == "flip" }
	st.Services[0].Endpoints[0].PodUID = "flip"
	if err := p.Sync(st, local); err != nil {
		b.Fatal(err)
	}
	var render, full, update time.Duration
	n := 0
	for b.Loop() {
		flip = !flip
		start := time.Now()
		Render(st, "n0", "192.168.50.1", local)
		render += time.Since(start)

		p.lastFull = time.Time{} // due for a full resync
		start = time.Now()
		if err := p.Sync(st, local); err != nil {
			b.Fatal(err)
		}
		full += time.Since(start)

		flip = !flip
		start = time.Now()
		if err := p.Sync(st, local); err != nil {
			b.Fatal(err)
		}
		update += time.Since(start)
		n++
	}
	// The floor: the same rules written by bare iptables-save and
	// iptables-restore runs, no Go in between, in the same namespace.
	nat, filter := Render(st, "n0", "192.168.50.1", nil)
	var floor, save time.Duration
	for range n {
		start := time.Now()
		if _, err := p.saveAll(); err != nil {
			b.Fatal(err)
		}
		save += time.Since(start)
		if err := p.restore("nat", nat); err != nil {
			b.Fatal(err)
		}
		if err := p.restore("filter", filter); err != nil {
			b.Fatal(err)
		}
		floor += time.Since(start)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }
	b.ReportMetric(ms(floor), "floor-save+restore-ms/op")
	b.ReportMetric(ms(save), "of-which-save-ms/op")
	b.ReportMetric(float64(full)/float64(floor), "full/floor")
	b.ReportMetric(float64(render.Microseconds())/float64(n), "render-µs/op")
	b.ReportMetric(ms(full), "full-sync-ms/op")
	b.ReportMetric(ms(update), "update-ms/op")
	b.ReportMetric(float64(len(nat)+len(filter)), "restore-bytes")
	if err := p.Cleanup(); err != nil {
		b.Fatal(err)
	}
}
