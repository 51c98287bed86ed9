package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRegistries(t *testing.T) {
	b, err := os.ReadFile("testdata/registries/k3s-docs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseRegistries(b)
	if err != nil {
		t.Fatal(err)
	}
	eps, err := c.endpoints("docker.io", "rancher/klipper")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range eps {
		got = append(got, e.base.String()+" "+e.repo)
	}
	want := []string{
		"https://mycustomreg.com:5000/v2 mirrorproject/rancher-images/klipper",
		"http://lan-mirror.local/v2 mirrorproject/rancher-images/klipper",
		"https://registry-1.docker.io/v2 rancher/klipper", // the registry itself, last, not rewritten
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("endpoints:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// "*" covers hosts with no mirror of their own.
	eps, _ = c.endpoints("quay.io", "a/b")
	if len(eps) != 2 || eps[0].base.Host != "catchall.example" || eps[1].base.Host != "quay.io" {
		t.Fatalf("wildcard: %+v", eps)
	}
	if u, p, _ := c.config(eps[0].base).basic(); u != "" || p != "" {
		t.Fatal("credentials for an unconfigured host")
	}
	lan, _ := parseEndpoint("http://lan-mirror.local")
	if u, p, err := c.config(lan).basic(); err != nil || u != "user" || p != "pass" {
		t.Fatalf("auth field: %q %q %v", u, p, err)
	}
	if c, err := ParseRegistries([]byte("")); err != nil || len(c.Mirrors) != 0 {
		t.Fatalf("empty file: %v", err)
	}
}

// Bad files are refused with the field at fault named.
func TestParseRegistries_Errors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"mirrors: [a]", "mirrors"},
		{"mirrors:\n  docker.io:\n    endpoint: https://x", `mirrors."docker.io".endpoint`},
		{"mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]", `mirrors."docker.io".endpoint[0]`},
		{"mirrors:\n  docker.io:\n    endpoint: [\"https://\"]", `mirrors."docker.io".endpoint[0]`},
		{"mirrors:\n  docker.io:\n    endpoint: [\"https://u:p@x\"]", `mirrors."docker.io".endpoint[0]`},
		{"mirrors:\n  docker.io:\n    endpoints: [\"https://x\"]", `unknown field "endpoints"`},
		{"mirrors:\n  docker.io:\n    rewrite: {\"(\": \"x\"}", `mirrors."docker.io".rewrite["("]`},
		{"mirrors:\n  \"bad host!\":\n    endpoint: []", `mirrors."bad host!"`},
		{"configs:\n  reg.lan:\n    auth: {auth: \"!!\"}", `configs."reg.lan".auth.auth`},
		{"configs:\n  reg.lan:\n    auth: {password: p}", `configs."reg.lan".auth.username`},
		{"configs:\n  reg.lan:\n    tls: {cert_file: /c}", `configs."reg.lan".tls`},
		{"configs:\n  reg.lan:\n    tls: {insecure_skip_verify: maybe}", `configs."reg.lan".tls.insecure_skip_verify`},
		{"mirror: {}", `unknown field "mirror"`},
		{"mirrors: {\n", "YAML"},
	} {
		_, err := ParseRegistries([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to name %s", c.yaml, err, c.want)
		}
	}
	// Files named in tls are read at load time.
	p := filepath.Join(t.TempDir(), "r.yaml")
	os.WriteFile(p, []byte("configs:\n  reg.lan:\n    tls: {ca_file: /nonexistent/ca.pem}\n"), 0o600)
	if _, err := LoadRegistries(p); err == nil || !strings.Contains(err.Error(), `configs."reg.lan".tls`) || !strings.Contains(err.Error(), "ca_file") {
		t.Errorf("missing ca_file: %v", err)
	}
}

func TestResolveName(t *testing.T) {
	for _, c := range []struct{ name, ns, want string }{
		{"library/busybox", "docker.io", "docker.io/library/busybox"},
		{"busybox", "docker.io", "docker.io/library/busybox"},
		{"busybox", "", "docker.io/library/busybox"},
		{"docker.io/library/busybox", "", "docker.io/library/busybox"},
		{"index.docker.io/library/busybox", "", "docker.io/library/busybox"},
		{"127.0.0.1:5000/app", "", "127.0.0.1:5000/app"},
		{"team/app", "ghcr.io", "ghcr.io/team/app"},
		{"upper/X", "", ""},
		{"ghcr.io/x", "docker.io", "docker.io/ghcr.io/x"}, // pulled from the ns, never ghcr.io
		{"x", "bad host", ""},
	} {
		r, err := ResolveName(c.name, c.ns)
		if got := r.String(); (err != nil) != (c.want == "") || (err == nil && got != c.want) {
			t.Errorf("ResolveName(%q, %q) = %s, %v; want %q", c.name, c.ns, got, err, c.want)
		}
	}
}

func FuzzParseRegistries(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/registries/*.yaml")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(b)
	}
	f.Add([]byte("mirrors:\n  x:\n    endpoint: [\"http://[::1]:5000\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseRegistries(data)
		if err != nil {
			return
		}
		// What parses must be usable: every host's endpoints resolve.
		for host := range c.Mirrors {
			if host == "*" {
				continue
			}
			if _, err := c.endpoints(host, "library/busybox"); err != nil {
				t.Fatalf("accepted config gives no endpoints for %q: %v", host, err)
			}
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/manifests/*.json")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add("", b)
		f.Add("application/vnd.oci.image.index.v1+json", b)
	}
	f.Fuzz(func(t *testing.T, contentType string, data []byte) {
		p, err := ParseManifest(contentType, data)
		if err != nil {
			return
		}
		if !isManifestType(p.MediaType) {
			t.Fatalf("accepted media type %q", p.MediaType)
		}
		for _, d := range append(p.Manifests, p.Blobs()...) {
			if d.Digest.Validate() != nil || d.Size < 0 {
				t.Fatalf("accepted descriptor %+v", d)
			}
		}
		p.SelectPlatform("linux", "arm", "v7")
	})
}

func TestParseManifest(t *testing.T) {
	for name, want := range map[string]string{
		"oci-index.json":                 "application/vnd.oci.image.index.v1+json",
		"docker-manifest.json":           MediaTypeDockerManifest,
		"oci-manifest-no-mediatype.json": "application/vnd.oci.image.manifest.v1+json",
		"schema1.json":                   "",
	} {
		b, _ := os.ReadFile("testdata/manifests/" + name)
		p, err := ParseManifest("", b)
		if want == "" {
			if err == nil {
				t.Errorf("%s accepted", name)
			}
			continue
		}
		if err != nil || p.MediaType != want {
			t.Errorf("%s: %v %v", name, p, err)
		}
	}
	b, _ := os.ReadFile("testdata/manifests/oci-index.json")
	p, _ := ParseManifest("", b)
	if d, ok := p.SelectPlatform("linux", "arm", "v7"); !ok || d.Digest.Encoded()[0] != '2' {
		t.Fatal("arm/v7 not selected")
	}
	if _, ok := p.SelectPlatform("linux", "amd64", ""); ok {
		t.Fatal("amd64 selected from an index without it")
	}
	if _, err := ParseManifest(MediaTypeDockerManifest, b); err == nil {
		t.Fatal("an index served as a manifest was accepted")
	}
}
