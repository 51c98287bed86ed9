// Package regtest runs a real upstream registry for tests: Debian's
// docker-registry on loopback, filled with skopeo from OCI layouts built
// here, behind a front that counts requests and can ask for credentials
// (Basic, or the Bearer token flow Docker Hub uses), serve TLS, or corrupt
// a blob. Tests of the master's registry, of agents pulling through it and
// of LAN peers share it. It is for tests only.
package regtest

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeorch/edge/images"
)

// Options shape the front of the upstream.
type Options struct {
	TLS bool // the front serves HTTPS with its own CA (CAFile)
	// Auth: "" (anonymous), "basic", or "token" (401 with a Bearer
	// challenge whose realm, on the front, takes Username/Password).
	Auth               string
	Username, Password string
}

// Upstream is a running registry and its counting front.
type Upstream struct {
	// Addr is docker-registry's own address (plain HTTP, no counting);
	// skopeo fills it there.
	Addr string
	// URL is the front: what the master is pointed at.
	URL string
	// Host is the front's host:port.
	Host string
	// CAFile holds the front's certificate (TLS only).
	CAFile string

	opts   Options
	front  *httptest.Server
	token  string
	mu     sync.Mutex
	counts map[string]int         // "METHOD PATH" -> requests
	tamper map[digest.Digest]bool // blobs served with one byte flipped
	hold   map[digest.Digest]chan struct{}
}

// Skip skips t unless docker-registry and skopeo are installed.
func Skip(t testing.TB) {
	t.Helper()
	for _, c := range []string{"docker-registry", "skopeo"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not installed (build/deps.sh test installs it)", c)
		}
	}
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start runs docker-registry on a free loopback port with its storage in a
// temp dir, and the front before it; both stop when the test ends.
func Start(t testing.TB, opts Options) *Upstream {
	t.Helper()
	Skip(t)
	dir := t.TempDir()
	var cmd *exec.Cmd
	var addr string
	for attempt := 0; ; attempt++ {
		addr = freePort(t)
		cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
		cfgPath := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		logf, err := os.Create(filepath.Join(dir, "registry.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command("docker-registry", "serve", cfgPath)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if waitUp("http://"+addr+"/v2/", 10*time.Second) {
			break
		}
		cmd.Process.Kill()
		cmd.Wait()
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("docker-registry did not start on %s:\n%s", addr, log)
		}
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	u := &Upstream{Addr: addr, opts: opts, counts: map[string]int{}, tamper: map[digest.Digest]bool{}, hold: map[digest.Digest]chan struct{}{}}
	u.token = "regtest-" + randHex(8)
	back, _ := url.Parse("http://" + addr)
	rp := httputil.NewSingleHostReverseProxy(back)
	rp.FlushInterval = -1
	rp.ModifyResponse = u.modify
	front := httptest.NewUnstartedServer(u.handler(rp))
	if opts.TLS {
		front.StartTLS()
		caPath := filepath.Join(dir, "front-ca.pem")
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw})
		if err := os.WriteFile(caPath, pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		u.CAFile = caPath
	} else {
		front.Start()
	}
	t.Cleanup(front.Close)
	u.front = front
	u.URL = front.URL
	u.Host = strings.TrimPrefix(strings.TrimPrefix(front.URL, "https://"), "http://")
	return u
}

