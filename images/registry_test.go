package images_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/images"
	"github.com/edgeorch/edge/images/regtest"
)

const busybox = "/bin/busybox"

// dialLog records every address the registry dials upstream.
type dialLog struct {
	mu    sync.Mutex
	addrs map[string]int
}

func (l *dialLog) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	l.mu.Lock()
	if l.addrs == nil {
		l.addrs = map[string]int{}
	}
	l.addrs[addr]++
	l.mu.Unlock()
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		return nil, fmt.Errorf("test: no network beyond loopback (%s)", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (l *dialLog) only(t *testing.T, allowed ...string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for a := range l.addrs {
		ok := false
		for _, b := range allowed {
			ok = ok || a == b
		}
		if !ok {
			t.Errorf("the registry dialled %s; only %v may be", a, allowed)
		}
	}
}

type master struct {
	reg   *images.Registry
	store *images.Store
	srv   *httptest.Server
	dials *dialLog
}

func newMaster(t *testing.T, registriesYAML string, opts ...func(*images.Registry)) *master {
	t.Helper()
	cfg, err := images.ParseRegistries([]byte(registriesYAML))
	if err != nil {
		t.Fatal(err)
	}
	// LoadRegistries reads the TLS files; do the same path.
	path := filepath.Join(t.TempDir(), "registries.yaml")
	os.WriteFile(path, []byte(registriesYAML), 0o600)
	if cfg, err = images.LoadRegistries(path); err != nil {
		t.Fatal(err)
	}
	store, err := images.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := &master{store: store, dials: &dialLog{}}
	m.reg = &images.Registry{Store: store, Registries: cfg, Dial: m.dials.dial, TagTTL: -1}
	for _, o := range opts {
		o(m.reg)
	}
	if err := m.reg.Open(); err != nil {
		t.Fatal(err)
	}
	m.srv = httptest.NewServer(m.reg)
	t.Cleanup(func() { m.srv.Close(); m.reg.Close() })
	return m
}

func (m *master) get(t *testing.T, method, path string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, m.srv.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, path, err)
	}
	return resp, b
}

var acceptAll = strings.Join(images.ManifestMediaTypes, ", ")

