package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// BenchmarkIdleWrites measures what an idle node writes to its disk (an SD
// card on a Pi): a master and an agent with a few running pods that print
// nothing, over EDGE_BENCH_IDLE (default 60 s), extrapolated to an hour.
// The figure is the kernel's write_bytes of each process (/proc/PID/io:
// bytes it sent, or dirtied for, the block layer), the agent's own log
// output included (to a file here, to journald on a Pi). The floor is 0.
// It also lists the files under the agent's data directory that changed.
// Nothing is asserted: the figures are printed.
func BenchmarkIdleWrites(b *testing.B) {
	needRoot(b)
	idle := 60 * time.Second
	if v := os.Getenv("EDGE_BENCH_IDLE"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			idle = d
		}
	}
	c := newCluster(b)
	const pods = 3
	if _, err := c.client.Apply(context.Background(), []core.ManifestFile{{Name: "s.yaml", Data: []byte(fmt.Sprintf(benchManifest, pods))}}); err != nil {
		b.Fatal(err)
	}
	if err := c.allRunning(pods, time.Minute); err != nil {
		b.Fatal(err)
	}
	time.Sleep(5 * time.Second) // start-up's last reports and events settle
	agentDir := filepath.Join(c.dir, "agent")
	mpid, apid := c.master.cmd.Process.Pid, c.agent.cmd.Process.Pid
	drivers := logDriverPIDs(agentDir)
	mw0, aw0, dw0 := writeBytes(mpid), writeBytes(apid), sumWriteBytes(drivers)
	before := modTimes(agentDir)
	start := time.Now()
	time.Sleep(idle)
	took := time.Since(start)
	mw, aw, dw := writeBytes(mpid)-mw0, writeBytes(apid)-aw0, sumWriteBytes(drivers)-dw0
	perHour := func(n int64) float64 { return float64(n) * float64(time.Hour) / float64(took) }
	changed := changedFiles(agentDir, before)

	b.ReportMetric(perHour(aw), "agent-write-bytes/idle-hour")
	b.ReportMetric(perHour(mw), "master-write-bytes/idle-hour")
	fmt.Printf("disk writes per idle hour, %d quiet pods, %s measured (floor 0):\n", pods, took.Round(time.Second))
	fmt.Printf("  agent       %10.0f bytes/hour (%d bytes)\n", perHour(aw), aw)
	fmt.Printf("  log drivers %10.0f bytes/hour (%d bytes, %d processes)\n", perHour(dw), dw, len(drivers))
	for _, p := range drivers[:min(1, len(drivers))] {
		fmt.Printf("  a log driver's memory: RSS %.1f MB, of which anonymous %.1f MB, PSS %.1f MB\n",
			float64(procKB(p, "status", "VmRSS"))/1024, float64(procKB(p, "status", "RssAnon"))/1024, float64(procKB(p, "smaps_rollup", "Pss"))/1024)
	}
	fmt.Printf("  master      %10.0f bytes/hour (%d bytes)\n", perHour(mw), mw)
	if len(changed) > 0 {
		fmt.Printf("  files changed under the agent's data dir: %s\n", strings.Join(changed, ", "))
	}
}

// writeBytes returns a process's write_bytes so far (0 if it is gone).
func writeBytes(pid int) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "io"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func sumWriteBytes(pids []int) int64 {
	var n int64
	for _, p := range pids {
		n += writeBytes(p)
	}
	return n
}

// logDriverPIDs finds the log driver processes writing under dir (their
// command line holds --edge-log-driver PATH).
func logDriverPIDs(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "--edge-log-driver\x00"+dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// modTimes maps the files under dir to their modification times.
func modTimes(dir string) map[string]time.Time {
	m := map[string]time.Time{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				m[path] = info.ModTime()
			}
		}
		return nil
	})
	return m
}

// changedFiles lists the files under dir made or modified since before.
func changedFiles(dir string, before map[string]time.Time) []string {
	var out []string
	for path, t := range modTimes(dir) {
		if bt, ok := before[path]; !ok || !bt.Equal(t) {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
	}
	sort.Strings(out)
	return out
}
