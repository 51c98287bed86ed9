package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

const simDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: %s}
spec:
  replicas: %d
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      containers:
      - name: main
        image: edge.local/demo:latest
        resources: {requests: {cpu: 10m, memory: 16Mi}}
`

func percentile(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)]
}

// BenchmarkSimulatedFleet loads one real master with a simulated fleet
// (EDGE_SIM_NODES hollow agents, default 1,000) and a Deployment of
// EDGE_SIM_PODS replicas (default 10,000), and reports the master's memory,
// the API's latency and the time until every pod is reported Running.
func BenchmarkSimulatedFleet(b *testing.B) {
	needRoot(b)
	nodes, pods := envInt("EDGE_SIM_NODES", 1000), envInt("EDGE_SIM_PODS", 10000)
	dir := b.TempDir()
	// A thousand nodes join at once here, not over a fleet's first boot.
	c := &cluster{t: b, root: b, dir: dir, masterArgs: []string{"--join-rate", "-1", "--max-nodes", "0", "--cluster-cidr", "10.128.0.0/9"}}
	c.startMaster()
	ctx := context.Background()

	start := time.Now()
	fleet := &SimulatedFleet{Master: c.apiURL, Token: c.token, Prefix: "sim", KeepAlive: 3 * time.Second}
	defer fleet.Close()
	if err := fleet.Start(ctx, nodes, 64); err != nil {
		b.Fatal(err)
	}
	waitFor(b, 10*time.Minute, fmt.Sprintf("%d simulated nodes Ready", nodes), func() error {
		objs, err := c.client.List(ctx, core.KindNode, "", "")
		if err != nil {
			return err
		}
		ready := 0
		for _, o := range objs {
			if o.(*core.Node).Ready() == core.ConditionTrue {
				ready++
			}
		}
		if ready != nodes {
			return fmt.Errorf("%d ready", ready)
		}
		return nil
	})
	joined := time.Since(start)

	start = time.Now()
	if _, err := c.client.Apply(ctx, []core.ManifestFile{{Name: "sim.yaml", Data: []byte(fmt.Sprintf(simDeployment, "sim", pods, "sim", "sim"))}}); err != nil {
		b.Fatal(err)
	}
	if out := os.Getenv("EDGE_SIM_PROFILE"); out != "" {
		go c.profile(out, 30) // what the master spends the rollout on
	}
	waitFor(b, 30*time.Minute, fmt.Sprintf("%d pods reported Running", pods), func() error {
		o, err := c.client.Get(ctx, core.Key{Kind: core.KindDeployment, Namespace: "default", Name: "sim"})
		if err != nil {
			return err
		}
		if st := o.(*core.Deployment).Status; int(st.ReadyReplicas) != pods {
			if os.Getenv("EDGE_SIM_PROGRESS") != "" {
				fmt.Printf("%6.1fs: %d ready, %d on hollow nodes\n", time.Since(start).Seconds(), st.ReadyReplicas, fleet.Pods())
				time.Sleep(time.Second)
			}
			return fmt.Errorf("%d ready, %d on hollow nodes", st.ReadyReplicas, fleet.Pods())
		}
		return nil
	})
	allRunning := time.Since(start)
	time.Sleep(3 * time.Second)
	rss := procKB(c.master.cmd.Process.Pid, "status", "VmRSS")

	var gets, decoded, applies []time.Duration
	var size int64
	for i := 0; i < 50; i++ {
		// The API's latency: the whole response, read off the wire.
		req, _ := http.NewRequest("GET", c.apiURL+"/api/v1/pods?namespace=default", nil)
		req.Header.Set("Authorization", "Bearer "+c.client.Token)
		t0 := time.Now()
		resp, err := c.client.HTTP.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		size, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		gets = append(gets, time.Since(t0))
		// What edgectl adds: decoding every pod.
		t0 = time.Now()
		if objs, err := c.client.List(ctx, core.KindPod, "default", ""); err != nil || len(objs) != pods {
			b.Fatalf("get pods: %d %v", len(objs), err)
		}
		decoded = append(decoded, time.Since(t0))
		name := fmt.Sprintf("extra-%d", i)
		t0 = time.Now()
		if _, err := c.client.Apply(ctx, []core.ManifestFile{{Name: "x.yaml", Data: []byte(fmt.Sprintf(simDeployment, name, 0, name, name))}}); err != nil {
			b.Fatal(err)
		}
		applies = append(applies, time.Since(t0))
	}
	time.Sleep(3 * time.Second) // the last apply's status update lands
	writes0, _ := c.metricOK("edge_store_writes_total")
	time.Sleep(30 * time.Second)
	writes1, _ := c.metricOK("edge_store_writes_total")

	b.ReportMetric(float64(rss)/1024, "MB-master-rss")
	b.ReportMetric(float64(percentile(gets, 0.99).Milliseconds()), "ms-p99-get-pods")
	b.ReportMetric(float64(percentile(applies, 0.99).Milliseconds()), "ms-p99-apply")
	b.ReportMetric(allRunning.Seconds(), "s-all-running")
	fmt.Printf("simulated fleet: %d nodes joined and Ready in %s\n", nodes, joined.Round(100*time.Millisecond))
	fmt.Printf("%d pods reported Running %s after apply\n", pods, allRunning.Round(100*time.Millisecond))
	fmt.Printf("master RSS: %.1f MB\n", float64(rss)/1024)
	fmt.Printf("get pods (%d pods, %.1f MB): API p50 %s, p99 %s; with client-side decoding p50 %s, p99 %s\n", pods, float64(size)/(1<<20),
		percentile(gets, 0.5).Round(time.Millisecond), percentile(gets, 0.99).Round(time.Millisecond),
		percentile(decoded, 0.5).Round(time.Millisecond), percentile(decoded, 0.99).Round(time.Millisecond))
	fmt.Printf("apply: p50 %s, p99 %s\n", percentile(applies, 0.5).Round(time.Millisecond), percentile(applies, 0.99).Round(time.Millisecond))
	fmt.Printf("SQLite writes in 30 s idle with %d nodes: %.0f\n", nodes, writes1-writes0)
}

func (c *cluster) metricOK(name string) (float64, bool) {
	text, err := c.client.Metrics(context.Background())
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == name {
			f, _ := strconv.ParseFloat(v, 64)
			return f, true
		}
	}
	return 0, false
}

// profile saves a CPU profile of the master.
func (c *cluster) profile(path string, seconds int) {
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", c.apiURL, seconds), nil)
	req.Header.Set("Authorization", "Bearer "+c.client.Token)
	resp, err := c.client.HTTP.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}
