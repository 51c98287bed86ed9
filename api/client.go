package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgeorch/edge/core"
)

// Client talks to a master's API.
type Client struct {
	Server string // https://host:port
	Token  string
	HTTP   *http.Client
}

// NewClient returns a client that trusts tlsConfig's roots or pin.
func NewClient(server, token string, tlsConfig *tls.Config) *Client {
	tr := &http.Transport{
		TLSClientConfig:     tlsConfig,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 4,
	}
	return &Client{Server: strings.TrimRight(server, "/"), Token: token, HTTP: &http.Client{Transport: tr}}
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := c.Server + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req)
}

// send adds the token to req, sends it and turns an error answer into a
// *core.Error.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		var pe *PinError
		if errors.As(err, &pe) {
			return nil, core.Errorf(core.EUNAUTHORIZED, "%s", pe.Error())
		}
		return nil, core.Errorf(core.EUNAVAILABLE, "cannot reach the master at %s: %v", c.Server, unwrapNet(err))
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e core.Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Code == "" {
			return nil, core.Errorf(core.EINTERNAL, "master answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		return nil, &e
	}
	return resp, nil
}

func unwrapNet(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (c *Client) doJSON(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := c.do(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	return decodeAnswer(resp, out)
}

// doRequest sends req and decodes its JSON answer into out.
func (c *Client) doRequest(req *http.Request, out any) error {
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	return decodeAnswer(resp, out)
}

func decodeAnswer(resp *http.Response, out any) error {
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return core.Errorf(core.EINTERNAL, "decode answer from master: %v", err)
	}
	return nil
}

func nsQuery(ns string) url.Values {
	q := url.Values{}
	if ns == "" {
		q.Set("allNamespaces", "true")
	} else {
		q.Set("namespace", ns)
	}
	return q
}

// Version returns the master's version.
func (c *Client) Version(ctx context.Context) (VersionInfo, error) {
	var v VersionInfo
	err := c.doJSON(ctx, "GET", "/version", nil, nil, &v)
	return v, err
}

// Get returns one object.
func (c *Client) Get(ctx context.Context, k core.Key) (core.Object, error) {
	resp, err := c.do(ctx, "GET", "/api/v1/"+k.Kind.Plural()+"/"+url.PathEscape(k.Name), nsQuery(k.Namespace), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return core.DecodeObject(k.Kind, b)
}

// List returns objects of kind in ns ("" for all namespaces) matching selector.
func (c *Client) List(ctx context.Context, kind core.Kind, ns, selector string) ([]core.Object, error) {
	q := nsQuery(ns)
	if selector != "" {
		q.Set("labelSelector", selector)
	}
	var list List
	if err := c.doJSON(ctx, "GET", "/api/v1/"+kind.Plural(), q, nil, &list); err != nil {
		return nil, err
	}
	out := make([]core.Object, 0, len(list.Items))
	for _, raw := range list.Items {
		o, err := core.DecodeObject(kind, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// WatchEvent is an event as received by a client.
type WatchEvent struct {
	Type   core.EventType
	Object core.Object
}

// Watch streams events for kind in ns (and name, if set). The channel closes
// when ctx ends or the stream breaks.
func (c *Client) Watch(ctx context.Context, kind core.Kind, ns, name, selector string) (<-chan WatchEvent, error) {
	q := nsQuery(ns)
	q.Set("watch", "true")
	if selector != "" {
		q.Set("labelSelector", selector)
	}
	path := "/api/v1/" + kind.Plural()
	if name != "" {
		path += "/" + url.PathEscape(name)
	}
	resp, err := c.do(ctx, "GET", path, q, nil)
	if err != nil {
		return nil, err
	}
	ch := make(chan WatchEvent, 16)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var raw struct {
				Type   core.EventType  `json:"type"`
				Object json.RawMessage `json:"object"`
			}
			if json.Unmarshal(sc.Bytes(), &raw) != nil {
				return
			}
			o, err := core.DecodeObject(kind, raw.Object)
			if err != nil {
				return
			}
			select {
			case ch <- WatchEvent{Type: raw.Type, Object: o}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// Apply sends manifest files; the master applies all objects or none.
func (c *Client) Apply(ctx context.Context, files []core.ManifestFile) ([]core.ApplyResult, error) {
	var resp ApplyResponse
	err := c.doJSON(ctx, "POST", "/api/v1/apply", nil, ApplyRequest{Files: files}, &resp)
	return resp.Results, err
}

// ApplyDryRun is Apply rolled back on the master (kubectl apply
// --dry-run=server): the same checks, conflicts and errors, results marked
// as a server dry run, and nothing changed.
func (c *Client) ApplyDryRun(ctx context.Context, files []core.ManifestFile) ([]core.ApplyResult, error) {
	var resp ApplyResponse
	if err := c.doJSON(ctx, "POST", "/api/v1/apply", url.Values{"dryRun": {DryRunAll}}, ApplyRequest{Files: files}, &resp); err != nil {
		return nil, err
	}
	return resp.Results, checkDryRun(resp.Results)
}

// checkDryRun says so loudly if a master answered a dry run with results
// that are not one: a master too old to know dryRun applies for real.
func checkDryRun(results []core.ApplyResult) error {
	for _, r := range results {
		if r.DryRun != core.DryRunServer {
			return core.Errorf(core.EINTERNAL, "the master does not support dry runs and applied the manifests (%s): upgrade it", r)
		}
	}
	return nil
}

// DryRunChanges is ApplyDryRun with each object as stored and as the apply
// would store it, read in one transaction on the master (what edgectl diff
// compares).
func (c *Client) DryRunChanges(ctx context.Context, files []core.ManifestFile) ([]core.Change, error) {
	var resp ApplyResponse
	q := url.Values{"dryRun": {DryRunAll}, "output": {OutputObjects}}
	if err := c.doJSON(ctx, "POST", "/api/v1/apply", q, ApplyRequest{Files: files}, &resp); err != nil {
		return nil, err
	}
	if err := checkDryRun(resp.Results); err != nil {
		return nil, err
	}
	if len(resp.Objects) != len(resp.Results) {
		return nil, core.Errorf(core.EINTERNAL, "the master answered %d objects for %d results: is it older than this edgectl?", len(resp.Objects), len(resp.Results))
	}
	changes := make([]core.Change, len(resp.Results))
	for i, r := range resp.Results {
		changes[i].ApplyResult = r
		o := resp.Objects[i]
		var err error
		if len(o.Live) > 0 {
			if changes[i].Live, err = core.DecodeObject(r.Kind, o.Live); err != nil {
				return nil, core.Errorf(core.EINTERNAL, "decode answer from master: %v", err)
			}
		}
		if changes[i].Merged, err = core.DecodeObject(r.Kind, o.Merged); err != nil {
			return nil, core.Errorf(core.EINTERNAL, "decode answer from master: %v", err)
		}
	}
	return changes, nil
}

// DeleteManifests deletes the objects the files describe. It returns what
// was deleted and, if some could not be, an error naming them.
func (c *Client) DeleteManifests(ctx context.Context, files []core.ManifestFile) ([]core.ApplyResult, error) {
	var resp ApplyResponse
	if err := c.doJSON(ctx, "POST", "/api/v1/delete", nil, ApplyRequest{Files: files}, &resp); err != nil {
		return nil, err
	}
	if len(resp.Errors) > 0 {
		return resp.Results, core.Errorf(core.ENOTFOUND, "%s", strings.Join(resp.Errors, "; "))
	}
	return resp.Results, nil
}

// Delete deletes one object.
func (c *Client) Delete(ctx context.Context, k core.Key) ([]core.ApplyResult, error) {
	var out []core.ApplyResult
	err := c.doJSON(ctx, "DELETE", "/api/v1/"+k.Kind.Plural()+"/"+url.PathEscape(k.Name), nsQuery(k.Namespace), nil, &out)
	return out, err
}

// Logs streams a container's log.
func (c *Client) Logs(ctx context.Context, ns, pod, container string, follow bool, tail int) (io.ReadCloser, error) {
	q := url.Values{"namespace": {ns}, "follow": {strconv.FormatBool(follow)}, "tail": {strconv.Itoa(tail)}}
	if container != "" {
		q.Set("container", container)
	}
	resp, err := c.do(ctx, "GET", "/api/v1/pods/"+url.PathEscape(pod)+"/log", q, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// NodeAction cordons, uncordons or drains a node.
func (c *Client) NodeAction(ctx context.Context, node, action string) ([]core.ApplyResult, error) {
	var out []core.ApplyResult
	err := c.doJSON(ctx, "POST", "/api/v1/nodes/"+url.PathEscape(node)+"/"+action, nil, struct{}{}, &out)
	return out, err
}

// Taint adds a taint to a node (KEY[=VALUE]:EFFECT), or removes one
// (the same with a trailing "-", or KEY- for every effect).
func (c *Client) Taint(ctx context.Context, node, spec string) ([]core.ApplyResult, error) {
	var out []core.ApplyResult
	err := c.doJSON(ctx, "POST", "/api/v1/nodes/"+url.PathEscape(node)+"/taint", url.Values{"spec": {spec}}, struct{}{}, &out)
	return out, err
}

// CreateToken creates a join token.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (TokenResponse, error) {
	var out TokenResponse
	err := c.doJSON(ctx, "POST", "/api/v1/tokens", nil, req, &out)
	return out, err
}

// ListTokens lists the master's tokens (never their secrets).
func (c *Client) ListTokens(ctx context.Context) ([]*core.Token, error) {
	var out []*core.Token
	err := c.doJSON(ctx, "GET", "/api/v1/tokens", nil, nil, &out)
	return out, err
}

// DeleteToken revokes a join token.
func (c *Client) DeleteToken(ctx context.Context, id string) error {
	return c.doJSON(ctx, "DELETE", "/api/v1/tokens/"+url.PathEscape(id), nil, nil, nil)
}

// RotateAdmin replaces the admin token and returns the new one; the one
// this client used stops working.
func (c *Client) RotateAdmin(ctx context.Context) (string, error) {
	var out TokenResponse
	err := c.doJSON(ctx, "POST", "/api/v1/tokens/rotate-admin", nil, struct{}{}, &out)
	return out.Token, err
}

// Join asks the master for this node's broker credentials, proving the
// node's identity with its node password.
func (c *Client) Join(ctx context.Context, node, nodePassword string) (*JoinResponse, error) {
	return c.JoinWith(ctx, JoinRequest{Node: node, NodePassword: nodePassword})
}

// JoinWith is Join with every field of the request.
func (c *Client) JoinWith(ctx context.Context, req JoinRequest) (*JoinResponse, error) {
	var out JoinResponse
	if err := c.doJSON(ctx, "POST", "/api/v1/join", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Metrics returns the master's /metrics text.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	resp, err := c.do(ctx, "GET", "/metrics", nil, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// ErrorString renders err for a person: the message of a *core.Error, or err.
func ErrorString(err error) string {
	var e *core.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return fmt.Sprint(err)
}

// Undo rolls a deployment back (toRevision 0: to the previous revision).
func (c *Client) Undo(ctx context.Context, ns, name string, toRevision int64) (int64, error) {
	var out UndoResponse
	q := url.Values{"namespace": {ns}, "toRevision": {strconv.FormatInt(toRevision, 10)}}
	err := c.doJSON(ctx, "POST", "/api/v1/deployments/"+url.PathEscape(name)+"/undo", q, struct{}{}, &out)
	return out.Revision, err
}
