package images

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeorch/edge/core"
)

// The dial guard: every connection the master opens to a registry goes
// through guardedDial, which refuses any host:port not put in the
// request's context by the code that chose it (an endpoint of the
// reference's registry or of its mirrors in --registries, the token realm
// such an endpoint named in its challenge, or where it redirected a blob).
// Nothing else, environment proxies included, can make the master dial.

type allowKey struct{}

type allowSet struct {
	mu    sync.Mutex
	hosts map[string]bool
}

func withAllowed(ctx context.Context) (context.Context, *allowSet) {
	if a, ok := ctx.Value(allowKey{}).(*allowSet); ok {
		return ctx, a
	}
	a := &allowSet{hosts: map[string]bool{}}
	return context.WithValue(ctx, allowKey{}, a), a
}

func (a *allowSet) add(u *url.URL) {
	a.mu.Lock()
	a.hosts[hostPort(u)] = true
	a.mu.Unlock()
}

func (a *allowSet) has(addr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hosts[addr]
}

// ErrNotAllowed is wrapped by a dial the guard refused.
var ErrNotAllowed = fmt.Errorf("not a registry named in --registries or by the image reference")

func (u *upstream) guardedDial(ctx context.Context, network, addr string) (net.Conn, error) {
	a, _ := ctx.Value(allowKey{}).(*allowSet)
	if a == nil || !a.has(addr) {
		return nil, fmt.Errorf("images: refusing to dial %s: %w", addr, ErrNotAllowed)
	}
	return u.dial(ctx, network, addr)
}

// upstream pulls from the registries that references and --registries
// name.
type upstream struct {
	cfg  *RegistriesConfig
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu         sync.Mutex
	transports map[string]*http.Transport // by endpoint host: TLS settings differ
	tokens     map[string]token           // realm service scope -> bearer token
	basicHosts map[string]bool            // endpoint hosts that took Basic credentials
	now        func() time.Time
}

type token struct {
	value   string
	expires time.Time
}

func newUpstream(cfg *RegistriesConfig, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *upstream {
	if dial == nil {
		d := &net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}
		dial = d.DialContext
	}
	return &upstream{cfg: cfg, dial: dial, transports: map[string]*http.Transport{}, tokens: map[string]token{}, basicHosts: map[string]bool{}, now: time.Now}
}

func (u *upstream) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, t := range u.transports {
		t.CloseIdleConnections()
	}
}

func (u *upstream) transport(base *url.URL) (*http.Transport, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if t := u.transports[base.Host]; t != nil {
		return t, nil
	}
	tc, err := u.cfg.config(base).tlsConfig()
	if err != nil {
		return nil, err
	}
	if tc == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	t := &http.Transport{
		Proxy:                 nil, // the guard allows registries, not proxies
		DialContext:           u.guardedDial,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   8,
		ForceAttemptHTTP2:     true,
		ReadBufferSize:        256 << 10,
	}
	u.transports[base.Host] = t
	return t, nil
}

// request is one call to one endpoint.
type request struct {
	ep      endpoint
	method  string
	path    string // after /v2/REPO: /manifests/REF, /blobs/DIGEST
	accept  []string
	blob    bool // redirects are followed (the digest checks what they serve)
	retried bool
}

// do sends r, answering a 401 challenge (Bearer token flow or Basic) once.
func (u *upstream) do(ctx context.Context, r request) (*http.Response, error) {
	ctx, allow := withAllowed(ctx)
	allow.add(r.ep.base)
	t, err := u.transport(r.ep.base)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: t, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if !r.blob {
			return fmt.Errorf("%s redirected a manifest request to %s: not followed", r.ep.base.Host, req.URL.Host)
		}
		if len(via) >= 5 {
			return fmt.Errorf("%s: too many redirects", r.ep.base.Host)
		}
		allow.add(req.URL)
		return nil
	}}
	target := *r.ep.base
	target.Path += "/" + r.ep.repo + r.path
	req, err := http.NewRequestWithContext(ctx, r.method, target.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "edgemaster")
	if len(r.accept) > 0 {
		req.Header.Set("Accept", strings.Join(r.accept, ", "))
	}
	rc := u.cfg.config(r.ep.base)
	scope := "repository:" + r.ep.repo + ":pull"
	if tok := u.cachedToken(r.ep.base.Host, scope); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	} else if u.sendsBasic(r.ep.base.Host) {
		// A host that asked for Basic once gets it up front: a 401 round
		// trip per request is dear on a slow link.
		user, pass, _ := rc.basic()
		req.SetBasicAuth(user, pass)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusUnauthorized || r.retried {
		return resp, nil
	}
	challenge := resp.Header.Get("WWW-Authenticate")
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	scheme, params := parseChallenge(challenge)
	req2 := req.Clone(ctx)
	switch scheme {
	case "bearer":
		tok, err := u.fetchToken(ctx, client, rc, r.ep.base, params, scope)
		if err != nil {
			return nil, err
		}
		req2.Header.Set("Authorization", "Bearer "+tok)
	case "basic":
		user, pass, err := rc.basic()
		if err != nil || user == "" {
			return nil, core.Errorf(core.EUNAUTHORIZED, "%s wants a username and password: set configs.%q.auth in --registries", r.ep.base.Host, r.ep.base.Host)
		}
		req2.SetBasicAuth(user, pass)
		resp, err := client.Do(req2)
		if err == nil && resp.StatusCode != http.StatusUnauthorized {
			u.mu.Lock()
			u.basicHosts[r.ep.base.Host] = true
			u.mu.Unlock()
		}
		return resp, err
	default:
		return nil, core.Errorf(core.EUNAUTHORIZED, "%s refused the pull (401) with challenge %q", r.ep.base.Host, challenge)
	}
	return client.Do(req2)
}

