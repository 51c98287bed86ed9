package api_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/api"
)

// A node gets a certificate of the cluster CA for its own name only, with
// its node credential; the agent keeps it and renews it once a third of
// its validity is left.
func TestNodeCertificate(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	resp, err := api.NewClient(e.url, e.join.String(), api.PinnedTLS(e.join.CAHash)).Join(ctx, "pi-1", nodePassword)
	if err != nil {
		t.Fatal(err)
	}
	ca := e.srv.PKI.CACert
	creds := &api.Credentials{API: e.url, Node: "pi-1", Password: resp.MQTTPassword, CACert: string(e.srv.PKI.CAPEM)}
	dir := t.TempDir()
	now := time.Now()
	nc := &api.NodeCert{DataDir: dir, Credentials: func() *api.Credentials { return creds }, Now: func() time.Time { return now },
		IPs: func() []net.IP { return []net.IP{net.ParseIP("192.168.1.7")} }}

	t.Run("OK", func(t *testing.T) {
		if err := nc.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		leaf := nc.Certificate().Leaf
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
				t.Errorf("usage %v: %v", u, err)
			}
		}
		if leaf.Subject.CommonName != "pi-1" || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("192.168.1.7")) {
			t.Errorf("certificate for %q, IPs %v", leaf.Subject.CommonName, leaf.IPAddresses)
		}
		if d := leaf.NotAfter.Sub(time.Now()); d < 360*24*time.Hour {
			t.Errorf("valid for %s only", d)
		}
		st, err := os.Stat(filepath.Join(dir, "node.key"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("node.key: %v %v", st, err)
		}
		// Kept: a restarted agent loads it and asks for nothing.
		again := &api.NodeCert{DataDir: dir, Credentials: func() *api.Credentials { return nil }}
		if err := again.Load(); err != nil || again.Certificate() == nil {
			t.Fatalf("load: %v", err)
		}
		if err := again.Ensure(ctx); err != nil {
			t.Errorf("a fresh certificate was requested again: %v", err)
		}
	})
	t.Run("Renewed", func(t *testing.T) {
		old := nc.Certificate().Leaf
		now = now.Add(200 * 24 * time.Hour) // two thirds left: kept
		if err := nc.Ensure(ctx); err != nil || nc.Certificate().Leaf != old {
			t.Fatalf("renewed too early: %v", err)
		}
		now = now.Add(50 * 24 * time.Hour) // less than a third of 365 days left
		e.now = now
		if err := nc.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		if nc.Certificate().Leaf.SerialNumber.Cmp(old.SerialNumber) == 0 {
			t.Error("not renewed with a third of its validity left")
		}
	})
	t.Run("ErrNotTheNode", func(t *testing.T) {
		bad := *creds
		bad.Password = "guess"
		other := &api.NodeCert{DataDir: t.TempDir(), Credentials: func() *api.Credentials { return &bad }}
		if err := other.Ensure(ctx); err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("a wrong credential got a certificate: %v", err)
		}
		if other.Certificate() != nil {
			t.Fatal("certificate kept after a refusal")
		}
	})
	t.Run("NameIsTheNodes", func(t *testing.T) {
		// Whatever the request says, the certificate names the node that
		// authenticated (another node's name would let it pose as that node).
		c := &api.Credentials{API: e.url, Node: "pi-2", Password: resp.MQTTPassword, CACert: creds.CACert}
		other := &api.NodeCert{DataDir: t.TempDir(), Credentials: func() *api.Credentials { return c }}
		if err := other.Ensure(ctx); err == nil {
			t.Fatalf("pi-1's credential got a certificate for pi-2: %s", other.Certificate().Leaf.Subject.CommonName)
		}
	})
}

// A node certificate is signed by the cluster CA and usable to serve (its
// peer server), but agents and edgectl check the master by the CA alone
// (no host names): a node's certificate must not pass for the master's,
// or any one node could pose as the master's API and broker to the others
// and to edgectl (collecting their MQTT passwords and the admin token).
// It still passes for a peer's, and the master's does not.
func TestNodeCertIsNotTheMasters(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	resp, err := api.NewClient(e.url, e.join.String(), api.PinnedTLS(e.join.CAHash)).Join(ctx, "pi-1", nodePassword)
	if err != nil {
		t.Fatal(err)
	}
	creds := &api.Credentials{API: e.url, Node: "pi-1", Password: resp.MQTTPassword, CACert: string(e.srv.PKI.CAPEM)}
	nc := &api.NodeCert{DataDir: t.TempDir(), Credentials: func() *api.Credentials { return creds }}
	if err := nc.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	nodeCert := *nc.Certificate()
	nodeCert.Certificate = append(nodeCert.Certificate, e.srv.PKI.CACert.Raw) // the chain, as the master sends it
	handshake := func(t *testing.T, serve tls.Certificate, client *tls.Config) error {
		t.Helper()
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{serve}})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			if c, err := ln.Accept(); err == nil {
				c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		defer func() { <-done }()
		c, err := tls.Dial("tcp", ln.Addr().String(), client)
		if err == nil {
			c.Close()
		}
		return err
	}
	catls, err := api.CATLS(e.srv.PKI.CAPEM)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{"CATLS": catls, "PinnedTLS": api.PinnedTLS(e.join.CAHash)} {
		if err := handshake(t, nodeCert, cfg); err == nil {
			t.Errorf("%s: a node certificate passes for the master's", name)
		}
		if err := handshake(t, e.srv.PKI.Serving, cfg.Clone()); err != nil {
			t.Errorf("%s: the master's own certificate is refused: %v", name, err)
		}
	}
	peer, err := api.PeerClientTLS(e.srv.PKI.CAPEM, nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, nodeCert, peer); err != nil {
		t.Errorf("a node certificate is refused as a peer's: %v", err)
	}
	if err := handshake(t, e.srv.PKI.Serving, peer.Clone()); err == nil {
		t.Error("the master's serving certificate passes for a peer's")
	}
}

// A node certificate is for one name and one cluster CA: a node renamed
// (--name) or joined to a rebuilt master (a token of another CA) keeps its
// data dir, and must not keep serving and asking its peers with the old
// certificate for most of a year (its peers refuse it: another name, not
// their CA).
func TestNodeCertFollowsTheNode(t *testing.T) {
	ctx := context.Background()
	e := setup(t)
	join := func(e *env, node string) *api.Credentials {
		t.Helper()
		resp, err := api.NewClient(e.url, e.join.String(), api.PinnedTLS(e.join.CAHash)).Join(ctx, node, nodePassword)
		if err != nil {
			t.Fatal(err)
		}
		return &api.Credentials{API: e.url, Node: node, Password: resp.MQTTPassword, CACert: string(e.srv.PKI.CAPEM)}
	}
	creds := join(e, "pi-1")
	nc := &api.NodeCert{DataDir: t.TempDir(), Credentials: func() *api.Credentials { return creds }}
	if err := nc.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("Renamed", func(t *testing.T) {
		creds = join(e, "pi-9")
		if err := nc.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		if got := nc.Certificate().Leaf.Subject.CommonName; got != "pi-9" {
			t.Errorf("the node is pi-9 now; its certificate still says %q", got)
		}
	})
	t.Run("NewCA", func(t *testing.T) {
		e2 := setup(t)
		creds = join(e2, "pi-9")
		if err := nc.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(e2.srv.PKI.CACert)
		if _, err := nc.Certificate().Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("joined to another master, the certificate is still the old CA's: %v", err)
		}
	})
}
