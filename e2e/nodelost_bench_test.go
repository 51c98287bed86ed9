package e2e

import (
	"fmt"
	"sort"
	"testing"
	"time"
)

// BenchmarkNodeLost cuts a worker's link (a silent loss: no will message,
// only keepalive expiry) and measures until its replicas run on the other
// workers; then restores it and waits for the count to settle. It reports
// the median of b.N cuts (make bench runs 5).
func BenchmarkNodeLost(b *testing.B) {
	needRoot(b)
	tf := newTestFleet(b, 3)
	tf.apply(fmt.Sprintf(fleetWeb, DemoImage))
	tf.settled(6)
	var took []time.Duration
	for i := 0; i < b.N; i++ {
		victim := tf.workers[i%len(tf.workers)]
		if placement(tf.pods("app=web"))[victim.Name] == 0 {
			continue
		}
		start := time.Now()
		if err := tf.LinkDown(victim); err != nil {
			b.Fatal(err)
		}
		waitFor(b, 60*time.Second, "replacements", func() error {
			m := placement(tf.pods("app=web"))
			if m[victim.Name] != 0 || total(m) != 6 {
				return fmt.Errorf("%v", m)
			}
			return nil
		})
		took = append(took, time.Since(start))
		if err := tf.LinkUp(victim); err != nil {
			b.Fatal(err)
		}
		tf.waitReady(victim.Name)
		tf.settled(6)
		// Spread again so every cut has replicas to move.
		tf.mustEdgectl("delete", "deployment", "web")
		waitFor(b, 60*time.Second, "web gone", func() error {
			if n := len(tf.pods("app=web")); n != 0 {
				return fmt.Errorf("%d pods", n)
			}
			return nil
		})
		tf.apply(fmt.Sprintf(fleetWeb, DemoImage))
		tf.settled(6)
	}
	if len(took) == 0 {
		b.Skip("no cut had replicas to move")
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	median := took[len(took)/2]
	b.ReportMetric(median.Seconds(), "s-median-replaced")
	fmt.Printf("node silently lost (link cut) -> replacements Running: median %s of %d %v\n", median.Round(100*time.Millisecond), len(took), took)
}