// A multi-arch image pulled through the master from an upstream behind TLS
// and Docker Hub's token flow: the index first, platform manifests and
// blobs only when asked, each fetched upstream once.
func TestRegistry_PullThrough(t *testing.T) {
	up := regtest.Start(t, regtest.Options{TLS: true, Auth: "token", Username: "puller", Password: "s3cret"})
	img := up.PushBusybox(t, "library/busybox", "latest", busybox, "amd64", "arm64")
	m := newMaster(t, up.RegistriesYAML("docker.io"))

	resp, _ := m.get(t, "GET", "/v2/")
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("GET /v2/: %s", resp.Status)
	}
	// containerd using the master as docker.io's mirror.
	resp, body := m.get(t, "GET", "/v2/library/busybox/manifests/latest?ns=docker.io", "Accept", acceptAll)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ocispec.MediaTypeImageIndex ||
		resp.Header.Get("Docker-Content-Digest") != img.Digest.String() || digest.FromBytes(body) != img.Digest {
		t.Fatalf("index: %s %v %s", resp.Status, resp.Header, body)
	}
	for _, b := range img.Blobs {
		if n := up.BlobGets(b.Digest); n != 0 {
			t.Fatalf("blob %s fetched before anyone asked for it", b.Digest)
		}
	}
	// The same image by its full name, HEAD: from the store.
	resp, _ = m.get(t, "HEAD", "/v2/docker.io/library/busybox/manifests/latest", "Accept", acceptAll)
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != img.Digest.String() {
		t.Fatalf("HEAD by full name: %s", resp.Status)
	}
	if n := up.Requests("", "/manifests/latest"); n != 2 {
		t.Fatalf("upstream got %d requests for the tag, want 2 (a 401, then with the token)", n)
	}
	for _, md := range img.Manifests {
		resp, body = m.get(t, "GET", "/v2/docker.io/library/busybox/manifests/"+md.Digest.String(), "Accept", acceptAll)
		if resp.StatusCode != 200 || digest.FromBytes(body) != md.Digest || resp.Header.Get("Content-Type") != md.MediaType {
			t.Fatalf("platform manifest %s: %s %s", md.Digest, resp.Status, body)
		}
	}
	for _, b := range img.Blobs {
		for range 2 {
			resp, body = m.get(t, "GET", "/v2/library/busybox/blobs/"+b.Digest.String()+"?ns=docker.io")
			if resp.StatusCode != 200 || digest.FromBytes(body) != b.Digest || resp.Header.Get("Docker-Content-Digest") != b.Digest.String() {
				t.Fatalf("blob %s: %s", b.Digest, resp.Status)
			}
		}
		if n := up.BlobGets(b.Digest); n != 1 {
			t.Fatalf("blob %s: %d upstream GETs (with the 401 retry), want 1", b.Digest, n)
		}
	}
	// A client that takes no index gets linux/amd64's manifest.
	resp, body = m.get(t, "GET", "/v2/library/busybox/manifests/latest?ns=docker.io", "Accept", ocispec.MediaTypeImageManifest)
	amd64 := img.Manifests[0]
	if resp.StatusCode != 200 || digest.FromBytes(body) != amd64.Digest {
		t.Fatalf("no-index client: %s %s", resp.Status, body)
	}
	// Tags the master holds.
	resp, body = m.get(t, "GET", "/v2/docker.io/library/busybox/tags/list")
	var tl struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	json.Unmarshal(body, &tl)
	if resp.StatusCode != 200 || len(tl.Tags) != 1 || tl.Tags[0] != "latest" {
		t.Fatalf("tags/list: %s %s", resp.Status, body)
	}
	m.dials.only(t, up.Host)
}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("not a distribution error: %s", body)
	}
	return e.Errors[0].Code
}

func TestRegistry_Errors(t *testing.T) {
	up := regtest.Start(t, regtest.Options{})
	img := up.PushBusybox(t, "library/busybox", "1", busybox, "amd64")
	m := newMaster(t, up.RegistriesYAML("docker.io"))
	missing := digest.FromString("nothing")
	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v2/library/busybox/manifests/nosuchtag?ns=docker.io", 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/library/nosuchrepo/manifests/latest?ns=docker.io", 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/library/busybox/manifests/" + missing.String() + "?ns=docker.io", 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/library/busybox/blobs/" + missing.String() + "?ns=docker.io", 404, "BLOB_UNKNOWN"},
		{"HEAD", "/v2/library/busybox/blobs/" + missing.String() + "?ns=docker.io", 404, ""},
		{"GET", "/v2/library/busybox/blobs/sha256:zz?ns=docker.io", 400, "DIGEST_INVALID"},
		{"GET", "/v2/library/never/tags/list?ns=docker.io", 404, "NAME_UNKNOWN"},
		{"GET", "/v2/Bad_Name/manifests/latest", 400, "NAME_INVALID"},
		// A host in the name and another in ns: refused, not pulled from the first.
		{"GET", "/v2/127.0.0.1:1/x/manifests/latest?ns=docker.io", 400, "NAME_INVALID"},
		{"DELETE", "/v2/library/busybox/manifests/1?ns=docker.io", 405, "UNSUPPORTED"},
	} {
		resp, body := m.get(t, c.method, c.path, "Accept", acceptAll)
		if resp.StatusCode != c.status || (c.code != "" && errorCode(t, body) != c.code) {
			t.Errorf("%s %s: %s %s, want %d %s", c.method, c.path, resp.Status, body, c.status, c.code)
		}
	}
	// HEAD of a blob not yet stored asks upstream, and stores nothing.
	layer := img.Blobs[1]
	resp, _ := m.get(t, "HEAD", "/v2/library/busybox/blobs/"+layer.Digest.String()+"?ns=docker.io")
	if resp.StatusCode != 200 || resp.ContentLength != layer.Size {
		t.Fatalf("HEAD blob: %s %d", resp.Status, resp.ContentLength)
	}
}

