package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/images/regtest"
)

// inNetNS runs fn on a thread inside network namespace ns (a name under
// /run/netns): a socket made there stays there. The thread goes back to
// the test's namespace afterwards, or is thrown away if it cannot.
func inNetNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- ferr // the thread stays locked and dies with this goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// relay forwards TCP connections accepted in one network namespace to an
// address reached from another (ns "" is the test's own), counting the
// bytes sent back to the clients. Down makes it a dead link: open
// connections are cut (what was sent still arrives) and new ones are
// closed at once, until Up.
type relay struct {
	ln       net.Listener
	dialNS   string
	target   string
	toClient atomic.Int64
	cutAt    atomic.Int64 // go down once toClient passes it (0: never)
	refused  atomic.Int64 // connections closed while down
	rate     int64        // bytes per second towards the clients (0: as fast as it goes)

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func startRelay(t testing.TB, listenNS, listenAddr, dialNS, target string) *relay {
	t.Helper()
	r := &relay{dialNS: dialNS, target: target, conns: map[net.Conn]bool{}}
	listen := func() (err error) { r.ln, err = net.Listen("tcp", listenAddr); return err }
	var err error
	if listenNS == "" {
		err = listen()
	} else {
		err = inNetNS(listenNS, listen)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.ln.Close(); r.Down() })
	go r.serve()
	return r
}

func (r *relay) Addr() string { return r.ln.Addr().String() }

func (r *relay) dial() (c net.Conn, err error) {
	d := func() error { c, err = net.DialTimeout("tcp", r.target, 10*time.Second); return err }
	if r.dialNS == "" {
		d()
	} else if nerr := inNetNS(r.dialNS, d); nerr != nil && err == nil {
		err = nerr
	}
	return c, err
}

func (r *relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		down := r.down
		r.mu.Unlock()
		if down {
			r.refused.Add(1)
			c.Close()
			continue
		}
		go r.pipe(c)
	}
}

func (r *relay) track(c net.Conn, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.conns[c] = true
	} else {
		delete(r.conns, c)
	}
}

func (r *relay) pipe(c net.Conn) {
	defer c.Close()
	up, err := r.dial()
	if err != nil {
		return
	}
	defer up.Close()
	r.track(c, true)
	r.track(up, true)
	defer r.track(c, false)
	defer r.track(up, false)
	go func() { io.Copy(up, c); up.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
			if r.rate > 0 {
				time.Sleep(time.Duration(int64(n) * int64(time.Second) / r.rate)) // a slow link, not a wait
			}
			if at := r.cutAt.Load(); at > 0 && r.toClient.Add(int64(n)) >= at {
				r.Down()
			} else if at == 0 {
				r.toClient.Add(int64(n))
			}
		}
		if err != nil {
			return
		}
	}
}

// Down cuts the link: open connections end (with what they sent so far
// delivered), new ones are refused.
func (r *relay) Down() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = true
	r.cutAt.Store(0)
	for c := range r.conns {
		c.Close()
	}
}

// Up brings the link back.
func (r *relay) Up() {
	r.mu.Lock()
	r.down = false
	r.mu.Unlock()
}

// pullFleet is a namespace cluster whose master pulls through from a real
// registry (docker-registry via regtest, reached through a relay into the
// master's namespace) as the mirror of docker.io; workers w1..wN find the
// master by mDNS, worker "wp" reaches it through a relay that can drop.
type pullFleet struct {
	*testFleet
	up     *regtest.Upstream
	link   *relay // wp's link to the master's API
	wp     *Host
	admin  *http.Client
	token  string
	mdir   string
	apiURL string
}

