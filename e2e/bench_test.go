package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/edgeorch/edge/core"
)

// benchManifest is the spine with small requests, so 20 replicas fit a
// 2-core node (requests default to limits, 20 x 250m would not).
var benchManifest = strings.Replace(spineManifest, "limits: {memory: 32Mi, cpu: 250m}",
	"limits: {memory: 32Mi, cpu: 250m}\n          requests: {memory: 8Mi, cpu: 20m}", 1)

// BenchmarkCluster measures the spine's speed and footprint on one master
// and one agent (private containerd). Figures are reported as metrics and
// printed; targets are in the issue, not asserted here.
func BenchmarkCluster(b *testing.B) {
	needRoot(b)
	c := newCluster(b)
	b.Run("Apply20Running", func(b *testing.B) { c.t = b; benchApply(b, c, 20) })
	b.Run("Apply20VsContainerd", func(b *testing.B) { c.t = b; benchVsContainerd(b, c, 20) })
	b.Run("Idle", func(b *testing.B) { c.t = b; benchIdle(b, c) })
	b.Run("AgentStartToReady", func(b *testing.B) { c.t = b; benchAgentStart(b, c) })
}

// benchAgentStart restarts the agent (its data dir kept, as after a
// reboot or an upgrade) and times its start to the node turning Ready
// again, as the API shows it, beside the floor of starting the same
// binary at all (edgeagent --version) in the same run.
func benchAgentStart(b *testing.B, c *cluster) {
	var total, floor time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c.agent.stop(syscall.SIGTERM, 10*time.Second)
		waitFor(b, 60*time.Second, "the node to turn NotReady", func() error {
			o, err := c.client.Get(context.Background(), core.Key{Kind: core.KindNode, Name: c.node})
			if err != nil {
				return err
			}
			if o.(*core.Node).Ready() == core.ConditionTrue {
				return fmt.Errorf("still Ready")
			}
			return nil
		})
		t0 := time.Now()
		if out, err := exec.Command(filepath.Join(binDir, "edgeagent"), "--version").CombinedOutput(); err != nil {
			b.Fatalf("edgeagent --version: %v %s", err, out)
		}
		floor += time.Since(t0)
		b.StartTimer()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		events, err := c.client.Watch(ctx, core.KindNode, "", c.node, "")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		c.startAgent()
		ready := false
		for ev := range events {
			if n, ok := ev.Object.(*core.Node); ok && n.Metadata.Name == c.node && n.Ready() == core.ConditionTrue {
				ready = true
				break
			}
		}
		total += time.Since(start)
		cancel()
		if !ready {
			b.Fatal("the restarted agent's node did not turn Ready in 2 minutes")
		}
	}
	b.StopTimer()
	ms, floorMS := float64(total.Milliseconds())/float64(b.N), float64(floor.Milliseconds())/float64(b.N)
	b.ReportMetric(ms, "ms/start-to-ready")
	fmt.Printf("agent start to node Ready: %.0f ms (mean of %d), beside %.0f ms to run edgeagent --version\n", ms, b.N, floorMS)
}

// allRunning watches pods until n pods of app=spine run with ready
// containers. A watch, not polling: polling would steal CPU from the very
// start-up it measures.
func (c *cluster) allRunning(n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	events, err := c.client.Watch(ctx, core.KindPod, "default", "", "app=spine")
	if err != nil {
		return err
	}
	ready := map[string]bool{}
	for ev := range events {
		p := ev.Object.(*core.Pod)
		if ev.Type == core.Deleted {
			delete(ready, p.Metadata.Name)
		} else {
			ready[p.Metadata.Name] = p.Ready() && !p.Terminating()
		}
		count := 0
		for _, r := range ready {
			if r {
				count++
			}
		}
		if count == n && len(ready) == n {
			return nil
		}
	}
	return fmt.Errorf("not all %d pods running after %s", n, timeout)
}

func (c *cluster) clearSpine(tb testing.TB) {
	c.edgectl("delete", "deployment", "spine")
	waitFor(tb, 60*time.Second, "spine to go", func() error {
		if n := c.ctrd.containerCount(tb); n != 0 {
			return fmt.Errorf("%d containers", n)
		}
		objs, err := c.client.List(context.Background(), core.KindPod, "default", "app=spine")
		if err != nil || len(objs) != 0 {
			return fmt.Errorf("%d pods (%v)", len(objs), err)
		}
		return nil
	})
}

func benchApply(b *testing.B, c *cluster, n int) {
	manifest := []core.ManifestFile{{Name: "spine.yaml", Data: []byte(fmt.Sprintf(benchManifest, n))}}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c.clearSpine(b)
		b.StartTimer()
		start := time.Now()
		if _, err := c.client.Apply(context.Background(), manifest); err != nil {
			b.Fatal(err)
		}
		if err := c.allRunning(n, 60*time.Second); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.StopTimer()
	ms := float64(total.Milliseconds()) / float64(b.N)
	b.ReportMetric(ms, "ms/apply-to-running")
	fmt.Printf("apply of %d replicas to all Running: %.0f ms (mean of %d)\n", n, ms, b.N)
	c.clearSpine(b)
}

