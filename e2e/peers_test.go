package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/edgeorch/edge/edgeagent"
	"github.com/edgeorch/edge/images/regtest"
)

// servedTo sums what an agent's peer server logged as sent to node, per
// digest ("served image content to a peer").
func servedTo(t *testing.T, log, node string) map[string]int64 {
	t.Helper()
	f, err := os.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	re := regexp.MustCompile(`"served image content to a peer" .*\bpeer=` + regexp.QuoteMeta(node) + ` digest=(\S+) bytes=(\d+)`)
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			n, _ := strconv.ParseInt(m[2], 10, 64)
			out[m[1]] += n
		}
	}
	return out
}

// LAN peers: with the master stopped, a fourth node gets an image from
// the nodes that hold it; the peer whose copy of a layer rotted on disk
// is refused and the layer comes from the next one.
//
// wp (the fourth node) reaches the master's API only through a link the
// test cuts, so that the pod it is given cannot be pulled from the master
// before the others hold the image; it is stopped, the others pull, one
// of their layers is corrupted, the master is stopped, and wp starts
// again from its data dir (credentials, desired state, the node list).
func TestPeers(t *testing.T) {
	needRoot(t)
	pf := newPullFleet(t, 3)
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox-static not installed")
	}
	img := pf.up.PushLayered(t, "pt/peer", "v1", bb, runtime.GOARCH, regtest.Layer{Size: 8 << 20, Seed: 61})
	layer := img.Blobs[2]
	agentDir := func(h *Host) string { return filepath.Join(pf.Dir, h.Name, "agent") }
	nodes := append(append([]*Host(nil), pf.workers...), pf.wp)

	// Every node holds a node certificate, and wp knows the others.
	waitFor(t, 2*time.Minute, "node certificates and wp's node list", func() error {
		for _, h := range nodes {
			if !fileExists(filepath.Join(agentDir(h), "node.crt")) {
				return fmt.Errorf("%s has no node certificate", h.Name)
			}
		}
		b, err := os.ReadFile(filepath.Join(agentDir(pf.wp), "network.json"))
		if err != nil {
			return err
		}
		var ns struct {
			Nodes []struct{ Name, IP string }
		}
		if err := json.Unmarshal(b, &ns); err != nil {
			return err
		}
		known := 0
		for _, n := range ns.Nodes {
			if n.IP != "" {
				known++
			}
		}
		if known < len(nodes) {
			return fmt.Errorf("wp knows %d nodes with an address: %+v", known, ns.Nodes)
		}
		return nil
	})

	// 1. wp is given the pod while the master is out of its reach: no
	// peer holds the image yet.
	pf.link.Down()
	pf.runPod("peer-wp", "peerwp", "wp", "pt/peer:v1")
	waitFor(t, 3*time.Minute, "wp's pull to fail with the master out of reach", func() error {
		for _, p := range pf.pods("app=peerwp") {
			for _, cs := range p.Status.ContainerStatuses {
				if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") && strings.Contains(w.Message, "LAN peers: ") {
					t.Logf("wp: %s: %s", w.Reason, w.Message)
					return nil
				}
			}
			return fmt.Errorf("phase %s, statuses %+v", p.Status.Phase, p.Status.ContainerStatuses)
		}
		return errors.New("no pod")
	})
	wpArgs := pf.Proc("wp-edgeagent").Args
	pf.Proc("wp-edgeagent").Stop(syscall.SIGTERM, 10*time.Second)

	// 2. The three others pull the image through the master.
	before := pf.metrics()
	for _, w := range pf.workers {
		pf.runPod("peer-"+w.Name, "peer", w.Name, "pt/peer:v1")
	}
	pf.waitRunning("peer", len(pf.workers), 5*time.Minute)
	_, n0 := served(before, "wp")
	if _, n1 := served(pf.metrics(), "wp"); n1 != n0 {
		t.Fatalf("the master served wp %d bytes", n1-n0)
	}

	// 3. The copy of the layer that wp asks for first rots; the master
	// stops.
	var peers []edgeagent.Peer
	for _, w := range pf.workers {
		peers = append(peers, edgeagent.Peer{Name: w.Name})
	}
	first := edgeagent.PeerOrder("wp", peers)[0].Name
	path := filepath.Join(pf.Dir, first, "containerd", "root", "io.containerd.content.v1.content", "blobs", "sha256", layer.Digest.Encoded())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o444); err != nil {
		t.Fatal(err)
	}
	pf.Proc(pf.master.Name+"-edgemaster").Stop(syscall.SIGTERM, 10*time.Second)

	// 4. wp starts again, with the master gone: it runs its saved pod,
	// the image coming from its peers.
	start := time.Now()
	if _, err := pf.Start(pf.wp, "wp-edgeagent", wpArgs[0], wpArgs[1:]...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "peer-wp running on wp", func() error {
		if len(pf.tasks(pf.wp, "peer-wp.")) == 1 {
			return nil
		}
		return fmt.Errorf("no running task on wp yet:\n%s", pf.Proc("wp-edgeagent").Tail(600))
	})
	took := time.Since(start)
	c, err := dialContainerd(pf.wp.Socket, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := namespaces.WithNamespace(context.Background(), "edge")
	got, err := c.GetImage(ctx, "docker.io/pt/peer:v1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Target().Digest != img.Digest {
		t.Errorf("wp holds %s as %s, the registry's is %s", got.Name(), got.Target().Digest, img.Digest)
	}
	if info, err := c.ContentStore().Info(ctx, layer.Digest); err != nil || info.Size != layer.Size {
		t.Errorf("wp's layer: %+v %v", info, err)
	}
	per := map[string]int64{}
	for _, w := range pf.workers {
		per[w.Name] = servedTo(t, pf.Proc(w.Name+"-edgeagent").Log, "wp")[layer.Digest.String()]
	}
	t.Logf("master stopped: wp ran its pod %s after starting again; layer of %d bytes sent to wp by %s (corrupt, asked first) %d; by w1, w2, w3: %d, %d, %d",
		took.Round(100*time.Millisecond), layer.Size, first, per[first], per["w1"], per["w2"], per["w3"])
	if per[first] == 0 {
		t.Errorf("%s, first in wp's order, sent wp nothing of the layer", first)
	}
	if others := per["w1"] + per["w2"] + per["w3"] - per[first]; others < layer.Size {
		t.Errorf("the other peers sent wp %d bytes of a %d-byte layer", others, layer.Size)
	}
	wpLog := pf.Proc("wp-edgeagent").Tail(1 << 20)
	for _, want := range [][]string{
		{`msg="refused a blob from a LAN peer: it does not match its digest; asking the next peer"`, "image=docker.io/pt/peer:v1 peer=" + first + " blob=" + layer.Digest.String()},
		{`msg="pulled an image from a LAN peer: the master is unreachable"`, "image=docker.io/pt/peer:v1 peer=w"},
	} {
		if !logHas(wpLog, want...) {
			t.Errorf("wp's log has no line with %q", want)
		}
	}
}

// logHas reports whether a line of log holds every part.
func logHas(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}