func (u *upstream) sendsBasic(host string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.basicHosts[host]
}

func (rc RegistryConfig) basic() (string, string, error) {
	if rc.Auth == nil {
		return "", "", nil
	}
	return rc.Auth.credentials()
}

func (u *upstream) cachedToken(host, scope string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	t, ok := u.tokens[host+" "+scope]
	if !ok || u.now().After(t.expires) {
		return ""
	}
	return t.value
}

// fetchToken runs the distribution token flow: GET realm?service&scope
// (with Basic credentials if configured), or, with an identity token, the
// OAuth2 refresh-token POST.
func (u *upstream) fetchToken(ctx context.Context, client *http.Client, rc RegistryConfig, base *url.URL, params map[string]string, scope string) (string, error) {
	realm, err := url.Parse(params["realm"])
	if err != nil || (realm.Scheme != "https" && realm.Scheme != "http") || realm.Host == "" {
		return "", core.Errorf(core.EUNAVAILABLE, "%s: token realm %q is not a URL", base.Host, params["realm"])
	}
	if realm.Scheme == "http" && base.Scheme == "https" {
		return "", core.Errorf(core.EUNAVAILABLE, "%s: token realm %q is plain http, refused for an https registry", base.Host, params["realm"])
	}
	_, allow := withAllowed(ctx)
	allow.add(realm)
	if s := params["scope"]; s != "" {
		scope = s
	}
	var req *http.Request
	if rc.Auth != nil && rc.Auth.IdentityToken != "" {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rc.Auth.IdentityToken},
			"service": {params["service"]}, "scope": {scope}, "client_id": {"edgemaster"}}
		req, err = http.NewRequestWithContext(ctx, "POST", realm.String(), strings.NewReader(form.Encode()))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		q := realm.Query()
		if params["service"] != "" {
			q.Set("service", params["service"])
		}
		q.Set("scope", scope)
		realm.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, "GET", realm.String(), nil)
		if err != nil {
			return "", err
		}
		if user, pass, _ := rc.basic(); user != "" {
			req.SetBasicAuth(user, pass)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", core.Errorf(core.EUNAVAILABLE, "%s: token from %s: %v", base.Host, realm.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", core.Errorf(core.EUNAUTHORIZED, "%s: token realm %s refused (%s): check configs.%q.auth", base.Host, realm.Host, resp.Status, base.Host)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr); err != nil {
		return "", core.Errorf(core.EUNAVAILABLE, "%s: token response: %v", base.Host, err)
	}
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	if tok == "" {
		return "", core.Errorf(core.EUNAVAILABLE, "%s: token response has no token", base.Host)
	}
	ttl := time.Duration(tr.ExpiresIn) * time.Second
	if ttl < time.Minute {
		ttl = time.Minute // the spec's default lifetime
	}
	u.mu.Lock()
	u.tokens[base.Host+" "+scope] = token{value: tok, expires: u.now().Add(ttl - 10*time.Second)}
	u.mu.Unlock()
	return tok, nil
}

// parseChallenge parses `Bearer realm="...",service="..."`.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; {
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		if strings.HasPrefix(v, `"`) {
			end := strings.Index(v[1:], `"`)
			if end < 0 {
				break
			}
			params[k], rest = v[1:1+end], v[2+end:]
		} else {
			val, r, _ := strings.Cut(v, ",")
			params[k], rest = strings.TrimSpace(val), r
		}
		rest = strings.TrimLeft(strings.TrimSpace(rest), ",")
	}
	return strings.ToLower(scheme), params
}

// upstreamError turns a failed response into a core error: 404 is
// ENOTFOUND, the rest EUNAVAILABLE.
func upstreamError(ep endpoint, what string, resp *http.Response) error {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	code := core.EUNAVAILABLE
	switch resp.StatusCode {
	case http.StatusNotFound:
		code = core.ENOTFOUND
	case http.StatusUnauthorized, http.StatusForbidden:
		code = core.EUNAUTHORIZED
	}
	if code == core.EUNAUTHORIZED {
		return core.Errorf(code, "%s from %s: %s (check configs.%q.auth in --registries)", what, ep.base.Host, resp.Status, ep.base.Host)
	}
	return core.Errorf(code, "%s from %s: %s", what, ep.base.Host, resp.Status)
}

