package images

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// RegistriesConfig is k3s' registries.yaml: mirrors per registry host and
// credentials and TLS per endpoint host.
//
//	mirrors:
//	  docker.io:
//	    endpoint: ["https://mirror.lan:5000"]
//	    rewrite: {"^library/(.*)": "mirrored/$1"}
//	configs:
//	  mirror.lan:5000:
//	    auth: {username: u, password: p}     # or auth: base64(u:p), or identitytoken
//	    tls: {ca_file: /etc/ssl/lan-ca.pem, cert_file: ..., key_file: ..., insecure_skip_verify: false}
//
// A registry's own endpoint (https://HOST, registry-1.docker.io for
// docker.io) is tried after its mirrors, as k3s and containerd do. The
// mirror "*" applies to every registry without a mirror entry of its own.
type RegistriesConfig struct {
	Mirrors map[string]Mirror         `json:"mirrors"`
	Configs map[string]RegistryConfig `json:"configs"`
}

// Mirror lists the endpoints tried, in order, for a registry host.
type Mirror struct {
	Endpoints []string          `json:"endpoint"`
	Rewrites  map[string]string `json:"rewrite"`
}

// RegistryConfig is the auth and TLS of one endpoint host.
type RegistryConfig struct {
	Auth *AuthConfig `json:"auth"`
	TLS  *TLSConfig  `json:"tls"`
}

// AuthConfig is an endpoint's credentials.
type AuthConfig struct {
	Username      string `json:"username"`
	Password      string `json:"password"`
	Auth          string `json:"auth"`
	IdentityToken string `json:"identitytoken"`
}

// TLSConfig is an endpoint's TLS client settings.
type TLSConfig struct {
	CAFile             string `json:"ca_file"`
	CertFile           string `json:"cert_file"`
	KeyFile            string `json:"key_file"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify"`
}

// LoadRegistries reads and checks a registries.yaml file.
func LoadRegistries(path string) (*RegistriesConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registries file: %w", err)
	}
	c, err := ParseRegistries(b)
	if err != nil {
		return nil, fmt.Errorf("registries file %s: %w", path, err)
	}
	// TLS files are read now, so that a typo fails the start, not a pull.
	for host, rc := range c.Configs {
		if _, err := rc.tlsConfig(); err != nil {
			return nil, fmt.Errorf("registries file %s: configs.%q.tls: %w", path, host, err)
		}
	}
	return c, nil
}

