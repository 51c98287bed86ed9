package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/images/regtest"
)

type registryMaster struct {
	m      *Main
	addr   string // 127.0.0.1:PORT
	token  string
	client *http.Client
	caDir  string // holds only ca.crt: skopeo --cert-dir
}

// runRegistryMaster starts a master whose --registries mirrors docker.io
// to up.
func runRegistryMaster(t testing.TB, up *regtest.Upstream) *registryMaster {
	t.Helper()
	dir := t.TempDir()
	regs := filepath.Join(dir, "registries.yaml")
	if err := os.WriteFile(regs, []byte(up.RegistriesYAML("docker.io")), 0o600); err != nil {
		t.Fatal(err)
	}
	m := NewMain()
	if err := m.ParseFlags([]string{"--data-dir", dir, "--api-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--no-mdns", "--registries", regs}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	cfg, err := api.LoadConfig(filepath.Join(dir, "admin.conf"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := cfg.CAPEM()
	tlsConfig, err := api.CATLS(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	caDir := t.TempDir()
	os.WriteFile(filepath.Join(caDir, "ca.crt"), caPEM, 0o600)
	return &registryMaster{m: m, addr: m.API.Address(), token: cfg.Token, caDir: caDir,
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig.Clone(), MaxIdleConnsPerHost: 16}}}
}

func (r *registryMaster) get(t testing.TB, path string, auth func(*http.Request)) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://"+r.addr+path, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
	if auth != nil {
		auth(req)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// The master serves /v2/ on its API port to the admin token and to nodes'
// credentials, pulling through from --registries (an upstream behind TLS
// and Basic auth); skopeo, a real client, inspects and copies through it.
func TestMain_Registry(t *testing.T) {
	up := regtest.Start(t, regtest.Options{TLS: true, Auth: "basic", Username: "u", Password: "p"})
	img := up.PushBusybox(t, "library/busybox", "latest", "/bin/busybox", "amd64", "arm64")
	r := runRegistryMaster(t, up)

	// Who may pull.
	bearer := func(tok string) func(*http.Request) {
		return func(req *http.Request) { req.Header.Set("Authorization", "Bearer "+tok) }
	}
	basic := func(u, p string) func(*http.Request) { return func(req *http.Request) { req.SetBasicAuth(u, p) } }
	jt, _ := os.ReadFile(filepath.Join(r.m.DataDir, "join-token"))
	parsed, err := api.ParseJoinToken(strings.TrimSpace(string(jt)))
	if err != nil {
		t.Fatal(err)
	}
	joined, err := api.NewClient("https://"+r.addr, parsed.String(), api.PinnedTLS(parsed.CAHash)).Join(context.Background(), "pi-1", "0123456789abcdef-node")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		auth func(*http.Request)
		ok   bool
	}{
		{"none", nil, false},
		{"admin bearer", bearer(r.token), true},
		{"admin basic", basic("admin", r.token), true},
		{"node basic", basic("pi-1", joined.MQTTPassword), true},
		{"node, wrong password", basic("pi-1", "nope"), false},
		{"another node's name", basic("pi-2", joined.MQTTPassword), false},
		{"join token", bearer(parsed.String()), false},
	} {
		resp, body := r.get(t, "/v2/", c.auth)
		if c.ok != (resp.StatusCode == 200) {
			t.Errorf("%s: %s %s", c.name, resp.Status, body)
		}
		if !c.ok && (resp.Header.Get("WWW-Authenticate") == "" || !strings.Contains(string(body), `"UNAUTHORIZED"`)) {
			t.Errorf("%s: refusal without a challenge or distribution error: %v %s", c.name, resp.Header, body)
		}
	}
	resp, body := r.get(t, "/v2/library/busybox/manifests/latest?ns=docker.io", basic("pi-1", joined.MQTTPassword))
	if resp.StatusCode != 200 || digest.FromBytes(body) != img.Digest {
		t.Fatalf("node pull of the index: %s %s", resp.Status, body)
	}

	// skopeo as a real client, with the admin token and a node's credential.
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo not installed")
	}
	ref := "docker://" + r.addr + "/docker.io/library/busybox:latest"
	out, err := exec.Command("skopeo", "inspect", "--raw", "--cert-dir", r.caDir, "--creds", "admin:"+r.token, ref).CombinedOutput()
	if err != nil || digest.FromBytes(out) != img.Digest {
		t.Fatalf("skopeo inspect --raw: %v\n%s", err, out)
	}
	out, err = exec.Command("skopeo", "--override-arch", "arm64", "inspect", "--cert-dir", r.caDir, "--creds", "pi-1:"+joined.MQTTPassword, ref).CombinedOutput()
	var info struct{ Digest, Architecture string }
	if err != nil || json.Unmarshal(out, &info) != nil || info.Digest != img.Digest.String() || info.Architecture != "arm64" {
		t.Fatalf("skopeo inspect (arm64): %v\n%s", err, out)
	}
	dest := t.TempDir()
	for range 2 {
		out, err = exec.Command("skopeo", "copy", "--all", "--insecure-policy", "--preserve-digests", "--src-cert-dir", r.caDir, "--src-creds", "admin:"+r.token,
			ref, "oci:"+dest+":latest").CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo copy --all from the master: %v\n%s", err, out)
		}
	}
	for _, b := range img.Blobs {
		if _, err := os.Stat(filepath.Join(dest, "blobs", "sha256", b.Digest.Encoded())); err != nil {
			t.Errorf("copied image lacks %s", b.Digest)
		}
		if n := up.BlobGets(b.Digest); n != 1 {
			t.Errorf("upstream served %s %d times, want 1", b.Digest, n)
		}
	}
}