// Repository is a repository's registry host and its path there.
type Repository struct {
	Host string // docker.io, 127.0.0.1:5000
	Path string // library/busybox
}

func (r Repository) String() string { return r.Host + "/" + r.Path }

// tryEndpoints calls f on each endpoint of ref in order and returns the
// first success. If none succeeds, the error is ENOTFOUND if one said "not
// found", else EUNAUTHORIZED if one refused us, else EUNAVAILABLE (an
// unreachable endpoint gives no answer); the message lists every
// endpoint's error.
func (u *upstream) tryEndpoints(ref Repository, f func(ep endpoint) error) error {
	eps, err := u.cfg.endpoints(ref.Host, ref.Path)
	if err != nil {
		return err
	}
	var errs []string
	code := core.EUNAVAILABLE
	for _, ep := range eps {
		err := f(ep)
		if err == nil {
			return nil
		}
		switch core.ErrorCode(err) {
		case core.ENOTFOUND:
			code = core.ENOTFOUND
		case core.EUNAUTHORIZED:
			if code != core.ENOTFOUND {
				code = core.EUNAUTHORIZED
			}
		}
		errs = append(errs, core.ErrorMessage(err))
	}
	return core.Errorf(code, "%s", strings.Join(errs, "; "))
}

// manifest fetches a manifest or index by tag or digest, checks it (and
// its digest, when asked by digest) and returns its media type and bytes.
func (u *upstream) manifest(ctx context.Context, ref Repository, tagOrDigest string) (string, []byte, error) {
	var mt string
	var data []byte
	err := u.tryEndpoints(ref, func(ep endpoint) error {
		resp, err := u.do(ctx, request{ep: ep, method: "GET", path: "/manifests/" + tagOrDigest, accept: ManifestMediaTypes})
		if err != nil {
			return core.Errorf(core.EUNAVAILABLE, "%s: %v", ep.base.Host, err)
		}
		if resp.StatusCode != http.StatusOK {
			return upstreamError(ep, "manifest "+ref.String()+":"+tagOrDigest, resp)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
		if err != nil {
			return core.Errorf(core.EUNAVAILABLE, "%s: %v", ep.base.Host, err)
		}
		if d, err := digest.Parse(tagOrDigest); err == nil {
			if got := d.Algorithm().FromBytes(b); got != d {
				return core.Errorf(core.EINVALID, "%s served manifest %s with digest %s: refused", ep.base.Host, d, got)
			}
		}
		p, err := ParseManifest(resp.Header.Get("Content-Type"), b)
		if err != nil {
			return core.Errorf(core.EINVALID, "%s: %s", ep.base.Host, core.ErrorMessage(err))
		}
		mt, data = p.MediaType, b
		return nil
	})
	return mt, data, err
}

// manifestDigest asks (HEAD) which manifest a tag points at now.
func (u *upstream) manifestDigest(ctx context.Context, ref Repository, tag string) (digest.Digest, error) {
	var d digest.Digest
	err := u.tryEndpoints(ref, func(ep endpoint) error {
		resp, err := u.do(ctx, request{ep: ep, method: "HEAD", path: "/manifests/" + tag, accept: ManifestMediaTypes})
		if err != nil {
			return core.Errorf(core.EUNAVAILABLE, "%s: %v", ep.base.Host, err)
		}
		if resp.StatusCode != http.StatusOK {
			return upstreamError(ep, "manifest "+ref.String()+":"+tag, resp)
		}
		resp.Body.Close()
		var perr error
		if d, perr = digest.Parse(resp.Header.Get("Docker-Content-Digest")); perr != nil {
			return core.Errorf(core.EUNAVAILABLE, "%s: HEAD of a manifest gave no digest", ep.base.Host)
		}
		return nil
	})
	return d, err
}

// blob starts fetching blob d; the caller reads and closes the body.
func (u *upstream) blob(ctx context.Context, ref Repository, d digest.Digest, method string) (*http.Response, error) {
	var out *http.Response
	err := u.tryEndpoints(ref, func(ep endpoint) error {
		resp, err := u.do(ctx, request{ep: ep, method: method, path: "/blobs/" + d.String(), blob: true})
		if err != nil {
			return core.Errorf(core.EUNAVAILABLE, "%s: %v", ep.base.Host, err)
		}
		if resp.StatusCode != http.StatusOK {
			return upstreamError(ep, "blob "+ref.String()+"@"+d.String(), resp)
		}
		out = resp
		return nil
	})
	return out, err
}
