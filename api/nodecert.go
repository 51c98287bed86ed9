package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/edgeorch/edge/core"
)

// NodeCertValidity is how long a node certificate is valid. Agents renew
// theirs once a third of it is left, while the master is reachable.
const NodeCertValidity = 365 * 24 * time.Hour

// maxNodeCertIPs caps the addresses a node may put in its certificate.
const maxNodeCertIPs = 8

// SignNode signs a node certificate for node from a PEM certificate
// request: subject and DNS name are the node's name (whatever the request
// says), IP addresses are the request's (at most 8), usable to serve and to
// connect (LAN peers: each node serves its image content to the others,
// and proves to them that it is a cluster member). EINVALID if the
// request is unreadable or its signature is wrong.
func (p *PKI) SignNode(csrPEM []byte, node string, now time.Time) ([]byte, error) {
	if p.caKey == nil {
		return nil, core.Errorf(core.EUNAVAILABLE, "this master's CA key is not loaded: cannot sign node certificates")
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, core.Errorf(core.EINVALID, "node certificate: want a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, core.Errorf(core.EINVALID, "node certificate request: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, core.Errorf(core.EINVALID, "node certificate request: %v", err)
	}
	if len(csr.IPAddresses) > maxNodeCertIPs {
		return nil, core.Errorf(core.EINVALID, "node certificate request: %d IP addresses, at most %d", len(csr.IPAddresses), maxNodeCertIPs)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: node, Organization: []string{nodeOrganization}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(NodeCertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{node},
		IPAddresses:  append([]net.IP(nil), csr.IPAddresses...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CACert, csr.PublicKey, p.caKey)
	if err != nil {
		return nil, core.Errorf(core.EINVALID, "node certificate: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// handleNodeCertificate signs a node's certificate request. Only the node
// itself may ask (Basic auth: its name and current MQTT password, as for
// /v2/); the certificate names the authenticated node, never another.
func (s *Server) handleNodeCertificate(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || s.Auth == nil || !s.Auth.CheckMQTT(user, pass) {
		w.Header().Set("WWW-Authenticate", `Basic realm="edgemaster"`)
		Error(w, core.Errorf(core.EUNAUTHORIZED, "a node certificate needs the node's name and current credential (Basic auth)"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<10))
	if err != nil {
		Error(w, core.Errorf(core.EINVALID, "node certificate request: %v", err))
		return
	}
	cert, err := s.PKI.SignNode(body, user, s.Now())
	if err != nil {
		Error(w, err)
		return
	}
	s.Log.Info("signed a node certificate", "node", user)
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(cert)
}

// RequestNodeCert asks the master at apiURL (trusting caPEM only) to sign
// csrPEM for node, authenticated by the node's MQTT password.
func RequestNodeCert(ctx context.Context, client *http.Client, apiURL, node, password string, csrPEM []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", apiURL+"/api/v1/node-certificate", bytes.NewReader(csrPEM))
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(node, password)
	req.Header.Set("Content-Type", "application/pkcs10")
	resp, err := client.Do(req)
	if err != nil {
		return nil, &core.Error{Code: core.EUNAVAILABLE, Message: err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, &core.Error{Code: core.EUNAVAILABLE, Message: err.Error()}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("node certificate: %s: %s", resp.Status, b)
	}
	if blk, _ := pem.Decode(b); blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("node certificate: the master's answer is not a PEM certificate")
	}
	return b, nil
}
