package edgeagent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeorch/edge/api"
)

// testCA is a cluster CA that issues node certificates as the master does.
type testCA struct {
	pki *api.PKI
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	pki, err := api.LoadOrCreatePKI(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{pki: pki}
}

// node issues a node certificate for name and returns it loaded, as an
// agent keeps it.
func (ca *testCA) node(t *testing.T, name string) *api.NodeCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.pki.SignNode(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "node.crt"), certPEM, 0o644)
	os.WriteFile(filepath.Join(dir, "node.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
	nc := &api.NodeCert{DataDir: dir}
	if err := nc.Load(); err != nil || nc.Certificate() == nil {
		t.Fatalf("node certificate: %v", err)
	}
	return nc
}

// client is an HTTPS client of node's that trusts ca.
func (ca *testCA) client(t *testing.T, nc *api.NodeCert) *http.Client {
	t.Helper()
	cfg, err := api.PeerClientTLS(ca.pki.CAPEM, nc)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// startPeerServer serves store (a real content store, containerd's local
// one) with the node certificate of name; members are the nodes it
// takes.
func startPeerServer(t *testing.T, ca *testCA, name string, store content.Store, images map[string]ocispec.Descriptor, members ...string) *PeerServer {
	t.Helper()
	cfg, err := api.PeerServerTLS(ca.pki.CAPEM, ca.node(t, name))
	if err != nil {
		t.Fatal(err)
	}
	s := &PeerServer{Addr: "127.0.0.1:0", TLS: cfg, Content: store,
		Resolve: func(_ context.Context, ref string) (ocispec.Descriptor, error) {
			if d, ok := images[ref]; ok {
				return d, nil
			}
			return ocispec.Descriptor{}, errdefs.ErrNotFound
		},
		Member: func(node string) bool {
			for _, m := range members {
				if m == node {
					return true
				}
			}
			return false
		}}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func writeBlob(t *testing.T, store content.Store, b []byte) ocispec.Descriptor {
	t.Helper()
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(b), Size: int64(len(b))}
	if err := content.WriteBlob(context.Background(), store, desc.Digest.String(), bytes.NewReader(b), desc); err != nil {
		t.Fatal(err)
	}
	return desc
}

// A peer server gives content-addressed blobs and manifests (and a tag's
// manifest) to nodes of its cluster, read only, and nothing to anyone
// else.
func TestPeerServerAuthorization(t *testing.T) {
	ca := newTestCA(t)
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	blob := bytes.Repeat([]byte("layer bytes "), 1000)
	bd := writeBlob(t, store, blob)
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)
	md := writeBlob(t, store, manifest)
	md.MediaType = ocispec.MediaTypeImageManifest
	s := startPeerServer(t, ca, "w1", store, map[string]ocispec.Descriptor{"docker.io/pt/app:v1": md}, "w2", "w3")
	base := "https://" + s.ListenAddr()
	w2 := ca.client(t, ca.node(t, "w2"))

	get := func(c *http.Client, method, path string, hdr ...string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest(method, base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}

	t.Run("OK", func(t *testing.T) {
		resp, b, err := get(w2, "GET", "/v2/pt/app/blobs/"+bd.Digest.String()+"?ns=docker.io")
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(b, blob) || resp.Header.Get("Docker-Content-Digest") != bd.Digest.String() {
			t.Fatalf("blob: %v %v, %d bytes", err, resp, len(b))
		}
		resp, b, err = get(w2, "GET", "/v2/pt/app/blobs/"+bd.Digest.String(), "Range", "bytes=100-")
		if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, blob[100:]) {
			t.Fatalf("range: %v %v, %d bytes", err, resp, len(b))
		}
		resp, _, err = get(w2, "HEAD", "/v2/pt/app/manifests/v1?ns=docker.io")
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != md.Digest.String() ||
			resp.Header.Get("Content-Type") != ocispec.MediaTypeImageManifest || resp.ContentLength != md.Size {
			t.Fatalf("manifest by tag: %v %+v", err, resp)
		}
		resp, b, err = get(w2, "GET", "/v2/pt/app/manifests/"+md.Digest.String())
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(b, manifest) || resp.Header.Get("Content-Type") != ocispec.MediaTypeImageManifest {
			t.Fatalf("manifest by digest: %v %+v", err, resp)
		}
		if got, want := s.Served()["w2"], int64(len(blob)+len(blob)-100+len(manifest)); got != want {
			t.Errorf("served w2 %d bytes, want %d", got, want)
		}
	})
	t.Run("ErrNoClientCertificate", func(t *testing.T) {
		cfg, _ := api.CATLS(ca.pki.CAPEM)
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		if resp, _, err := get(c, "GET", "/v2/pt/app/blobs/"+bd.Digest.String()); err == nil {
			t.Fatalf("served without a client certificate: %s", resp.Status)
		}
	})
	t.Run("ErrOtherCA", func(t *testing.T) {
		other := newTestCA(t)
		// The other cluster's node trusts our CA (so only our side refuses).
		cfg, _ := api.PeerClientTLS(ca.pki.CAPEM, other.node(t, "w2"))
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		if resp, _, err := get(c, "GET", "/v2/pt/app/blobs/"+bd.Digest.String()); err == nil {
			t.Fatalf("served a certificate of another CA: %s", resp.Status)
		}
		// And a node of ours does not take a server of another cluster.
		ps := startPeerServer(t, other, "w9", store, nil, "w2")
		req, _ := http.NewRequest("GET", "https://"+ps.ListenAddr()+"/v2/pt/app/blobs/"+bd.Digest.String(), nil)
		if resp, err := w2.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("fetched from a server of another CA: %s", resp.Status)
		}
	})
	t.Run("ErrMasterCertificate", func(t *testing.T) {
		// The master's serving certificate is the CA's too, but not a
		// client certificate.
		cfg, _ := api.CATLS(ca.pki.CAPEM)
		cfg.Certificates = []tls.Certificate{ca.pki.Serving}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		if resp, _, err := get(c, "GET", "/v2/pt/app/blobs/"+bd.Digest.String()); err == nil {
			t.Fatalf("served the master's serving certificate: %s", resp.Status)
		}
	})
	t.Run("ErrNotAMember", func(t *testing.T) {
		gone := ca.client(t, ca.node(t, "w7")) // deleted from the cluster since
		resp, _, err := get(gone, "GET", "/v2/pt/app/blobs/"+bd.Digest.String())
		if err != nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("a node not in the cluster: %v %v", err, resp)
		}
	})
	t.Run("ErrNotContentAddressed", func(t *testing.T) {
		for _, p := range []string{"/v2/", "/v2/_catalog", "/v2/pt/app/tags/list", "/v2/pt/app/blobs/uploads/",
			"/v2/pt/app/blobs/latest", "/v2/pt/app/blobs/sha256:1234", "/v2/pt/app/manifests/v2?ns=docker.io",
			"/v2/../etc/blobs/" + bd.Digest.String(), "/v2/pt/app/manifests/v1?ns=a/b", "/debug/pprof/", "/metrics"} {
			resp, b, err := get(w2, "GET", p)
			if err != nil || resp.StatusCode < 400 || resp.StatusCode == 405 {
				t.Errorf("GET %s: %v %v %s", p, err, resp, b)
			}
		}
	})
	t.Run("ErrWrite", func(t *testing.T) {
		for _, m := range []string{"PUT", "POST", "DELETE", "PATCH"} {
			for _, p := range []string{"/v2/pt/app/blobs/" + bd.Digest.String(), "/v2/pt/app/manifests/v1", "/v2/pt/app/blobs/uploads/"} {
				resp, _, err := get(w2, m, p)
				if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
					t.Errorf("%s %s: %v %v", m, p, err, resp)
				}
			}
		}
		if _, err := store.Info(context.Background(), bd.Digest); err != nil {
			t.Errorf("the blob is gone: %v", err)
		}
	})
}