func waitUp(u string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (u *Upstream) handler(rp http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.counts[r.Method+" "+r.URL.Path]++
		u.mu.Unlock()
		if r.URL.Path == "/token" {
			// GET with Basic credentials, or the OAuth2 refresh-token POST
			// that identity tokens use (the token is Password).
			if r.Method == http.MethodPost {
				if r.ParseForm() != nil || r.PostForm.Get("grant_type") != "refresh_token" || r.PostForm.Get("refresh_token") != u.opts.Password {
					http.Error(w, "bad refresh token", http.StatusUnauthorized)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]any{"access_token": u.token, "expires_in": 300})
				return
			}
			user, pass, _ := r.BasicAuth()
			if u.opts.Username != "" && (user != u.opts.Username || pass != u.opts.Password) {
				http.Error(w, "bad credentials", http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"token": u.token, "expires_in": 300})
			return
		}
		switch u.opts.Auth {
		case "basic":
			if user, pass, ok := r.BasicAuth(); !ok || user != u.opts.Username || pass != u.opts.Password {
				w.Header().Set("WWW-Authenticate", `Basic realm="regtest"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
				return
			}
		case "token":
			if r.Header.Get("Authorization") != "Bearer "+u.token {
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="regtest"`, u.URL))
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
				return
			}
		}
		if i := strings.LastIndex(r.URL.Path, "/blobs/"); i >= 0 && r.Method == http.MethodGet {
			u.mu.Lock()
			ch := u.hold[digest.Digest(r.URL.Path[i+len("/blobs/"):])]
			u.mu.Unlock()
			if ch != nil {
				<-ch
			}
		}
		rp.ServeHTTP(w, r)
	})
}

func (u *Upstream) modify(resp *http.Response) error {
	i := strings.LastIndex(resp.Request.URL.Path, "/blobs/")
	if i < 0 || resp.StatusCode != http.StatusOK {
		return nil
	}
	d := digest.Digest(resp.Request.URL.Path[i+len("/blobs/"):])
	u.mu.Lock()
	bad := u.tamper[d]
	u.mu.Unlock()
	if bad {
		resp.Body = &flipFirst{ReadCloser: resp.Body}
	}
	return nil
}

type flipFirst struct {
	io.ReadCloser
	done bool
}

func (f *flipFirst) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if n > 0 && !f.done {
		p[0] ^= 0xff
		f.done = true
	}
	return n, err
}

// Close stops the front, as a link that went down: connections to it are
// refused from now on.
func (u *Upstream) Close() { u.front.Close() }

// Tamper makes the front serve blob d with its first byte flipped (same
// length, wrong digest).
func (u *Upstream) Tamper(d digest.Digest) {
	u.mu.Lock()
	u.tamper[d] = true
	u.mu.Unlock()
}

// Hold makes GETs of blob d wait until the returned func is called (to
// line up concurrent pulls behind one upstream transfer).
func (u *Upstream) Hold(d digest.Digest) (release func()) {
	ch := make(chan struct{})
	u.mu.Lock()
	u.hold[d] = ch
	u.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			u.mu.Lock()
			delete(u.hold, d)
			u.mu.Unlock()
			close(ch)
		})
	}
}

// Requests counts the requests the front got with this method whose path
// ends with suffix ("" counts them all).
func (u *Upstream) Requests(method, suffix string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for k, c := range u.counts {
		m, p, _ := strings.Cut(k, " ")
		if (method == "" || m == method) && strings.HasSuffix(p, suffix) {
			n += c
		}
	}
	return n
}

// BlobGets counts GETs of blob d.
func (u *Upstream) BlobGets(d digest.Digest) int {
	return u.Requests(http.MethodGet, "/blobs/"+d.String())
}

// Image is what a push put in the registry.
type Image struct {
	Repo, Tag string
	Digest    digest.Digest // the tag's manifest or index
	MediaType string
	// Manifests are an index's platform manifests (empty for one image).
	Manifests []ocispec.Descriptor
	// Blobs are every config and layer, of every platform.
	Blobs []ocispec.Descriptor
	// Layout is the OCI layout directory pushed (oci:Layout:Tag).
	Layout string
}

// PushBusybox pushes a busybox image (busyboxPath, e.g. /bin/busybox) as
// repo:tag: one image for one arch, an index of all of them for several.
func (u *Upstream) PushBusybox(t testing.TB, repo, tag, busyboxPath string, arches ...string) *Image {
	t.Helper()
	l := newLayout(t)
	var descs []ocispec.Descriptor
	for _, arch := range arches {
		spec, err := images.BusyboxImage(repo+":"+tag, busyboxPath, arch)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := images.WriteOCIArchive(&buf, spec); err != nil {
			t.Fatal(err)
		}
		descs = append(descs, l.addArchive(t, buf.Bytes()))
	}
	return u.push(t, l, repo, tag, descs)
}