func newPullFleet(t testing.TB, workers int) *pullFleet {
	t.Helper()
	regtest.Skip(t)
	up := regtest.Start(t, regtest.Options{})
	// Inside its namespace the master reaches the upstream at its own
	// loopback: any port is free in a namespace that is new.
	regs := filepath.Join(t.TempDir(), "registries.yaml")
	if err := os.WriteFile(regs, []byte("mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:5000\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tf := newTestFleet(t, workers, "--registries", regs)
	pf := &pullFleet{testFleet: tf, up: up, mdir: tf.MasterDir(tf.master)}
	startRelay(t, tf.master.NS, "127.0.0.1:5000", "", up.Host)
	pf.link = startRelay(t, tf.master.NS, tf.master.IP+":7444", tf.master.NS, tf.master.IP+":7443")
	pf.link.rate = 4 << 20 // an edge link: the pull takes long enough to report progress
	cfg, err := api.LoadConfig(filepath.Join(pf.mdir, "admin.conf"))
	if err != nil {
		t.Fatal(err)
	}
	pf.token = cfg.Token
	pf.apiURL = "https://" + tf.master.IP + ":7443"
	masterNS := tf.master.NS
	pf.admin = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // a test's own master, in its own namespace
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			if nerr := inNetNS(masterNS, func() error { c, err = net.DialTimeout(network, addr, 10*time.Second); return err }); nerr != nil && err == nil {
				err = nerr
			}
			return c, err
		}}}
	h, err := tf.AddHost("wp")
	if err != nil {
		t.Fatal(err)
	}
	pf.wp = h
	if err := tf.StartContainerd(h); err != nil {
		t.Fatal(err)
	}
	if _, err := tf.StartAgent(h, tf.token, "https://"+pf.link.Addr()); err != nil {
		t.Fatal(err)
	}
	tf.waitReady("wp")
	return pf
}

// get asks the master's API as the admin.
func (pf *pullFleet) get(path string) ([]byte, error) {
	req, _ := http.NewRequest("GET", pf.apiURL+path, nil)
	req.Header.Set("Authorization", "Bearer "+pf.token)
	resp, err := pf.admin.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return b, err
}

