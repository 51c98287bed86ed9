package edgeagent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/go-digest"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/images"
	"github.com/edgeorch/edge/images/regtest"
)

// pullMaster is the master's registry (images.Registry, pulling through
// from a real docker-registry) behind a TLS front that checks the node's
// credential, counts what it serves per blob, and can cut a transfer or
// corrupt a blob, as a bad link or a damaged disk would.
type pullMaster struct {
	srv *httptest.Server

	mu     sync.Mutex
	gets   map[digest.Digest]int
	bytes  map[digest.Digest]int64
	ranges map[digest.Digest][]string
	cut    map[digest.Digest]int64 // cut the next GET after this many bytes
	flip   map[digest.Digest]bool
	down   map[digest.Digest]int // drop the connection of the next GETs, before any answer
}

func startPullMaster(t *testing.T, up *regtest.Upstream) *pullMaster {
	t.Helper()
	path := filepath.Join(t.TempDir(), "registries.yaml")
	os.WriteFile(path, []byte(up.RegistriesYAML("docker.io")), 0o600)
	cfg, err := images.LoadRegistries(path)
	if err != nil {
		t.Fatal(err)
	}
	store, err := images.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := &images.Registry{Store: store, Registries: cfg, TagTTL: -1}
	if err := reg.Open(); err != nil {
		t.Fatal(err)
	}
	m := &pullMaster{gets: map[digest.Digest]int{}, bytes: map[digest.Digest]int64{}, ranges: map[digest.Digest][]string{},
		cut: map[digest.Digest]int64{}, flip: map[digest.Digest]bool{}, down: map[digest.Digest]int{}}
	m.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "node1" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		i := strings.LastIndex(r.URL.Path, "/blobs/")
		if i < 0 || r.Method != http.MethodGet {
			reg.ServeHTTP(w, r)
			return
		}
		d := digest.Digest(r.URL.Path[i+len("/blobs/"):])
		m.mu.Lock()
		m.gets[d]++
		if m.down[d] > 0 {
			m.down[d]--
			m.mu.Unlock()
			panic(http.ErrAbortHandler) // the link is still down
		}
		if rg := r.Header.Get("Range"); rg != "" {
			m.ranges[d] = append(m.ranges[d], rg)
		}
		cw := &cutWriter{ResponseWriter: w, m: m, d: d, cutAt: -1, flip: m.flip[d]}
		if n, ok := m.cut[d]; ok {
			cw.cutAt = n
			delete(m.cut, d)
		}
		m.mu.Unlock()
		reg.ServeHTTP(cw, r)
	}))
	m.srv.StartTLS()
	t.Cleanup(func() { m.srv.Close(); reg.Close() })
	return m
}

func (m *pullMaster) mirror() *Mirror {
	pool := x509.NewCertPool()
	pool.AddCert(m.srv.Certificate())
	return &Mirror{Host: m.srv.Listener.Addr().String(), TLS: &tls.Config{RootCAs: pool}, Username: "node1", Password: "secret"}
}

func (m *pullMaster) stats(d digest.Digest) (gets int, bytes int64, ranges []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gets[d], m.bytes[d], append([]string(nil), m.ranges[d]...)
}

// cutWriter counts a blob's bytes; it cuts the connection after cutAt
// bytes (>= 0), or flips the first byte it sends.
type cutWriter struct {
	http.ResponseWriter
	m     *pullMaster
	d     digest.Digest
	cutAt int64
	flip  bool
	n     int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.flip && c.n == 0 && len(p) > 0 {
		p = append([]byte{p[0] ^ 0xff}, p[1:]...)
	}
	if c.cutAt >= 0 && c.n+int64(len(p)) > c.cutAt {
		p = p[:c.cutAt-c.n]
		n, _ := c.ResponseWriter.Write(p)
		c.count(n)
		http.NewResponseController(c.ResponseWriter).Flush()
		panic(http.ErrAbortHandler) // the link drops mid-layer
	}
	n, err := c.ResponseWriter.Write(p)
	c.count(n)
	return n, err
}

func (c *cutWriter) count(n int) {
	c.n += int64(n)
	c.m.mu.Lock()
	c.m.bytes[c.d] += int64(n)
	c.m.mu.Unlock()
}