// startDirect starts n containers of the demo image straight through
// containerd's Go client, in parallel, with the same command and limits as
// the bench pods but no networking: the floor the agent's start path is
// measured against. It returns once every task runs, and a function that
// removes them.
func startDirect(b *testing.B, c *cluster, n int) (time.Duration, func()) {
	ctx := namespaces.WithNamespace(context.Background(), "edge")
	cl := c.ctrd.client
	img, err := cl.GetImage(ctx, "edge.local/demo:latest")
	if err != nil {
		b.Fatal(err)
	}
	run := fmt.Sprintf("direct-%d", time.Now().UnixNano())
	start := time.Now()
	errs := make(chan error, n)
	ctrs := make([]containerd.Container, n)
	for i := 0; i < n; i++ {
		go func() {
			id := fmt.Sprintf("%s-%d", run, i)
			ctr, err := cl.NewContainer(ctx, id, containerd.WithImage(img), containerd.WithNewSnapshot(id, img),
				containerd.WithNewSpec(oci.WithImageConfig(img),
					oci.WithProcessArgs("/bin/sh", "-c", "trap 'exit 0' TERM; echo up on $(hostname); while true; do sleep 1; done"),
					oci.WithMemoryLimit(32<<20), oci.WithCPUCFS(25000, 100000), oci.WithPidsLimit(1024)))
			if err != nil {
				errs <- err
				return
			}
			ctrs[i] = ctr
			task, err := ctr.NewTask(ctx, cio.NullIO)
			if err == nil {
				err = task.Start(ctx)
			}
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	took := time.Since(start)
	return took, func() {
		for _, ctr := range ctrs {
			if ctr == nil {
				continue
			}
			if task, err := ctr.Task(ctx, nil); err == nil {
				task.Kill(ctx, syscall.SIGKILL)
				task.Delete(ctx, containerd.WithProcessKill)
			}
			ctr.Delete(ctx, containerd.WithSnapshotCleanup)
		}
	}
}

// benchVsContainerd times, side by side in the same run, n containers
// started straight through containerd and apply -> n pods Running, and
// prints the ratio: what the orchestrator adds to the runtime's own floor.
func benchVsContainerd(b *testing.B, c *cluster, n int) {
	manifest := []core.ManifestFile{{Name: "spine.yaml", Data: []byte(fmt.Sprintf(benchManifest, n))}}
	var direct, apply time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c.clearSpine(b)
		d, cleanup := startDirect(b, c, n)
		direct += d
		cleanup()
		b.StartTimer()
		start := time.Now()
		if _, err := c.client.Apply(context.Background(), manifest); err != nil {
			b.Fatal(err)
		}
		if err := c.allRunning(n, 60*time.Second); err != nil {
			b.Fatal(err)
		}
		apply += time.Since(start)
	}
	b.StopTimer()
	dms, ams := float64(direct.Milliseconds())/float64(b.N), float64(apply.Milliseconds())/float64(b.N)
	b.ReportMetric(dms, "ms/containerd-direct")
	b.ReportMetric(ams, "ms/apply-to-running")
	b.ReportMetric(ams/dms, "ratio")
	fmt.Printf("%d containers straight through containerd: %.0f ms; apply -> %d Running: %.0f ms; ratio %.2f (mean of %d)\n",
		n, dms, n, ams, ams/dms, b.N)
	c.clearSpine(b)
}

// pidStatus reads a field (kB) of /proc/PID/status.
func procKB(pid int, file, field string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), file))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}