// metrics reads the master's /metrics.
func (pf *pullFleet) metrics() map[string]float64 {
	pf.t.Helper()
	b, err := pf.get("/metrics")
	if err != nil {
		pf.t.Fatal(err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if f, err := strconv.ParseFloat(v, 64); ok && err == nil {
			out[k] = f
		}
	}
	return out
}

// served returns the blob GETs and blob bytes the master served node.
func served(m map[string]float64, node string) (gets, bytes int64) {
	l := fmt.Sprintf("{client=%q}", node)
	return int64(m["edge_registry_client_blob_requests_total"+l]), int64(m["edge_registry_client_blob_bytes_total"+l])
}

const pullPod = `apiVersion: v1
kind: Pod
metadata: {name: %s, labels: {app: %s}}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
`

func (pf *pullFleet) runPod(name, app, node, image string) {
	pf.apply(fmt.Sprintf(pullPod, name, app, node, image))
}

// waitRunning waits until every pod labelled app=app runs.
func (pf *pullFleet) waitRunning(app string, n int, timeout time.Duration) {
	pf.t.Helper()
	waitFor(pf.t, timeout, fmt.Sprintf("%d %s pods running", n, app), func() error {
		pods := pf.pods("app=" + app)
		running := 0
		var states []string
		for _, p := range pods {
			if p.Status.Phase == "Running" {
				running++
			}
			for _, cs := range p.Status.ContainerStatuses {
				if w := cs.State.Waiting; w != nil {
					states = append(states, p.Metadata.Name+": "+w.Reason+" "+w.Message)
				}
			}
		}
		if running != n {
			return fmt.Errorf("%d of %d running %v", running, n, states)
		}
		return nil
	})
}

// needed is what a node without the image fetches of img: its config and
// the layers after busybox's (every worker holds the demo image, whose
// busybox layer is the same blob).
func needed(img *regtest.Image) (blobs []digest.Digest, size int64) {
	for i, b := range img.Blobs {
		if i == 1 {
			continue // busybox
		}
		blobs = append(blobs, b.Digest)
		size += b.Size
	}
	return blobs, size
}

// nodeImages returns the image names a node reports.
func (pf *pullFleet) nodeImages(node string) map[string]bool {
	pf.t.Helper()
	out := pf.mustEdgectl("get", "node", node, "-o", "json")
	var n struct {
		Status struct {
			Images []struct {
				Names []string `json:"names"`
			} `json:"images"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &n); err != nil {
		pf.t.Fatalf("get node -o json: %v\n%s", err, out)
	}
	m := map[string]bool{}
	for _, img := range n.Status.Images {
		for _, name := range img.Names {
			m[name] = true
		}
	}
	return m
}

// pullFigures are what BenchmarkPullThrough prints.
type pullFigures struct {
	imageBytes    int64 // what one node needs of the images
	uplinkBytes   int64 // what the master fetched upstream for them
	nodes         int
	perNodeBytes  []int64
	bigLayer      int64 // the layer cut at 50%
	bigDelivered  int64 // bytes the dropping link delivered for the big image
	bigNeeded     int64
	masterResent  int64 // as the master counts (includes what was in flight when the link dropped)
	pullSeconds   float64
	resumeSeconds float64
}

// The fleet part: every node pulls through the master; the upstream
// serves each blob once for the whole fleet, each node fetches each blob
// once (a layer two images share included), the pulled images are
// reported under the names pods use; a link that drops mid-layer resumes
// where it stopped; a blob corrupt at the master is refused.
func TestPullThrough(t *testing.T) {
	needRoot(t)
	pf := newPullFleet(t, 3)
	fig := pullThroughScenario(t, pf)
	t.Logf("uplink %d bytes for %d nodes needing %d bytes each (%.2fx the image); link drop at 50%% of a %d-byte layer: %d bytes delivered for %d needed (%d beyond the image: TLS, HTTP and re-sent; the master sent %d more, lost in flight)",
		fig.uplinkBytes, fig.nodes, fig.imageBytes, float64(fig.uplinkBytes)/float64(fig.imageBytes), fig.bigLayer,
		fig.bigDelivered, fig.bigNeeded, fig.bigDelivered-fig.bigNeeded, fig.masterResent)

	// Warming a node before a rollout: `image prefetch` pulls through the
	// master onto the selected node only, and the scheduler, fed what the
	// nodes report holding, places the image's pod there (image locality:
	// every other score is equal, and w1 would win on its name).
	t.Run("PrefetchAndLocality", func(t *testing.T) {
		bb, _ := exec.LookPath("busybox")
		warm := pf.up.PushLayered(t, "pt/warm", "v1", bb, runtime.GOARCH, regtest.Layer{Size: 1 << 20, Seed: 51})
		out := pf.mustEdgectl("image", "prefetch", "pt/warm:v1", "-l", core.LabelHostname+"=w2", "--timeout", "3m")
		if !strings.Contains(out, "prefetching on 1 nodes: w2") || !strings.Contains(out, "w2: holds pt/warm:v1") {
			t.Fatalf("image prefetch said:\n%s", out)
		}
		for _, w := range pf.workers {
			if held := pf.nodeImages(w.Name)["docker.io/pt/warm:v1"]; held != (w.Name == "w2") {
				t.Errorf("%s holds pt/warm:v1: %v", w.Name, held)
			}
		}
		ds, _ := needed(warm)
		for _, d := range ds {
			if n := pf.up.BlobGets(d); n != 1 {
				t.Errorf("upstream served %s %d times, want once", d, n)
			}
		}
		pf.apply(`apiVersion: apps/v1
kind: Deployment
metadata: {name: warm}
spec:
  replicas: 1
  selector: {matchLabels: {app: warm}}
  template:
    metadata: {labels: {app: warm}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: pt/warm:v1
        command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
`)
		pf.waitRunning("warm", 1, 2*time.Minute)
		if pods := pf.pods("app=warm"); len(pods) != 1 || pods[0].Spec.NodeName != "w2" {
			t.Fatalf("the pod went to %+v, want w2, the node holding its image", pods)
		}
		pf.mustEdgectl("delete", "deployment", "warm")
	})

	t.Run("CorruptAtMaster", func(t *testing.T) {
		bb, _ := exec.LookPath("busybox")
		bad := pf.up.PushLayered(t, "pt/bad", "v1", bb, runtime.GOARCH, regtest.Layer{Size: 1 << 20, Seed: 41})
		layer := bad.Blobs[2]
		// The master pulls it through and keeps it; then its disk rots.
		if _, err := pf.get("/v2/pt/bad/blobs/" + layer.Digest.String() + "?ns=docker.io"); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(pf.mdir, "content", "blobs", "sha256", layer.Digest.Encoded())
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		pf.runPod("bad", "bad", "w1", "pt/bad:v1")
		var msg string
		waitFor(t, 3*time.Minute, "the corrupt layer refused", func() error {
			for _, p := range pf.pods("app=bad") {
				for _, cs := range p.Status.ContainerStatuses {
					if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
						msg = w.Message
						if strings.Contains(msg, "does not match its digest") && strings.Contains(msg, layer.Digest.String()) {
							return nil
						}
					}
				}
				return fmt.Errorf("phase %s, statuses %+v", p.Status.Phase, p.Status.ContainerStatuses)
			}
			return errors.New("no pod")
		})
		t.Logf("waiting message: %s", msg)
		c, err := dialContainerd(pf.workers[0].Socket, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx := namespaces.WithNamespace(context.Background(), "edge")
		if _, err := c.GetImage(ctx, "docker.io/pt/bad:v1"); err == nil {
			t.Errorf("the image is present on the node after the refused pull")
		}
		if _, err := c.ContentStore().Info(ctx, layer.Digest); err == nil {
			t.Errorf("the corrupt layer is in the node's content store")
		}
		if pf.nodeImages("w1")["docker.io/pt/bad:v1"] {
			t.Errorf("w1 reports the refused image")
		}
		pf.mustEdgectl("delete", "pod", "bad")
	})
}

// pullThroughScenario deploys two images sharing a layer to the mDNS
// workers and a large one to wp over a link that drops at 50% of its
// layer, checks what the tests promise, and returns the figures.
func pullThroughScenario(t testing.TB, pf *pullFleet) pullFigures {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox-static not installed")
	}
	const mib = 1 << 20
	shared := regtest.Layer{Size: 6 * mib, Seed: 11}
	app := pf.up.PushLayered(t, "pt/app", "v1", bb, runtime.GOARCH, shared)
	tool := pf.up.PushLayered(t, "pt/tool", "v1", bb, runtime.GOARCH, shared, regtest.Layer{Size: 2 * mib, Seed: 12})
	big := pf.up.PushLayered(t, "pt/big", "v1", bb, runtime.GOARCH, regtest.Layer{Size: 48 * mib, Seed: 13})
	if app.Blobs[2].Digest != tool.Blobs[2].Digest {
		t.Fatal("the images do not share their layer")
	}
	var fig pullFigures
	before := pf.metrics()

	// 1. Two images, one layer in common, on every mDNS worker.
	start := time.Now()
	for _, w := range pf.workers {
		pf.runPod("app-"+w.Name, "app", w.Name, "pt/app:v1")
		pf.runPod("tool-"+w.Name, "tool", w.Name, "pt/tool:v1")
	}
	pf.waitRunning("app", len(pf.workers), 5*time.Minute)
	pf.waitRunning("tool", len(pf.workers), 5*time.Minute)
	fig.pullSeconds = time.Since(start).Seconds()
	want := map[digest.Digest]int64{}
	for _, img := range []*regtest.Image{app, tool} {
		ds, _ := needed(img)
		for _, d := range ds {
			for _, b := range img.Blobs {
				if b.Digest == d {
					want[d] = b.Size
				}
			}
		}
	}
	for d, size := range want {
		fig.imageBytes += size
		if n := pf.up.BlobGets(d); n != 1 {
			t.Errorf("upstream served blob %s %d times for %d nodes, want once", d, n, len(pf.workers))
		}
	}
	if n := pf.up.BlobGets(app.Blobs[1].Digest); n > 1 {
		t.Errorf("upstream served the busybox layer %d times", n)
	}
	after := pf.metrics()
	fig.uplinkBytes = int64(after["edge_registry_upstream_bytes_total"] - before["edge_registry_upstream_bytes_total"])
	fig.nodes = len(pf.workers)
	for _, w := range pf.workers {
		g0, b0 := served(before, w.Name)
		g1, b1 := served(after, w.Name)
		fig.perNodeBytes = append(fig.perNodeBytes, b1-b0)
		if g1-g0 != int64(len(want)) || b1-b0 != fig.imageBytes {
			t.Errorf("%s fetched %d blobs, %d bytes from the master; want each of the %d blobs once, %d bytes", w.Name, g1-g0, b1-b0, len(want), fig.imageBytes)
		}
		imgs := pf.nodeImages(w.Name)
		for _, name := range []string{"docker.io/pt/app:v1", "docker.io/pt/tool:v1"} {
			if !imgs[name] {
				t.Errorf("%s does not report %s (it reports %v)", w.Name, name, imgs)
			}
		}
	}

	// 2. A large layer over a link that drops half way.
	_, bigNeeded := needed(big)
	fig.bigNeeded, fig.bigLayer = bigNeeded, big.Blobs[2].Size
	before = pf.metrics()
	pf.link.toClient.Store(0)
	pf.link.cutAt.Store(big.Blobs[2].Size / 2)
	start = time.Now()
	pf.runPod("big", "big", "wp", "pt/big:v1")
	// What edgectl shows of the pull while it runs.
	var (
		progMu   sync.Mutex
		progress []string
	)
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(300 * time.Millisecond):
			}
			out, _, err := pf.edgectl("get", "pods", "-l", "app=big", "-o", "json")
			var list struct{ Items []podJSON }
			if err != nil || json.Unmarshal([]byte(out), &list) != nil {
				continue
			}
			for _, p := range list.Items {
				for _, cs := range p.Status.ContainerStatuses {
					if w := cs.State.Waiting; w != nil && w.Message != "" {
						m := w.Reason + ": " + w.Message
						progMu.Lock()
						if len(progress) == 0 || progress[len(progress)-1] != m {
							progress = append(progress, m)
						}
						progMu.Unlock()
					}
				}
			}
		}
	}()
	waitFor(t, 5*time.Minute, "the link to drop mid-layer", func() error {
		if pf.link.cutAt.Load() == 0 {
			return nil
		}
		return fmt.Errorf("%d bytes through", pf.link.toClient.Load())
	})
	// Down until the pod says the pull failed (the node tried again, and
	// backs off): the resume then comes from a new attempt.
	waitFor(t, 3*time.Minute, "wp to report the dead link", func() error {
		progMu.Lock()
		defer progMu.Unlock()
		for _, m := range progress {
			if strings.HasPrefix(m, "ErrImagePull: ") || strings.HasPrefix(m, "ImagePullBackOff: ") {
				if pf.link.refused.Load() == 0 {
					return errors.New("no connection refused yet")
				}
				return nil
			}
		}
		return fmt.Errorf("waiting messages %q", progress)
	})
	resumeAt := time.Now()
	pf.link.Up()
	pf.waitRunning("big", 1, 5*time.Minute)
	close(stopWatch)
	<-watched
	fig.resumeSeconds = time.Since(resumeAt).Seconds()
	fig.bigDelivered = pf.link.toClient.Load()
	after = pf.metrics()
	_, b0 := served(before, "wp")
	_, b1 := served(after, "wp")
	fig.masterResent = b1 - b0 - bigNeeded
	if _, ok := t.(*testing.T); ok { // a benchmark prints its figures only
		t.Logf("pull took %s; waiting messages seen:\n  %s", time.Since(start).Round(time.Second), strings.Join(progress, "\n  "))
	}
	seen := false
	for _, m := range progress {
		seen = seen || (strings.HasPrefix(m, `ContainerCreating: Pulling image "pt/big:v1": `) && strings.Contains(m, fmt.Sprintf("/%.1f MB", float64(bigNeeded+big.Blobs[1].Size)/1e6)))
	}
	if !seen {
		t.Errorf("no pull progress (done/total MB) in the pod's status")
	}
	if fig.bigDelivered-bigNeeded > mib {
		t.Errorf("the link carried %d bytes for %d needed: %d re-sent, want at most 1 MiB", fig.bigDelivered, bigNeeded, fig.bigDelivered-bigNeeded)
	}
	if !pf.nodeImages("wp")["docker.io/pt/big:v1"] {
		t.Errorf("wp does not report docker.io/pt/big:v1")
	}
	return fig
}

// BenchmarkPullThrough prints what delivering images costs the uplink
// (goal: each blob once for the whole fleet, 1x the image) and what a
// link that drops half way through a large layer costs again (goal: at
// most 1 MiB re-sent).
func BenchmarkPullThrough(b *testing.B) {
	needRoot(b)
	// One run: a run takes minutes and builds a fleet of namespaces that
	// a second one in this process could not share (-benchtime 1x).
	pf := newPullFleet(b, 3)
	fig := pullThroughScenario(b, pf)
	b.ReportMetric(float64(fig.uplinkBytes)/float64(fig.imageBytes), "uplink/image")
	b.ReportMetric(float64(fig.bigDelivered-fig.bigNeeded), "resent-bytes")
	fmt.Printf("pull-through: %d nodes, images %.1f MB per node: uplink %.1f MB (%.2fx the image), per node from the master %v bytes, all running in %.1fs\n",
		fig.nodes, float64(fig.imageBytes)/1e6, float64(fig.uplinkBytes)/1e6, float64(fig.uplinkBytes)/float64(fig.imageBytes), fig.perNodeBytes, fig.pullSeconds)
	fmt.Printf("link drop at 50%% of a %.1f MB layer: the link carried %d bytes beyond the image (re-sent, TLS and HTTP; goal <= 1 MiB); the master sent %d more (lost in flight when it dropped); running %.1fs after the link returned\n",
		float64(fig.bigLayer)/1e6, fig.bigDelivered-fig.bigNeeded, fig.masterResent, fig.resumeSeconds)
}