// PushRandom pushes repo:tag with one layer of size random bytes (seeded,
// streamed to disk: sizes in the gigabytes cost no memory).
func (u *Upstream) PushRandom(t testing.TB, repo, tag string, size int64, seed uint64) *Image {
	t.Helper()
	l := newLayout(t)
	layer := l.addStream(t, io.LimitReader(&seeded{r: mrand.New(mrand.NewPCG(seed, seed^0x9e3779b9))}, size))
	layer.MediaType = ocispec.MediaTypeImageLayer
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg, _ := json.Marshal(ocispec.Image{Created: &created, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.Digest}}})
	cfgDesc := l.addBytes(t, ocispec.MediaTypeImageConfig, cfg)
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: []ocispec.Descriptor{layer}}
	m.SchemaVersion = 2
	mb, _ := json.Marshal(m)
	md := l.addBytes(t, ocispec.MediaTypeImageManifest, mb)
	md.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	l.blobsOf[md.Digest] = []ocispec.Descriptor{cfgDesc, layer}
	return u.push(t, l, repo, tag, []ocispec.Descriptor{md})
}

// Layer is a layer PushLayered adds: a tar holding one file of Size
// random bytes (from Seed) at /data/<Seed>. The same Size and Seed make
// the same blob, so images can share layers.
type Layer struct {
	Size int64
	Seed uint64
}

// PushLayered pushes repo:tag, an image containers can run: busybox
// (busyboxPath, for GOARCH arch) as its base layer, then layers. The base
// layer is the same in every image PushLayered makes.
func (u *Upstream) PushLayered(t testing.TB, repo, tag, busyboxPath, arch string, layers ...Layer) *Image {
	t.Helper()
	l := newLayout(t)
	spec, err := images.BusyboxImage(repo+":"+tag, busyboxPath, arch)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := images.WriteOCIArchive(&buf, spec); err != nil {
		t.Fatal(err)
	}
	base := l.addArchive(t, buf.Bytes())
	cfgDesc, baseLayer := l.blobsOf[base.Digest][0], l.blobsOf[base.Digest][1]
	cb, err := os.ReadFile(filepath.Join(l.dir, "blobs", "sha256", cfgDesc.Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cb, &cfg); err != nil {
		t.Fatal(err)
	}
	descs := []ocispec.Descriptor{baseLayer}
	for _, ly := range layers {
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data/%d", ly.Seed), Mode: 0o644, Size: ly.Size,
				ModTime: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Typeflag: tar.TypeReg})
			if err == nil {
				_, err = io.Copy(tw, io.LimitReader(&seeded{r: mrand.New(mrand.NewPCG(ly.Seed, ly.Seed^0x9e3779b9))}, ly.Size))
			}
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		d := l.addStream(t, pr)
		d.MediaType = ocispec.MediaTypeImageLayer // uncompressed: its digest is its diff ID
		descs = append(descs, d)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, d.Digest)
	}
	cb, _ = json.Marshal(cfg)
	cfgDesc = l.addBytes(t, ocispec.MediaTypeImageConfig, cb)
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: descs}
	m.SchemaVersion = 2
	mb, _ := json.Marshal(m)
	md := l.addBytes(t, ocispec.MediaTypeImageManifest, mb)
	md.Platform = base.Platform
	l.blobsOf[md.Digest] = append([]ocispec.Descriptor{cfgDesc}, descs...)
	return u.push(t, l, repo, tag, []ocispec.Descriptor{md})
}

// Size is the bytes of the image's blobs (config and layers).
func (img *Image) Size() int64 {
	var n int64
	for _, b := range img.Blobs {
		n += b.Size
	}
	return n
}

type seeded struct{ r *mrand.Rand }