// The order of peers and who is left out: a peer that sent a corrupt
// blob is skipped until its time is up.
func TestBadPeers(t *testing.T) {
	var b badPeers
	now := time.Now()
	if b.isBad("w1", now) {
		t.Fatal("bad before anything happened")
	}
	b.markBad("w1", now.Add(peerBadFor))
	if !b.isBad("w1", now.Add(time.Minute)) || b.isBad("w2", now) {
		t.Fatal("w1 not left out, or w2 is")
	}
	if b.isBad("w1", now.Add(peerBadFor)) {
		t.Fatal("w1 still left out after its time")
	}
}

// blackhole is a loopback address whose SYNs go unanswered, as a powered
// off or unplugged Pi's do on a LAN: a listener with a backlog of one,
// filled, never accepting.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	c, err := net.DialTimeout("tcp", addr, 5*time.Second) // fills the queue
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return addr
}

// A peer that does not answer at all (switched off, unplugged) costs a
// pull attempt a LAN's connect time, not the master's 10 s: every attempt
// asks each peer in turn, so a fleet with a few nodes down would wait
// that long per node before reaching one that has the image.
func TestPeerUnreachableQuickly(t *testing.T) {
	ca := newTestCA(t)
	peerTLS, err := api.PeerClientTLS(ca.pki.CAPEM, ca.node(t, "w4"))
	if err != nil {
		t.Fatal(err)
	}
	m := newPullMirror(&Mirror{Host: "127.0.0.1:1", Peers: func() []Peer { return nil }, PeerTLS: peerTLS})
	p := Peer{Name: "w1", Host: blackhole(t)}
	hosts, err := m.peerHosts(p)("docker.io")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := hosts[0].Client.Get("https://" + p.Host + "/v2/")
	if err == nil {
		resp.Body.Close()
		t.Fatal("an unreachable peer answered")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("an unreachable peer took %s to give up on (%v)", d.Round(time.Millisecond), err)
	}
	t.Logf("gave up after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

// Anyone on the LAN can open connections to the peer port before showing
// a certificate: each costs the agent a goroutine and buffers (about 11
// KB) for the 10 s a handshake may take, so without a cap a host opening
// thousands a second would run a Pi out of memory. At most MaxConns are
// served at once; more wait to be accepted.
func TestPeerServerConnLimit(t *testing.T) {
	ca := newTestCA(t)
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := api.PeerServerTLS(ca.pki.CAPEM, ca.node(t, "w1"))
	if err != nil {
		t.Fatal(err)
	}
	const limit, conns = 16, 200
	s := &PeerServer{Addr: "127.0.0.1:0", TLS: cfg, Content: store, MaxConns: limit}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	g0 := runtime.NumGoroutine()
	for i := 0; i < conns; i++ {
		c, err := net.DialTimeout("tcp", s.ListenAddr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello, then nothing
	}
	// The server takes up to limit of them at once (a goroutine each);
	// look for more until a deadline.
	most := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		most = max(most, runtime.NumGoroutine()-g0)
		if most > limit+10 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if most < limit || most > limit+10 {
		t.Errorf("%d connections opened, %d goroutines more on the server: want about %d", conns, most, limit)
	}
}

// Nodes start asking at different peers (all in name order from there),
// so a LAN without its master does not send every node to one peer.
func TestPeerOrder(t *testing.T) {
	var peers []Peer
	for _, n := range []string{"w3", "w1", "w4", "w2"} {
		peers = append(peers, Peer{Name: n, Host: n + ":7445"})
	}
	firsts := map[string]int{}
	for i := 0; i < 40; i++ {
		self := fmt.Sprintf("pi-%d", i)
		order := PeerOrder(self, peers)
		if len(order) != 4 {
			t.Fatalf("%s: %v", self, order)
		}
		for j := range order {
			want := fmt.Sprintf("w%d", (int(order[0].Name[1]-'0')-1+j)%4+1)
			if order[j].Name != want {
				t.Fatalf("%s: order %v is not a rotation of the names", self, order)
			}
		}
		if again := PeerOrder(self, peers); !slices.Equal(again, order) {
			t.Fatalf("%s: %v then %v", self, order, again)
		}
		firsts[order[0].Name]++
	}
	if len(firsts) < 3 {
		t.Fatalf("40 nodes start at only %v", firsts)
	}
	if peers[0].Name != "w3" {
		t.Fatal("PeerOrder sorted its argument in place")
	}
}
