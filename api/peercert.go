package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/edgeorch/edge/internal/backoff"
	"github.com/edgeorch/edge/internal/fsutil"
)

// NodeCert is an agent's node certificate, signed by the cluster CA: what
// it serves its image content to LAN peers with, and what it shows them to
// fetch theirs. It lives in DATA_DIR/node.crt and node.key, is requested
// when there is none and renewed once a third of its validity is left,
// whenever the master is reachable; a node that never reached the master
// since this existed has none, and neither serves nor asks its peers.
type NodeCert struct {
	DataDir string
	// Credentials returns the node's current credentials (they change
	// when it joins again).
	Credentials func() *Credentials
	// IPs are the node's addresses, put in the certificate.
	IPs func() []net.IP
	Log *slog.Logger
	Now func() time.Time

	mu   sync.Mutex
	cert *tls.Certificate
}

func (c *NodeCert) certPath() string { return filepath.Join(c.DataDir, "node.crt") }
func (c *NodeCert) keyPath() string  { return filepath.Join(c.DataDir, "node.key") }

func (c *NodeCert) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Load reads the saved certificate, if any (a missing one is no error).
func (c *NodeCert) Load() error {
	cert, err := tls.LoadX509KeyPair(c.certPath(), c.keyPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node certificate: %w", err)
	}
	c.mu.Lock()
	c.cert = &cert
	c.mu.Unlock()
	return nil
}

// Certificate returns the node's certificate (nil if it has none yet).
func (c *NodeCert) Certificate() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert
}

// due reports whether the certificate should be (re)requested: none, a
// third of its validity left (or expired), or, with creds, not for the
// node and cluster CA they are (the node was renamed, or joined a rebuilt
// master, keeping its data dir: its peers would refuse the old one).
func (c *NodeCert) due(creds *Credentials) bool {
	cert := c.Certificate()
	if cert == nil || cert.Leaf == nil {
		return true
	}
	l := cert.Leaf
	if creds != nil {
		if l.Subject.CommonName != creds.Node {
			return true
		}
		if ca, err := parseCertPEM([]byte(creds.CACert)); err == nil && l.CheckSignatureFrom(ca) != nil {
			return true
		}
	}
	return c.now().After(l.NotAfter.Add(-l.NotAfter.Sub(l.NotBefore) / 3))
}

// Ensure requests a certificate if there is none, it is due for renewal
// or it is not the current node's, and keeps it.
func (c *NodeCert) Ensure(ctx context.Context) error {
	creds := c.Credentials()
	if !c.due(creds) {
		return nil
	}
	if creds == nil {
		return errors.New("no credentials yet")
	}
	api := creds.API
	if api == "" {
		api = creds.Master
	}
	tlsConfig, err := CATLS([]byte(creds.CACert))
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: creds.Node}}
	if c.IPs != nil {
		tmpl.IPAddresses = c.IPs()
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: nil}}
	defer client.CloseIdleConnections()
	certPEM, err := RequestNodeCert(ctx, client, api, creds.Node, creds.Password,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("node certificate: %w", err)
	}
	// Key first: a crash between the two leaves a key without its
	// certificate (requested again), never a certificate without its key.
	if err := fsutil.WriteFileAtomic(c.keyPath(), keyPEM, 0o600); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(c.certPath(), certPEM, 0o644); err != nil {
		return err
	}
	c.mu.Lock()
	c.cert = &cert
	c.mu.Unlock()
	c.log().Info("node certificate issued by the master", "expires", cert.Leaf.NotAfter.Format(time.DateOnly))
	return nil
}

func (c *NodeCert) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.Default()
}

// Run keeps the certificate current until ctx ends: at once, then hourly;
// after a failure (the master away) again with backoff, 10 s to 10 min.
func (c *NodeCert) Run(ctx context.Context) {
	b := backoff.Backoff{Min: 10 * time.Second, Max: 10 * time.Minute}
	failing := false
	for {
		wait := time.Hour
		if err := c.Ensure(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				c.log().Warn("cannot get a node certificate from the master yet; LAN peers wait for it", "err", err)
			}
			failing = true
			wait = b.Next()
		} else {
			if failing {
				c.log().Info("node certificate: the master answers again")
			}
			failing = false
			b.Reset()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// PeerServerTLS is the TLS configuration of a node's peer server: it
// shows the node certificate and takes only clients with a certificate
// signed by the cluster CA (another node's).
func PeerServerTLS(caPEM []byte, nc *NodeCert) (*tls.Config, error) {
	ca, err := parseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := nc.Certificate(); c != nil {
				return c, nil
			}
			return nil, errors.New("this node has no node certificate yet")
		},
	}, nil
}

// PeerClientTLS is the TLS configuration to fetch from peers: it trusts
// a node certificate of the cluster CA (never the master's; host names are not
// checked: addresses change with DHCP; the fetcher checks the node name)
// and shows the node certificate.
func PeerClientTLS(caPEM []byte, nc *NodeCert) (*tls.Config, error) {
	cfg, err := caTLS(caPEM, true)
	if err != nil {
		return nil, err
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if c := nc.Certificate(); c != nil {
			return c, nil
		}
		return &tls.Certificate{}, nil // none: the peer refuses
	}
	return cfg, nil
}