// ParseRegistries decodes and checks registries.yaml text. An error names
// the field at fault (mirrors."docker.io".endpoint[0], ...); unknown fields
// are errors, not silently ignored.
func ParseRegistries(data []byte) (*RegistriesConfig, error) {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	c := &RegistriesConfig{}
	if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
		return c, nil
	}
	// Decoded level by level, so that an error names the host it is under
	// (encoding/json's paths leave out map keys).
	var top struct {
		Mirrors map[string]json.RawMessage `json:"mirrors"`
		Configs map[string]json.RawMessage `json:"configs"`
	}
	if err := strictJSON(j, &top, ""); err != nil {
		return nil, err
	}
	for host, raw := range top.Mirrors {
		var m Mirror
		if err := strictJSON(raw, &m, fmt.Sprintf("mirrors.%q", host)); err != nil {
			return nil, err
		}
		if c.Mirrors == nil {
			c.Mirrors = map[string]Mirror{}
		}
		c.Mirrors[host] = m
	}
	for host, raw := range top.Configs {
		var rc RegistryConfig
		if err := strictJSON(raw, &rc, fmt.Sprintf("configs.%q", host)); err != nil {
			return nil, err
		}
		if c.Configs == nil {
			c.Configs = map[string]RegistryConfig{}
		}
		c.Configs[host] = rc
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// strictJSON decodes data into v, refusing unknown fields; errors name
// the field under prefix.
func strictJSON(data []byte, v any, prefix string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	join := func(f string) string {
		switch {
		case prefix == "":
			return f
		case f == "":
			return prefix
		}
		return prefix + "." + f
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field == "" && prefix == "" {
		return fmt.Errorf("want a mapping with mirrors: and configs:, not a YAML %s", te.Value)
	}
	if errors.As(err, &te) {
		want := te.Type.String()
		switch want {
		case "map[string]json.RawMessage", "images.Mirror", "images.RegistryConfig", "images.AuthConfig", "images.TLSConfig", "map[string]string":
			want = "a mapping"
		case "[]string":
			want = "a list of strings"
		}
		return fmt.Errorf("%s: want %s, not a YAML %s", join(te.Field), want, te.Value)
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("%s: unknown field %s (known: mirrors.HOST.endpoint|rewrite, configs.HOST.auth.username|password|auth|identitytoken, configs.HOST.tls.ca_file|cert_file|key_file|insecure_skip_verify)", join(""), f)
	}
	return fmt.Errorf("%s: %v", join(""), err)
}

// Validate checks hosts, endpoint URLs, rewrite patterns and auth.
func (c *RegistriesConfig) Validate() error {
	for _, host := range sortedKeys(c.Mirrors) {
		m := c.Mirrors[host]
		f := fmt.Sprintf("mirrors.%q", host)
		if host != "*" {
			if err := checkHost(host); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
		}
		for i, e := range m.Endpoints {
			if _, err := parseEndpoint(e); err != nil {
				return fmt.Errorf("%s.endpoint[%d]: %w", f, i, err)
			}
		}
		for _, pat := range sortedKeys(m.Rewrites) {
			if _, err := regexp.Compile(pat); err != nil {
				return fmt.Errorf("%s.rewrite[%q]: %w", f, pat, err)
			}
		}
	}
	for _, host := range sortedKeys(c.Configs) {
		rc := c.Configs[host]
		f := fmt.Sprintf("configs.%q", host)
		h := host
		if u, err := url.Parse(host); err == nil && u.Scheme != "" && u.Host != "" {
			h = u.Host
		}
		if err := checkHost(h); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if a := rc.Auth; a != nil {
			if _, _, err := a.credentials(); err != nil {
				return fmt.Errorf("%s.auth.auth: %w", f, err)
			}
			if a.Password != "" && a.Username == "" {
				return fmt.Errorf("%s.auth.username: empty, but a password is set", f)
			}
		}
		if t := rc.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
			return fmt.Errorf("%s.tls: cert_file and key_file go together (a client certificate and its key)", f)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var hostRE = regexp.MustCompile(`^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*)(:[0-9]{1,5})?$`)

func checkHost(h string) error {
	if !hostRE.MatchString(h) {
		return fmt.Errorf("%q is not a registry host (HOST or HOST:PORT)", h)
	}
	return nil
}

// parseEndpoint checks a mirror endpoint and returns its base URL: scheme
// and host, and a path that ends in /v2 (k3s appends it when missing).
func parseEndpoint(e string) (*url.URL, error) {
	u, err := url.Parse(e)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: want an http:// or https:// URL", e)
	}
	if u.Host == "" || checkHost(u.Host) != nil {
		return nil, fmt.Errorf("%q: no valid host", e)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q: no credentials, query or fragment in an endpoint (credentials go in configs.HOST.auth)", e)
	}
	p := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(p, "/v2") {
		p += "/v2"
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host, Path: p}, nil
}

// credentials returns the username and password: from username/password,
// or decoded from auth (base64 of "user:password").
func (a *AuthConfig) credentials() (string, string, error) {
	if a.Auth == "" {
		return a.Username, a.Password, nil
	}
	b, err := base64.StdEncoding.DecodeString(a.Auth)
	if err != nil {
		return "", "", fmt.Errorf("not base64 of USER:PASSWORD: %v", err)
	}
	u, p, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", errors.New("base64 of USER:PASSWORD has no colon")
	}
	return u, p, nil
}

// config returns the configs entry of an endpoint (by host[:port], or by
// its URL), if any.
func (c *RegistriesConfig) config(endpoint *url.URL) RegistryConfig {
	if c == nil {
		return RegistryConfig{}
	}
	for _, k := range []string{endpoint.Scheme + "://" + endpoint.Host, endpoint.Host, endpoint.Hostname()} {
		if rc, ok := c.Configs[k]; ok {
			return rc
		}
	}
	return RegistryConfig{}
}

func (rc RegistryConfig) tlsConfig() (*tls.Config, error) {
	t := rc.TLS
	if t == nil {
		return nil, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// endpoint is one place to pull a repository from.
type endpoint struct {
	base *url.URL // scheme://host/prefix/v2
	repo string   // the repository's name there (after rewrites)
}

// endpoints returns, in order, where repo of registry host is pulled
// from: its mirrors (or the "*" mirror's), then the registry itself.
func (c *RegistriesConfig) endpoints(host, repo string) ([]endpoint, error) {
	var out []endpoint
	var m Mirror
	ok := false
	if c != nil {
		if m, ok = c.Mirrors[host]; !ok {
			m, ok = c.Mirrors["*"]
		}
	}
	def := defaultEndpoint(host)
	if ok {
		mrepo := repo
		for _, pat := range sortedKeys(m.Rewrites) {
			re, err := regexp.Compile(pat)
			if err != nil {
				return nil, err
			}
			if re.MatchString(repo) {
				mrepo = re.ReplaceAllString(repo, m.Rewrites[pat])
				break
			}
		}
		for _, e := range m.Endpoints {
			u, err := parseEndpoint(e)
			if err != nil {
				return nil, err
			}
			if u.Host == def.Host && u.Scheme == def.Scheme && u.Path == def.Path {
				continue // the default comes last anyway, without rewrites
			}
			out = append(out, endpoint{base: u, repo: mrepo})
		}
	}
	return append(out, endpoint{base: def, repo: repo}), nil
}

// defaultEndpoint is where a registry host serves: https://HOST/v2, and
// Docker Hub's registry-1.docker.io for docker.io.
func defaultEndpoint(host string) *url.URL {
	if host == "docker.io" || host == "index.docker.io" {
		host = "registry-1.docker.io"
	}
	return &url.URL{Scheme: "https", Host: host, Path: "/v2"}
}

// hostPort returns u's host with its port (default for its scheme), as a
// dialer sees it.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	p := "443"
	if u.Scheme == "http" {
		p = "80"
	}
	return net.JoinHostPort(u.Hostname(), p)
}
