package edgeagent

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/images/regtest"
)

// peerStore is a peer's content: a copy of an image's OCI layout, read
// by containerd's own local content store.
func peerStore(t *testing.T, img *regtest.Image) (content.Store, string) {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", img.Layout+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	s, err := local.NewStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// With the master unreachable, a node pulls from its LAN peers: a peer
// whose layer does not match its digest is refused (its download
// discarded) and left out, the next peer gives the image; a peer that
// is not who the node list says is refused at the TLS handshake.
func TestContainerdPullFromPeers(t *testing.T) {
	r := startContainerd(t)
	up := regtest.Start(t, regtest.Options{})
	bb := mustLookPath(t, "busybox")
	img := up.PushLayered(t, "pt/peer", "v1", bb, runtime.GOARCH, regtest.Layer{Size: 3 << 20, Seed: 31})
	layer := img.Blobs[2]
	ref := "docker.io/pt/peer:v1"

	ca := newTestCA(t)
	badStore, badDir := peerStore(t, img)
	goodStore, _ := peerStore(t, img)
	// The bad peer's disk rotted under its layer.
	path := filepath.Join(badDir, "blobs", "sha256", layer.Digest.Encoded())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	mst, err := os.Stat(filepath.Join(img.Layout, "blobs", "sha256", img.Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]ocispec.Descriptor{ref: {MediaType: img.MediaType, Digest: img.Digest, Size: mst.Size()}}
	bad := startPeerServer(t, ca, "w1", badStore, tags, "w4")
	good := startPeerServer(t, ca, "w2", goodStore, tags, "w4")

	// The master: nothing listens there any more.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	master := ln.Addr().String()
	ln.Close()
	masterTLS, _ := api.CATLS(ca.pki.CAPEM)
	peerTLS, err := api.PeerClientTLS(ca.pki.CAPEM, ca.node(t, "w4"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		peersMu sync.Mutex
		peers   = []Peer{{Name: "w1", Host: bad.ListenAddr()}, {Name: "w2", Host: good.ListenAddr()}}
	)
	r.setMirror(&Mirror{Host: master, TLS: masterTLS, Username: "w4", Password: "secret", PeerTLS: peerTLS,
		Peers: func() []Peer { peersMu.Lock(); defer peersMu.Unlock(); return append([]Peer(nil), peers...) }})
	r.pullReportEvery = 10 * time.Millisecond
	ctx := context.Background()

	t.Run("CorruptPeerRefused", func(t *testing.T) {
		var mu sync.Mutex
		var msgs []string
		progress := func(p core.PullProgress) {
			mu.Lock()
			defer mu.Unlock()
			if m := pullMessage("pt/peer:v1", p); len(msgs) == 0 || msgs[len(msgs)-1] != m {
				msgs = append(msgs, m)
			}
		}
		if _, err := r.PullImage(ctx, ref, progress); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Image(ctx, ref); err != nil {
			t.Fatalf("image after the pull: %v", err)
		}
		info, err := r.client.ContentStore().Info(r.ns(ctx), layer.Digest)
		if err != nil || info.Size != layer.Size {
			t.Fatalf("layer in the store: %+v %v", info, err)
		}
		fromBad, fromGood := bad.Served()["w4"], good.Served()["w4"]
		t.Logf("w1 (corrupt) sent %d bytes, w2 sent %d; layer %d bytes; messages %q", fromBad, fromGood, layer.Size, msgs)
		if fromBad < layer.Size || fromGood < layer.Size {
			t.Errorf("w1 sent %d bytes and w2 %d: want the whole layer from each (w1's refused)", fromBad, fromGood)
		}
		if !r.peers.isBad("w1", time.Now()) || r.peers.isBad("w2", time.Now()) {
			t.Error("w1 is not left out after its corrupt blob, or w2 is")
		}
		joined := strings.Join(msgs, "\n")
		if !strings.Contains(joined, "from peer w2") || !strings.Contains(joined, "refused blob "+layer.Digest.String()+" from peer w1") {
			t.Errorf("the progress does not say where the image came from and what was refused:\n%s", joined)
		}
		sts, _ := r.client.ContentStore().ListStatuses(r.ns(ctx))
		for _, st := range sts {
			if st.Expected == layer.Digest {
				t.Errorf("a download of the layer is left: %+v", st)
			}
		}
	})

	t.Run("ErrNoPeerHasIt", func(t *testing.T) {
		up.PushLayered(t, "pt/nowhere", "v1", bb, runtime.GOARCH, regtest.Layer{Size: 1 << 20, Seed: 32}) // at the master only
		peersMu.Lock()
		// An impostor: w3's address answers with w2's certificate.
		peers = append(peers, Peer{Name: "w3", Host: good.ListenAddr()})
		peersMu.Unlock()
		_, err := r.PullImage(ctx, "docker.io/pt/nowhere:v1", nil)
		if core.ErrorCode(err) != core.EUNAVAILABLE {
			t.Fatalf("want EUNAVAILABLE, got %v", err)
		}
		msg := err.Error()
		t.Logf("%s", msg)
		for _, want := range []string{"connection refused", "LAN peers: ", "w1: left out", "w2: ", `peer at ` + good.ListenAddr() + ` is "w2", not "w3"`} {
			if !strings.Contains(msg, want) {
				t.Errorf("the error does not say %q", want)
			}
		}
		if _, err := r.Image(ctx, "docker.io/pt/nowhere:v1"); core.ErrorCode(err) != core.ENOTFOUND {
			t.Errorf("image %v", err)
		}
	})
}