// Concurrent pulls of one blob share one upstream transfer and all get
// the right bytes; later pulls never go upstream. Range requests return
// the right bytes, cold or stored.
func TestRegistry_BlobOnceAndRange(t *testing.T) {
	up := regtest.Start(t, regtest.Options{})
	const size = 8 << 20
	img := up.PushRandom(t, "edge/big", "v1", size, 1)
	m := newMaster(t, up.RegistriesYAML("docker.io"))
	layer := img.Blobs[1].Digest
	path := "/v2/edge/big/blobs/" + layer.String() + "?ns=docker.io"

	release := up.Hold(layer)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", m.srv.URL+path, nil)
			if i == 7 {
				req.Header.Set("Range", "bytes=1000-1999")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			switch {
			case err != nil:
				errs <- err
			case i == 7 && (resp.StatusCode != 206 || len(b) != 1000):
				errs <- fmt.Errorf("range on a blob in flight: %s, %d bytes", resp.Status, len(b))
			case i != 7 && (resp.StatusCode != 200 || digest.FromBytes(b) != layer):
				errs <- fmt.Errorf("concurrent pull: %s, %d bytes, wrong digest", resp.Status, len(b))
			}
		}()
	}
	// All eight wait on the one transfer before the upstream sends a byte.
	deadline := time.Now().Add(10 * time.Second)
	for (up.BlobGets(layer) == 0 || m.reg.Stats()["edge_registry_blob_waiters"] != 8) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if w := m.reg.Stats()["edge_registry_blob_waiters"]; w != 8 {
		t.Errorf("%v requests wait on the transfer, want 8", w)
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for range 3 {
		resp, body := m.get(t, "GET", path)
		if resp.StatusCode != 200 || digest.FromBytes(body) != layer {
			t.Fatalf("stored pull: %s", resp.Status)
		}
	}
	if n := up.BlobGets(layer); n != 1 {
		t.Fatalf("upstream served the blob %d times, want 1", n)
	}
	// Range on the stored blob, checked against the blob itself.
	want, err := os.ReadFile(m.store.BlobPath(layer))
	if err != nil {
		t.Fatal(err)
	}
	for _, rg := range []struct {
		hdr        string
		start, end int
	}{{"bytes=0-0", 0, 1}, {"bytes=4194304-4194403", 4194304, 4194404}, {"bytes=8388000-", 8388000, size}, {"bytes=-10", size - 10, size}} {
		resp, body := m.get(t, "GET", path, "Range", rg.hdr)
		if resp.StatusCode != 206 || !bytes.Equal(body, want[rg.start:rg.end]) ||
			resp.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", rg.start, rg.end-1, size) {
			t.Errorf("Range %s: %s %q, %d bytes", rg.hdr, resp.Status, resp.Header.Get("Content-Range"), len(body))
		}
	}
}