func shimPIDs(socket string) []int {
	out, _ := exec.Command("pgrep", "-f", "containerd-shim-runc-v2 .*-address "+socket+"( |$)").Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

func (c *cluster) metric(tb testing.TB, name string) float64 {
	text, err := c.client.Metrics(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == name {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	tb.Fatalf("no metric %s", name)
	return 0
}

func fileSize(paths ...string) int64 {
	var n int64
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil {
			n += st.Size()
		}
	}
	return n
}

func benchIdle(b *testing.B, c *cluster) {
	idle := 60 * time.Second
	if v := os.Getenv("EDGE_BENCH_IDLE"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			idle = d
		}
	}
	// A footprint is measured once, whatever b.N: repeating a minute of idle
	// would only repeat the same figures.
	{
		c.clearSpine(b)
		if _, err := c.client.Apply(context.Background(), []core.ManifestFile{{Name: "s.yaml", Data: []byte(fmt.Sprintf(benchManifest, 10))}}); err != nil {
			b.Fatal(err)
		}
		if err := c.allRunning(10, time.Minute); err != nil {
			b.Fatal(err)
		}
		time.Sleep(5 * time.Second) // let start-up garbage be collected
		mpid, apid := c.master.cmd.Process.Pid, c.agent.cmd.Process.Pid
		split := func(pid int) string {
			return fmt.Sprintf("(anon %.1f MB, file-backed %.1f MB)", float64(procKB(pid, "status", "RssAnon"))/1024, float64(procKB(pid, "status", "RssFile"))/1024)
		}
		// Right after start-up, and (below) at the end of the idle period,
		// once the daemons have returned their cold start-up code pages.
		masterStart, agentStart := procKB(mpid, "status", "VmRSS"), procKB(apid, "status", "VmRSS")
		masterStartSplit, agentStartSplit := split(mpid), split(apid)

		if _, err := c.client.Apply(context.Background(), []core.ManifestFile{{Name: "s.yaml", Data: []byte(fmt.Sprintf(benchManifest, 20))}}); err != nil {
			b.Fatal(err)
		}
		if err := c.allRunning(20, time.Minute); err != nil {
			b.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		shims := shimPIDs(c.ctrd.socket)
		pss := procKB(c.agent.cmd.Process.Pid, "smaps_rollup", "Pss") + procKB(c.ctrd.proc.cmd.Process.Pid, "smaps_rollup", "Pss")
		for _, p := range shims {
			pss += procKB(p, "smaps_rollup", "Pss")
		}

		db := filepath.Join(c.dir, "master", "state.db")
		writes0 := c.metric(b, "edge_store_writes_total")
		size0 := fileSize(db, db+"-wal")
		in0, out0 := c.metric(b, "edge_mqtt_bytes_received_total"), c.metric(b, "edge_mqtt_bytes_sent_total")
		cpuM0, cpuA0 := cpuTicks(mpid), cpuTicks(apid)
		majM0, majA0 := majorFaults(mpid), majorFaults(apid)
		time.Sleep(idle)
		cpuM, cpuA := cpuTicks(mpid)-cpuM0, cpuTicks(apid)-cpuA0
		majM, majA := majorFaults(mpid)-majM0, majorFaults(apid)-majA0
		hours := idle.Hours()
		masterRSS, agentRSS := procKB(mpid, "status", "VmRSS"), procKB(apid, "status", "VmRSS")
		masterSplit, agentSplit := split(mpid), split(apid)
		writes := c.metric(b, "edge_store_writes_total") - writes0
		growth := fileSize(db, db+"-wal") - size0
		mqttBytes := c.metric(b, "edge_mqtt_bytes_received_total") - in0 + c.metric(b, "edge_mqtt_bytes_sent_total") - out0
		perHour := mqttBytes * float64(time.Hour) / float64(idle)

		b.ReportMetric(float64(masterRSS)/1024, "MB-master-rss")
		b.ReportMetric(float64(agentRSS)/1024, "MB-agent-rss")
		b.ReportMetric(float64(pss)/1024, "MB-node-pss-20pods")
		b.ReportMetric(writes, "idle-sqlite-writes")
		b.ReportMetric(float64(growth), "idle-db-growth-bytes")
		b.ReportMetric(perHour/1024, "KB-mqtt-per-idle-node-hour")
		fmt.Printf("master RSS, 1 node, 10 pods:  after start-up %.1f MB %s, idle %.1f MB %s\n",
			float64(masterStart)/1024, masterStartSplit, float64(masterRSS)/1024, masterSplit)
		fmt.Printf("agent RSS, 10 pods:           after start-up %.1f MB %s, idle %.1f MB %s\n",
			float64(agentStart)/1024, agentStartSplit, float64(agentRSS)/1024, agentSplit)
		fmt.Printf("node PSS, 20 pods (agent+containerd+%d shims): %.1f MB\n", len(shims), float64(pss)/1024)
		fmt.Printf("SQLite writes over %s idle:          %.0f (file growth %d bytes)\n", idle, writes, growth)
		fmt.Printf("MQTT bytes per idle node per hour:    %.1f KB\n", perHour/1024)
		fmt.Printf("idle CPU: master %.2f%%, agent %.2f%% of one core (20 pods)\n",
			100*float64(cpuM)/100/idle.Seconds(), 100*float64(cpuA)/100/idle.Seconds())
		fmt.Printf("major page faults per idle hour: master %.0f, agent %.0f (%d and %d in %s)\n",
			float64(majM)/hours, float64(majA)/hours, majM, majA, idle)
		b.ReportMetric(float64(majM)/hours, "majflt-master-per-idle-hour")
		b.ReportMetric(float64(majA)/hours, "majflt-agent-per-idle-hour")
	}
	c.clearSpine(b)
}

// cpuTicks returns a process's user+system CPU time in clock ticks (1/100 s).
func cpuTicks(pid int) int64 {
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// majorFaults returns a process's major page faults so far: pages read back
// from disk (on a Pi, from its SD card).
func majorFaults(pid int) int64 {
	f := statFields(pid)
	if len(f) < 10 {
		return 0
	}
	n, _ := strconv.ParseInt(f[9], 10, 64)
	return n
}

// statFields returns /proc/PID/stat's fields after the command name, which
// may hold spaces: "S ppid pgrp ...".
func statFields(pid int) []string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
}
