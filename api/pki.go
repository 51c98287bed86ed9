package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edgeorch/edge/internal/fsutil"
)

// PKI is the master's certificate authority and serving certificate, kept
// as PEM files in the data dir and reused across restarts.
type PKI struct {
	CACert  *x509.Certificate
	CAPEM   []byte
	Serving tls.Certificate
	caKey   *ecdsa.PrivateKey // signs node certificates (SignNode)
}

// CAHash returns the hex SHA-256 of the CA certificate (DER): what a join
// token pins.
func (p *PKI) CAHash() string { return CAHash(p.CACert.Raw) }

// CAHash hashes a DER certificate for pinning.
func CAHash(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// LoadOrCreatePKI loads ca.crt/ca.key/server.crt/server.key from dir,
// creating any that are missing. sans are extra names and addresses for the
// serving certificate.
func LoadOrCreatePKI(dir string, sans []string) (*PKI, error) {
	caCertPath, caKeyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	srvCertPath, srvKeyPath := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if !exists(caCertPath) {
		if err := createCA(caCertPath, caKeyPath); err != nil {
			return nil, err
		}
		os.Remove(srvCertPath) // a new CA needs a new serving cert
	}
	caPEM, err := os.ReadFile(caCertPath)
	if err != nil {
		return nil, err
	}
	caCert, err := parseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", caCertPath, err)
	}
	caKey, err := readKey(caKeyPath)
	if err != nil {
		return nil, err
	}
	if !exists(srvCertPath) {
		if err := createServing(srvCertPath, srvKeyPath, caCert, caKey, sans); err != nil {
			return nil, err
		}
	}
	srv, err := tls.LoadX509KeyPair(srvCertPath, srvKeyPath)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	srv.Certificate = append(srv.Certificate, caCert.Raw) // send the chain
	return &PKI{CACert: caCert, CAPEM: caPEM, Serving: srv, caKey: caKey}, nil
}

// ServerTLS returns the serving TLS configuration.
func (p *PKI) ServerTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.Serving}, MinVersion: tls.VersionTLS12}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func createCA(certPath, keyPath string) error {
	key, keyPEM, err := newKey()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("edgemaster-ca@%d", now.Unix())},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func createServing(certPath, keyPath string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, sans []string) error {
	key, keyPEM, err := newKey()
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "edgemaster"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(20, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "edgemaster"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	if host != "" {
		tmpl.DNSNames = append(tmpl.DNSNames, host, host+".local")
	}
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if s != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ipn.IP)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	return x509.ParseECPrivateKey(block.Bytes)
}

// PinnedTLS returns a client TLS configuration that trusts only a server
// whose chain ends in a CA with SHA-256 caHash. Host names are not checked:
// the pinned CA is private to one cluster and signs only its master, whose
// address on a fleet changes with DHCP.
func PinnedTLS(caHash string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by VerifyPeerCertificate below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) < 2 {
				return errors.New("master did not send its CA certificate")
			}
			ca, err := x509.ParseCertificate(raw[len(raw)-1])
			if err != nil {
				return err
			}
			if got := CAHash(ca.Raw); !strings.EqualFold(got, caHash) {
				return &PinError{Want: caHash, Got: got}
			}
			return verifyLeaf(raw[0], ca, false)
		},
	}
}

// PinError says the master's CA is not the one a join token pins.
type PinError struct{ Want, Got string }

func (e *PinError) Error() string {
	return fmt.Sprintf("master's CA certificate (sha256 %s...) does not match the join token (sha256 %s...): refusing to talk to it; check --master and the token",
		e.Got[:16], e.Want[:min(16, len(e.Want))])
}

// CATLS returns a client TLS configuration trusting caPEM (edgectl): the
// master's serving certificate, not a node's (see verifyLeaf).
func CATLS(caPEM []byte) (*tls.Config, error) { return caTLS(caPEM, false) }

// caTLS trusts a certificate of the CA in caPEM: a node's if node, else
// the master's.
func caTLS(caPEM []byte, node bool) (*tls.Config, error) {
	ca, err := parseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate-authority-data: %w", err)
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // chain checked below, host name deliberately not (see PinnedTLS)
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no server certificate")
			}
			return verifyLeaf(raw[0], ca, node)
		},
	}, nil
}

// nodeOrganization is the subject organization of every node certificate
// (SignNode), and of no other certificate of the cluster CA.
const nodeOrganization = "edge:nodes"

func isNodeCert(c *x509.Certificate) bool {
	return slices.Contains(c.Subject.Organization, nodeOrganization)
}

// verifyLeaf checks a server's certificate against the cluster CA. Host
// names are not checked, so the CA's signature alone would let any node's
// certificate (it serves LAN peers) pass for the master's: a node could
// then pose as the master's API and broker to the other nodes and to
// edgectl. The master's is the CA's one certificate that is not a node's;
// a peer's must be a node's.
func verifyLeaf(der []byte, ca *x509.Certificate, node bool) error {
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return fmt.Errorf("server certificate is not signed by the cluster CA: %w", err)
	}
	switch {
	case !node && isNodeCert(leaf):
		return fmt.Errorf("server certificate is node %q's, not the master's", leaf.Subject.CommonName)
	case node && !isNodeCert(leaf):
		return errors.New("server certificate is not a node's")
	}
	return nil
}