// A blob whose upstream bytes do not match its digest is refused: no
// client gets it whole, and it is not stored.
func TestRegistry_CorruptBlobRefused(t *testing.T) {
	up := regtest.Start(t, regtest.Options{})
	img := up.PushRandom(t, "edge/corrupt", "v1", 3<<20, 2)
	m := newMaster(t, up.RegistriesYAML("docker.io"))
	layer := img.Blobs[1].Digest
	up.Tamper(layer)
	for range 2 {
		resp, err := http.Get(m.srv.URL + "/v2/edge/corrupt/blobs/" + layer.String() + "?ns=docker.io")
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == 200 && digest.FromBytes(b) == layer {
				t.Fatal("a corrupt blob was served whole")
			}
			if rerr == nil && resp.StatusCode == 200 {
				t.Fatalf("a corrupt blob was served with status 200 and no error (%d bytes)", len(b))
			}
		}
		if _, err := m.store.Stat(layer); core.ErrorCode(err) != core.ENOTFOUND {
			t.Fatalf("corrupt blob stored: %v", err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(m.store.Dir, "ingest"))
	if len(ents) != 0 {
		t.Fatalf("ingest left %d files", len(ents))
	}
}

// The registry dials only hosts that --registries or the reference name:
// not Docker Hub when a mirror serves, and never a host a registry
// redirects a manifest to.
func TestRegistry_NeverDialsUnnamedHosts(t *testing.T) {
	up := regtest.Start(t, regtest.Options{})
	img := up.PushBusybox(t, "library/busybox", "latest", busybox, "amd64")
	var evilConns sync.WaitGroup
	evil, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	evilHits := make(chan struct{}, 100)
	evilConns.Add(1)
	go func() {
		defer evilConns.Done()
		for {
			c, err := evil.Accept()
			if err != nil {
				return
			}
			evilHits <- struct{}{}
			c.Close()
		}
	}()
	// A mirror that sends manifests elsewhere.
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+evil.Addr().String()+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	yaml := up.RegistriesYAML("docker.io") + fmt.Sprintf("  %q:\n    endpoint: [%q]\n", "quay.io", redirector.URL)
	m := newMaster(t, yaml)

	resp, _ := m.get(t, "GET", "/v2/library/busybox/manifests/latest?ns=docker.io", "Accept", acceptAll)
	if resp.StatusCode != 200 {
		t.Fatalf("pull through the mirror: %s", resp.Status)
	}
	for _, b := range img.Blobs {
		m.get(t, "GET", "/v2/library/busybox/blobs/"+b.Digest.String()+"?ns=docker.io")
	}
	m.dials.only(t, up.Host)

	// quay.io's mirror redirects the manifest to an unnamed host: refused;
	// then quay.io itself (named by the reference) is tried.
	resp, body := m.get(t, "GET", "/v2/quay.io/app/manifests/latest", "Accept", acceptAll)
	if resp.StatusCode == 200 {
		t.Fatalf("a redirected manifest was served: %s", body)
	}
	m.dials.only(t, up.Host, redirector.Listener.Addr().String(), "quay.io:443")
	redirector.Close()
	evil.Close()
	evilConns.Wait()
	if len(evilHits) != 0 {
		t.Fatalf("the unnamed host got %d connections", len(evilHits))
	}
}

// A stored tag is checked upstream once TagTTL has passed: a moved tag is
// pulled again; with the upstream gone, the stored one is served.
func TestRegistry_TagRefresh(t *testing.T) {
	up := regtest.Start(t, regtest.Options{})
	v1 := up.PushRandom(t, "edge/app", "latest", 1000, 1)
	m := newMaster(t, up.RegistriesYAML("docker.io"), func(r *images.Registry) { r.TagTTL = time.Nanosecond })
	path := "/v2/edge/app/manifests/latest?ns=docker.io"
	if resp, _ := m.get(t, "GET", path, "Accept", acceptAll); resp.Header.Get("Docker-Content-Digest") != v1.Digest.String() {
		t.Fatalf("first pull: %s %v", resp.Status, resp.Header)
	}
	if resp, _ := m.get(t, "GET", path, "Accept", acceptAll); resp.Header.Get("Docker-Content-Digest") != v1.Digest.String() {
		t.Fatalf("unchanged tag: %s", resp.Status)
	}
	if n := up.Requests("GET", "/manifests/latest"); n != 1 {
		t.Fatalf("an unchanged tag was fetched %d times (HEAD is enough)", n)
	}
	v2 := up.PushRandom(t, "edge/app", "latest", 1000, 2)
	if resp, _ := m.get(t, "GET", path, "Accept", acceptAll); resp.Header.Get("Docker-Content-Digest") != v2.Digest.String() {
		t.Fatalf("moved tag: %s %v", resp.Status, resp.Header)
	}
	up.Close()
	resp, body := m.get(t, "GET", path, "Accept", acceptAll)
	if resp.StatusCode != 200 || digest.FromBytes(body) != v2.Digest {
		t.Fatalf("upstream down: %s %s", resp.Status, body)
	}
	if tg, _ := m.store.Tag("docker.io/edge/app", "latest"); tg.Digest != v2.Digest {
		t.Fatalf("stored tag %s", tg.Digest)
	}
}

// Credentials as k3s writes them: an identity token (OAuth2 refresh
// token), and base64 auth against a Basic registry; wrong ones fail.
func TestRegistry_UpstreamCredentials(t *testing.T) {
	tokUp := regtest.Start(t, regtest.Options{Auth: "token", Username: "u", Password: "refresh-me"})
	tokImg := tokUp.PushRandom(t, "edge/a", "v1", 100, 1)
	basicUp := regtest.Start(t, regtest.Options{Auth: "basic", Username: "user", Password: "pass"})
	basicImg := basicUp.PushRandom(t, "edge/b", "v1", 100, 2)
	yaml := fmt.Sprintf("mirrors:\n  tok.example:\n    endpoint: [%q]\n  basic.example:\n    endpoint: [%q]\n"+
		"configs:\n  %q:\n    auth: {identitytoken: refresh-me}\n  %q:\n    auth: {auth: dXNlcjpwYXNz}\n",
		tokUp.URL, basicUp.URL, tokUp.Host, basicUp.Host)
	m := newMaster(t, yaml)
	for _, c := range []struct {
		path string
		want digest.Digest
	}{
		{"/v2/tok.example/edge/a/manifests/v1", tokImg.Digest},
		{"/v2/basic.example/edge/b/manifests/v1", basicImg.Digest},
	} {
		resp, body := m.get(t, "GET", c.path, "Accept", acceptAll)
		if resp.StatusCode != 200 || digest.FromBytes(body) != c.want {
			t.Errorf("%s: %s %s", c.path, resp.Status, body)
		}
	}
	if n := tokUp.Requests("POST", "/token"); n != 1 {
		t.Errorf("identity token exchanged %d times, want 1", n)
	}
	// Wrong credentials: refused, and the message says where to look.
	bad := newMaster(t, fmt.Sprintf("mirrors:\n  basic.example:\n    endpoint: [%q]\nconfigs:\n  %q:\n    auth: {username: user, password: wrong}\n", basicUp.URL, basicUp.Host))
	resp, body := bad.get(t, "GET", "/v2/basic.example/edge/b/manifests/v1", "Accept", acceptAll)
	if resp.StatusCode == 200 || errorCode(t, body) != "MANIFEST_UNKNOWN" || !strings.Contains(string(body), "auth in --registries") {
		t.Errorf("wrong credentials: %s %s", resp.Status, body)
	}
}

// An imported (pinned) tag is the cluster's own: an upstream tag of the
// same name is never asked about, nor pulled over it.
func TestRegistry_ImportedTagStays(t *testing.T) {
	up := regtest.Start(t, regtest.Options{})
	up.PushRandom(t, "edge/app", "latest", 1000, 1)
	m := newMaster(t, up.RegistriesYAML("docker.io"), func(r *images.Registry) { r.TagTTL = time.Nanosecond })
	var buf bytes.Buffer
	spec := &images.ImageSpec{Name: "docker.io/edge/app:latest", Architecture: "amd64", Files: []images.File{{Path: "/f", Mode: 0o644, Data: []byte("mine")}}}
	if err := images.WriteOCIArchive(&buf, spec); err != nil {
		t.Fatal(err)
	}
	res, err := m.store.Import(&buf, images.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		resp, _ := m.get(t, "GET", "/v2/edge/app/manifests/latest?ns=docker.io", "Accept", acceptAll)
		if resp.Header.Get("Docker-Content-Digest") != res.Images[0].Digest.String() {
			t.Fatalf("served %s, imported %s", resp.Header.Get("Docker-Content-Digest"), res.Images[0].Digest)
		}
	}
	if n := up.Requests("HEAD", "/manifests/latest") + up.Requests("GET", "/manifests/latest"); n != 0 {
		t.Fatalf("the upstream was asked %d times about an imported tag", n)
	}
}