func (c *cutWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// Pulling through the master: images sharing a layer fetch it once; a
// transfer cut mid-layer resumes at its offset (Range) and the pull
// completes; a blob that does not match its digest is refused, leaves no
// image, and is fetched afresh once the master's copy is right.
func TestContainerdPullThroughMaster(t *testing.T) {
	r := startContainerd(t)
	up := regtest.Start(t, regtest.Options{})
	bb := mustLookPath(t, "busybox")
	const mib = 1 << 20
	a := up.PushLayered(t, "pt/a", "v1", bb, runtime.GOARCH, regtest.Layer{Size: 4 * mib, Seed: 1})
	b := up.PushLayered(t, "pt/b", "v1", bb, runtime.GOARCH, regtest.Layer{Size: 4 * mib, Seed: 1}, regtest.Layer{Size: mib, Seed: 2})
	big := up.PushLayered(t, "pt/big", "v1", bb, runtime.GOARCH, regtest.Layer{Size: 24 * mib, Seed: 3})
	bad := up.PushLayered(t, "pt/bad", "v1", bb, runtime.GOARCH, regtest.Layer{Size: 2 * mib, Seed: 4})
	m := startPullMaster(t, up)
	r.setMirror(m.mirror())
	r.pullReportEvery = 20 * time.Millisecond
	ctx := context.Background()

	t.Run("SharedLayerOnce", func(t *testing.T) {
		var last core.PullProgress
		if _, err := r.PullImage(ctx, "docker.io/pt/a:v1", func(p core.PullProgress) { last = p }); err != nil {
			t.Fatal(err)
		}
		if last.Total != a.Size() || last.Done > last.Total {
			t.Errorf("last progress %+v, want a total of %d", last, a.Size())
		}
		if _, err := r.PullImage(ctx, "docker.io/pt/b:v1", nil); err != nil {
			t.Fatal(err)
		}
		shared := a.Blobs[2].Digest // the 4 MiB layer; Blobs[1], busybox, came with the test's own image
		if b.Blobs[2].Digest != shared {
			t.Fatalf("the images do not share the layer")
		}
		for _, img := range []*regtest.Image{a, b} {
			for _, bl := range img.Blobs {
				if gets, _, _ := m.stats(bl.Digest); gets > 1 {
					t.Errorf("blob %s fetched %d times from the master", bl.Digest, gets)
				}
				if n := up.BlobGets(bl.Digest); n > 1 {
					t.Errorf("blob %s fetched %d times from upstream", bl.Digest, n)
				}
			}
		}
		if gets, n, _ := m.stats(shared); gets != 1 || n != a.Blobs[2].Size {
			t.Errorf("shared layer: %d GETs, %d bytes; want 1 and %d", gets, n, a.Blobs[2].Size)
		}
		for _, name := range []string{"docker.io/pt/a:v1", "docker.io/pt/b:v1"} {
			if _, err := r.Image(ctx, name); err != nil {
				t.Errorf("%s after the pull: %v", name, err)
			}
		}
	})

	t.Run("ConcurrentPulls", func(t *testing.T) {
		// Two images sharing a layer, and one of them twice, at once: the
		// layer still comes once (the ingest's lock), and the second pull
		// of an image keeps the first's lease until it is done too.
		c := up.PushLayered(t, "pt/c", "v1", bb, runtime.GOARCH, regtest.Layer{Size: 4 * mib, Seed: 5})
		d := up.PushLayered(t, "pt/d", "v1", bb, runtime.GOARCH, regtest.Layer{Size: 4 * mib, Seed: 5}, regtest.Layer{Size: mib, Seed: 6})
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for _, name := range []string{"docker.io/pt/c:v1", "docker.io/pt/d:v1", "docker.io/pt/c:v1"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := r.PullImage(ctx, name, nil); err != nil {
					errs <- fmt.Errorf("%s: %w", name, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for _, img := range []*regtest.Image{c, d} {
			for _, bl := range img.Blobs[2:] {
				if gets, _, _ := m.stats(bl.Digest); gets != 1 {
					t.Errorf("blob %s fetched %d times from the master, want once", bl.Digest, gets)
				}
			}
		}
		ls, err := r.client.LeasesService().List(namespaces.WithNamespace(ctx, "edge"))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if strings.HasPrefix(l.ID, "edge-pull-") {
				t.Errorf("lease %s is left after the pulls completed", l.ID)
			}
		}
	})

	t.Run("ResumeAfterCut", func(t *testing.T) {
		layer := big.Blobs[2]
		m.mu.Lock()
		m.cut[layer.Digest] = layer.Size / 2
		m.down[layer.Digest] = 3 // containerd's own reconnects (and their retries) fail too
		m.mu.Unlock()
		var retries []string
		progress := func(p core.PullProgress) {
			if p.Retry != "" && (len(retries) == 0 || retries[len(retries)-1] != p.Retry) {
				retries = append(retries, p.Retry)
			}
		}
		// The agent's worker calls again (with backoff) when a pull
		// returns without having got anywhere: the link is still down.
		var err error
		for i := 0; i < 5; i++ {
			if _, err = r.PullImage(ctx, "docker.io/pt/big:v1", progress); err == nil {
				break
			}
			if core.ErrorCode(err) != core.EUNAVAILABLE {
				t.Fatalf("pull %d: %v", i, err)
			}
			t.Logf("pull %d: %v", i, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		gets, n, ranges := m.stats(layer.Digest)
		t.Logf("big layer %d bytes: %d GETs, %d bytes served, ranges %v, retries %v", layer.Size, gets, n, ranges, retries)
		if gets < 3 || len(ranges) == 0 {
			t.Errorf("the cut layer was not fetched again with a Range: %d GETs, ranges %v", gets, ranges)
		}
		if n > layer.Size+mib {
			t.Errorf("%d bytes served for a %d-byte layer: %d re-sent, want at most 1 MiB", n, layer.Size, n-layer.Size)
		}
	})

	t.Run("BadDigestRefused", func(t *testing.T) {
		layer := bad.Blobs[2]
		m.mu.Lock()
		m.flip[layer.Digest] = true
		m.mu.Unlock()
		_, err := r.PullImage(ctx, "docker.io/pt/bad:v1", nil)
		if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "does not match its digest") || !strings.Contains(err.Error(), layer.Digest.String()) {
			t.Fatalf("pull of a corrupt layer: %v", err)
		}
		if _, err := r.Image(ctx, "docker.io/pt/bad:v1"); core.ErrorCode(err) != core.ENOTFOUND {
			t.Errorf("the image is present after a refused pull: %v", err)
		}
		cs := r.client.ContentStore()
		nctx := namespaces.WithNamespace(ctx, "edge")
		if _, err := cs.Info(nctx, layer.Digest); err == nil {
			t.Errorf("the corrupt layer was committed")
		}
		sts, _ := cs.ListStatuses(nctx)
		for _, st := range sts {
			if st.Expected == layer.Digest {
				t.Errorf("the corrupt download is kept: %+v", st)
			}
		}
		m.mu.Lock()
		m.flip[layer.Digest] = false
		m.mu.Unlock()
		if _, err := r.PullImage(ctx, "docker.io/pt/bad:v1", nil); err != nil {
			t.Fatalf("pull once the master's copy is right: %v", err)
		}
	})
}