func (s *seeded) Read(p []byte) (int, error) {
	for i := 0; i < len(p); i += 8 {
		v := s.r.Uint64()
		for j := 0; j < 8 && i+j < len(p); j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	return len(p), nil
}

func (u *Upstream) push(t testing.TB, l *layout, repo, tag string, manifests []ocispec.Descriptor) *Image {
	t.Helper()
	img := &Image{Repo: repo, Tag: tag, Layout: l.dir}
	for _, md := range manifests {
		img.Blobs = append(img.Blobs, l.blobsOf[md.Digest]...)
	}
	top := manifests[0]
	all := false
	if len(manifests) > 1 {
		idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests}
		idx.SchemaVersion = 2
		b, _ := json.Marshal(idx)
		top = l.addBytes(t, ocispec.MediaTypeImageIndex, b)
		img.Manifests, all = manifests, true
	}
	img.Digest, img.MediaType = top.Digest, top.MediaType
	top.Platform = nil
	top.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	outer := ocispec.Index{Manifests: []ocispec.Descriptor{top}}
	outer.SchemaVersion = 2
	b, _ := json.Marshal(outer)
	l.write(t, "index.json", b)
	l.write(t, ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`))
	args := []string{"copy", "--insecure-policy", "--preserve-digests", "--dest-tls-verify=false"}
	if all {
		args = append(args, "--all")
	}
	args = append(args, "oci:"+l.dir+":"+tag, "docker://"+u.Addr+"/"+repo+":"+tag)
	if out, err := exec.Command("skopeo", args...).CombinedOutput(); err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return img
}

// layout is an OCI image layout directory being built.
type layout struct {
	dir     string
	blobsOf map[digest.Digest][]ocispec.Descriptor // manifest -> config and layers
}

func newLayout(t testing.TB) *layout {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &layout{dir: dir, blobsOf: map[digest.Digest][]ocispec.Descriptor{}}
}

func (l *layout) write(t testing.TB, name string, data []byte) {
	if err := os.WriteFile(filepath.Join(l.dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (l *layout) addBytes(t testing.TB, mediaType string, data []byte) ocispec.Descriptor {
	d := digest.FromBytes(data)
	l.write(t, filepath.Join("blobs", "sha256", d.Encoded()), data)
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
}

func (l *layout) addStream(t testing.TB, r io.Reader) ocispec.Descriptor {
	f, err := os.CreateTemp(l.dir, "blob")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(f, h), r, make([]byte, 1<<20))
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	d := digest.NewDigest(digest.SHA256, h)
	if err := os.Rename(f.Name(), filepath.Join(l.dir, "blobs", "sha256", d.Encoded())); err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{Digest: d, Size: n}
}

// addArchive unpacks an archive of images.WriteOCIArchive into the layout
// and returns its manifest's descriptor.
func (l *layout) addArchive(t testing.TB, archive []byte) ocispec.Descriptor {
	tr := tar.NewReader(bytes.NewReader(archive))
	var idx ocispec.Index
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		switch {
		case h.Name == "index.json":
			if err := json.Unmarshal(b, &idx); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(h.Name, "blobs/"):
			l.write(t, h.Name, b)
		}
	}
	md := idx.Manifests[0]
	md.Annotations = nil
	mb, err := os.ReadFile(filepath.Join(l.dir, "blobs", "sha256", md.Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	json.Unmarshal(mb, &m)
	l.blobsOf[md.Digest] = append([]ocispec.Descriptor{m.Config}, m.Layers...)
	return md
}

// RegistriesYAML returns a registries.yaml that mirrors host (docker.io,
// say) to this upstream's front, with its auth and TLS.
func (u *Upstream) RegistriesYAML(host string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mirrors:\n  %q:\n    endpoint: [%q]\n", host, u.URL)
	if u.opts.Auth != "" || u.opts.TLS {
		fmt.Fprintf(&b, "configs:\n  %q:\n", u.Host)
		if u.opts.Auth != "" {
			fmt.Fprintf(&b, "    auth: {username: %q, password: %q}\n", u.opts.Username, u.opts.Password)
		}
		if u.opts.TLS {
			fmt.Fprintf(&b, "    tls: {ca_file: %q}\n", u.CAFile)
		}
	}
	return b.String()
}
