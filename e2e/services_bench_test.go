package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// BenchmarkServices measures the service path on the namespace cluster
// (2 workers): how long after a replica turns Ready it is reachable
// through its service from another node, and requests per second through
// a cluster IP beside straight to the pod IP, in the same run (one new TCP
// connection per request, so DNAT and conntrack are on every request's
// path).
func BenchmarkServices(b *testing.B) {
	needRoot(b)
	tf := newTestFleet(b, 2)
	w1, w2 := tf.workers[0], tf.workers[1]
	web := strings.Replace(svcWeb, "replicas: 3", "replicas: 1", 1)
	web = strings.Replace(web, "    spec:\n      terminationGracePeriodSeconds: 1\n", "    spec:\n      terminationGracePeriodSeconds: 1\n      nodeSelector: {kubernetes.io/hostname: "+w2.Name+"}\n", 1)
	// Replicas start unready (/tmp/unready), so the test decides when.
	web = strings.Replace(web, "hostname > /tmp/www/index.html", "hostname > /tmp/www/index.html; touch /tmp/unready", 1)
	tf.apply(web)
	tf.apply(strings.Replace(svcClient, "NODE", w1.Name, 1))
	running := func(name string) error {
		for _, p := range tf.pods("") {
			if strings.HasPrefix(p.Metadata.Name, name) && p.Status.Phase == "Running" {
				return nil
			}
		}
		return fmt.Errorf("%s not running", name)
	}
	waitFor(b, 90*time.Second, "client and web running", func() error {
		if err := running("client"); err != nil {
			return err
		}
		return running("web-")
	})
	clusterIP := tf.service("web").Spec.ClusterIP
	dial := dialerIn(b, "/run/netns/"+w1.NS)
	body := func(url string) (string, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) { return dial(network, addr) }}}
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	get := func(url string) error { _, err := body(url); return err }

	// Ready -> reachable, b.N times: a replica turns ready; the time from
	// the API showing it Ready until a request from the other node's pod
	// reaches it through the cluster IP. Between rounds it turns unready.
	var toAPI, toReachable []time.Duration
	for i := 0; i < b.N; i++ {
		var pod podJSON
		for _, p := range tf.pods("app=web") {
			pod = p
		}
		delete(containerIDs, pod.Metadata.Name)
		start := time.Now()
		if out, err := tf.execIn(w2, pod.Metadata.Name, "rm -f /tmp/unready"); err != nil {
			b.Fatalf("%v %s", err, out)
		}
		// Node w1 polls the service (a refused connection while there
		// is no endpoint costs microseconds) while the API is polled.
		reached := make(chan time.Time, 1)
		go func() {
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				out, err := body("http://" + clusterIP + "/")
				if err == nil && strings.HasPrefix(out, "web-") {
					reached <- time.Now()
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		var ready time.Time
		for deadline := time.Now().Add(60 * time.Second); ready.IsZero(); {
			if time.Now().After(deadline) {
				b.Fatal("the replica never turned Ready")
			}
			for _, p := range tf.pods("app=web") {
				if len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].Ready {
					ready = time.Now()
				}
			}
		}
		var at time.Time
		select {
		case at = <-reached:
		case <-time.After(60 * time.Second):
			b.Fatal("the replica never became reachable through its service")
		}
		toAPI = append(toAPI, ready.Sub(start))
		toReachable = append(toReachable, max(at.Sub(ready), 0))
		tf.execIn(w2, pod.Metadata.Name, "touch /tmp/unready")
		waitFor(b, 30*time.Second, "the replica unready again", func() error {
			for _, p := range tf.pods("app=web") {
				if p.Status.ContainerStatuses[0].Ready {
					return fmt.Errorf("still ready")
				}
			}
			return nil
		})
	}
	sort.Slice(toReachable, func(i, j int) bool { return toReachable[i] < toReachable[j] })
	med := toReachable[len(toReachable)/2]
	b.ReportMetric(med.Seconds()*1000, "ms-ready-to-reachable")
	fmt.Printf("replica Ready (as the API shows it) -> reachable through its cluster IP from another node: median %s of %v (the probe runs every 1s; file removed -> API shows Ready: %v)\n",
		med.Round(10*time.Millisecond), round(toReachable), round(toAPI))

	// Requests per second, cluster IP beside pod IP, from node w1.
	var pod podJSON
	for _, p := range tf.pods("app=web") {
		pod = p
	}
	tf.execIn(w2, pod.Metadata.Name, "rm -f /tmp/unready")
	svcURL, podURL := "http://"+clusterIP+"/", "http://"+pod.Status.PodIP+":8080/"
	waitFor(b, 30*time.Second, "the service answering", func() error { return get(svcURL) })
	rate := func(url string, n int) float64 {
		start := time.Now()
		const workers = 4
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			go func() {
				for i := 0; i < n/workers; i++ {
					if err := get(url); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for w := 0; w < workers; w++ {
			if err := <-errs; err != nil {
				b.Fatalf("%s: %v", url, err)
			}
		}
		return float64(n) / time.Since(start).Seconds()
	}
	// Scale 3 -> 1: from the apply until node w1's rules hold only the
	// one endpoint left (the three services of svcWeb select the same
	// pods: one EDGE-SEP- chain each per endpoint).
	seps := func() int {
		out, _ := inNS(w1, "iptables-save", "-t", "nat")
		return strings.Count(out, "\n:EDGE-SEP-")
	}
	var scale []time.Duration
	for i := 0; i < b.N; i++ {
		tf.apply(strings.Replace(web, "replicas: 1", "replicas: 3", 1))
		waitFor(b, 90*time.Second, "3 ready replicas in w1's rules", func() error {
			for _, p := range tf.pods("app=web") {
				delete(containerIDs, p.Metadata.Name)
				tf.execIn(w2, p.Metadata.Name, "rm -f /tmp/unready")
			}
			if n := seps(); n != 9 {
				return fmt.Errorf("%d endpoint chains", n)
			}
			return nil
		})
		start := time.Now()
		tf.apply(web)
		waitFor(b, 30*time.Second, "w1's rules to follow the scale-down", func() error {
			if n := seps(); n != 3 {
				return fmt.Errorf("%d endpoint chains", n)
			}
			return nil
		})
		scale = append(scale, time.Since(start))
	}
	sort.Slice(scale, func(i, j int) bool { return scale[i] < scale[j] })
	b.ReportMetric(scale[len(scale)/2].Seconds()*1000, "ms-scale-down-to-rules")
	fmt.Printf("scale 3 -> 1: apply -> another node's rules hold the one replica left: median %s of %v\n",
		scale[len(scale)/2].Round(10*time.Millisecond), round(scale))
	var pod2 podJSON
	for _, p := range tf.pods("app=web") {
		if p.Metadata.DeletionTimestamp == "" {
			pod2 = p
		}
	}
	delete(containerIDs, pod2.Metadata.Name)
	tf.execIn(w2, pod2.Metadata.Name, "rm -f /tmp/unready")
	podURL = "http://" + pod2.Status.PodIP + ":8080/"
	waitFor(b, 30*time.Second, "the service answering", func() error { return get(svcURL) })

	// Interleaved rounds, so the machine's noise hits both; the median of
	// the rounds' ratios.
	var ratios, directs, vias []float64
	for round := 0; round < 9; round++ {
		d, v := rate(podURL, 200), rate(svcURL, 200)
		directs, vias, ratios = append(directs, d), append(vias, v), append(ratios, v/d)
	}
	median := func(x []float64) float64 { x = append([]float64(nil), x...); sort.Float64s(x); return x[len(x)/2] }
	b.ReportMetric(median(ratios), "clusterIP/podIP")
	fmt.Printf("requests/s over new connections from another node (median of 9 interleaved rounds): pod IP %.0f, cluster IP %.0f, ratio %.2f\n",
		median(directs), median(vias), median(ratios))
}

func round(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}

// dialerIn returns a dial function whose sockets are made in the network
// namespace at path: each dial runs on a thread locked into it (a socket
// belongs to the namespace of the thread that creates it), which goes
// back to its own namespace afterwards. A thread must not die instead:
// the fleet's processes were started with Pdeathsig, which fires when the
// thread that forked them exits, and any thread may be that one.
func dialerIn(tb testing.TB, path string) func(network, addr string) (net.Conn, error) {
	target, err := netns.GetFromPath(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { target.Close() })
	return func(network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			orig, err := netns.Get()
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, err}
				return
			}
			defer orig.Close()
			if err := netns.Set(target); err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, fmt.Errorf("enter %s: %w", path, err)}
				return
			}
			c, err := net.DialTimeout(network, addr, 5*time.Second)
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			} else {
				tb.Error("a dialing thread could not leave the node's network namespace")
			}
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}
