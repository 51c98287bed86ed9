package api_test

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"crypto/tls"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/sqlite"
)

type nullBus struct{}

func (nullBus) PublishDesired(context.Context, *core.DesiredState) error { return nil }
func (nullBus) PublishNetwork(context.Context, *core.NetworkState) error { return nil }
func (nullBus) Logs(_ context.Context, node string, req core.LogRequest) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("log of " + req.Pod + " on " + node + "\n")), nil
}

type env struct {
	tls   *tls.Config
	srv   *api.Server
	db    *sqlite.DB
	admin *api.Client
	url   string
	join  api.JoinToken
	auth  *api.NodeAuth
	mu    sync.Mutex
	kicks []string // nodes the broker was told to disconnect
	now   time.Time
}

// nodePassword is the node password test agents join with.
const nodePassword = "0123456789abcdef-node"

func setup(t *testing.T) *env { return setupWith(t, nil) }

// setupWith is setup with a chance to change the server before it opens.
func setupWith(t *testing.T, configure func(*api.Server)) *env {
	t.Helper()
	dir := t.TempDir()
	pki, err := api.LoadOrCreatePKI(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{now: time.Now()}
	e.db = sqlite.NewDB(filepath.Join(dir, "state.db"))
	e.db.Now = func() time.Time { return e.now }
	if err := e.db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close() })
	ctx := context.Background()
	if err := e.db.CreateToken(ctx, &core.Token{ID: "admin", Kind: core.TokenAdmin, Hash: api.HashSecret("admin-secret")}); err != nil {
		t.Fatal(err)
	}
	e.join = api.JoinToken{CAHash: pki.CAHash(), ID: "default", Secret: "s3cret"}
	if err := e.db.CreateToken(ctx, &core.Token{ID: "default", Kind: core.TokenJoin, Hash: api.HashSecret("default.s3cret")}); err != nil {
		t.Fatal(err)
	}
	e.srv = &api.Server{Addr: "127.0.0.1:0", PKI: pki, Store: e.db, Tokens: e.db, Bus: nullBus{}, Version: "test",
		Now:     func() time.Time { return e.now },
		MQTTURL: func(host string) string { return "ssl://" + host + ":8883" }}
	e.auth = &api.NodeAuth{Tokens: e.db, Disconnect: func(node string) {
		e.mu.Lock()
		e.kicks = append(e.kicks, node)
		e.mu.Unlock()
	}}
	e.srv.Auth = e.auth
	if configure != nil {
		configure(e.srv)
	}
	if err := e.srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.srv.Close() })
	e.url = "https://" + e.srv.Address()
	tlsConfig, err := api.CATLS(pki.CAPEM)
	if err != nil {
		t.Fatal(err)
	}
	e.tls = tlsConfig
	e.admin = api.NewClient(e.url, "admin-secret", tlsConfig)
	return e
}

const deploy = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {tier: front}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: demo}]
`

func TestAuth(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	if v, err := api.NewClient(e.url, "", e.tls).Version(ctx); err != nil || v.Version != "test" {
		t.Fatalf("version without a token: %v %v", v, err)
	}
	for _, tt := range []struct{ name, token, want string }{
		{"NoToken", "", "no token"},
		{"WrongToken", "nope", "token was refused"},
		{"JoinTokenIsNotAdmin", e.join.String(), "token was refused"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := api.NewClient(e.url, tt.token, e.tls).List(ctx, core.KindPod, "", "")
			if core.ErrorCode(err) != core.EUNAUTHORIZED || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestApplyGetListDelete(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	files := []core.ManifestFile{{Name: "d.yaml", Data: []byte(deploy)}}
	res, err := e.admin.Apply(ctx, files)
	if err != nil || len(res) != 1 || res[0].String() != "deployment.apps/web created" {
		t.Fatalf("apply: %v %v", res, err)
	}
	if res, err = e.admin.Apply(ctx, files); err != nil || res[0].Action != "unchanged" {
		t.Fatalf("re-apply: %v %v", res, err)
	}
	o, err := e.admin.Get(ctx, core.Key{Kind: core.KindDeployment, Namespace: "default", Name: "web"})
	if err != nil || o.(*core.Deployment).DesiredReplicas() != 2 {
		t.Fatalf("get: %v %v", o, err)
	}
	if l, err := e.admin.List(ctx, core.KindDeployment, "", "tier=front"); err != nil || len(l) != 1 {
		t.Fatalf("list with selector: %v %v", l, err)
	}
	if l, err := e.admin.List(ctx, core.KindDeployment, "", "tier=back"); err != nil || len(l) != 0 {
		t.Fatalf("list with other selector: %v %v", l, err)
	}
	_, err = e.admin.Apply(ctx, []core.ManifestFile{{Name: "bad.yaml", Data: []byte(strings.Replace(deploy, "replicas: 2", "replicas: 2\n  paused: true", 1))}})
	if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), `bad.yaml: Deployment "web": unknown field "spec.paused"`) {
		t.Fatalf("bad apply: %v", err)
	}
	if _, err := e.admin.Delete(ctx, core.Key{Kind: core.KindDeployment, Namespace: "default", Name: "web"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.admin.Get(ctx, core.Key{Kind: core.KindDeployment, Namespace: "default", Name: "web"})
	if core.ErrorCode(err) != core.ENOTFOUND || err.Error() != `deployment "web" not found` {
		t.Fatalf("get after delete: %v", err)
	}
	_, err = e.admin.Apply(ctx, []core.ManifestFile{{Name: "ns.yaml", Data: []byte(strings.Replace(deploy, "name: web,", "name: web, namespace: nowhere,", 1))}})
	if core.ErrorCode(err) != core.ENOTFOUND || !strings.Contains(err.Error(), `namespace "nowhere" not found`) {
		t.Fatalf("apply into a missing namespace: %v", err)
	}
}

func TestWatch(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.admin.Apply(ctx, []core.ManifestFile{{Name: "d.yaml", Data: []byte(deploy)}})
	events, err := e.admin.Watch(ctx, core.KindDeployment, "default", "", "")
	if err != nil {
		t.Fatal(err)
	}
	next := func() api.WatchEvent {
		select {
		case ev := <-events:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
		return api.WatchEvent{}
	}
	if ev := next(); ev.Type != core.Added || ev.Object.GetMeta().Name != "web" {
		t.Fatalf("first event %s %s", ev.Type, ev.Object.GetMeta().Name)
	}
	e.admin.Apply(ctx, []core.ManifestFile{{Name: "d.yaml", Data: []byte(strings.Replace(deploy, "replicas: 2", "replicas: 3", 1))}})
	if ev := next(); ev.Type != core.Modified || ev.Object.(*core.Deployment).DesiredReplicas() != 3 {
		t.Fatalf("second event %s", ev.Type)
	}
}

func TestJoin(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		c := api.NewClient(e.url, e.join.String(), api.PinnedTLS(e.join.CAHash))
		resp, err := c.Join(ctx, "pi-1", nodePassword)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(resp.MQTTURL, "ssl://127.0.0.1:") || resp.MQTTUsername != "node:pi-1" || resp.MQTTPassword == "" {
			t.Fatalf("join response %+v", resp)
		}
		if !e.auth.CheckMQTT("pi-1", resp.MQTTPassword) || e.auth.CheckMQTT("pi-1", "guess") {
			t.Fatal("the broker's check does not follow the issued credential")
		}
		stored, _ := e.db.NodeCredentials(ctx)
		if stored["pi-1"] != api.HashSecret(resp.MQTTPassword) {
			t.Fatal("credential not stored")
		}
	})
	t.Run("ErrWrongPin", func(t *testing.T) {
		other := strings.Repeat("0", 64)
		_, err := api.NewClient(e.url, e.join.String(), api.PinnedTLS(other)).Join(ctx, "pi-2", nodePassword)
		if core.ErrorCode(err) != core.EUNAUTHORIZED || !strings.Contains(err.Error(), "does not match the join token") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("ErrWrongSecret", func(t *testing.T) {
		bad := e.join
		bad.Secret = "guess"
		_, err := api.NewClient(e.url, bad.String(), api.PinnedTLS(e.join.CAHash)).Join(ctx, "pi-3", nodePassword)
		if core.ErrorCode(err) != core.EUNAUTHORIZED {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("ErrBadNodeName", func(t *testing.T) {
		_, err := api.NewClient(e.url, e.join.String(), api.PinnedTLS(e.join.CAHash)).Join(ctx, "Bad_Name", nodePassword)
		if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), `node name "Bad_Name"`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("CreatedTokenExpires", func(t *testing.T) {
		tok, err := e.admin.CreateToken(ctx, api.TokenRequest{TTL: "1h", Description: "batch 2"})
		if err != nil {
			t.Fatal(err)
		}
		jt, err := api.ParseJoinToken(tok.Token)
		if err != nil || jt.CAHash != e.join.CAHash {
			t.Fatalf("token %q: %v", tok.Token, err)
		}
		c := api.NewClient(e.url, tok.Token, api.PinnedTLS(jt.CAHash))
		if _, err := c.Join(ctx, "pi-4", nodePassword); err != nil {
			t.Fatal(err)
		}
		e.now = e.now.Add(2 * time.Hour)
		if _, err := c.Join(ctx, "pi-5", nodePassword); core.ErrorCode(err) != core.EUNAUTHORIZED || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("expired token: %v", err)
		}
		if _, err := e.admin.CreateToken(ctx, api.TokenRequest{TTL: "soon"}); core.ErrorCode(err) != core.EINVALID {
			t.Fatalf("bad ttl: %v", err)
		}
	})
}

func TestParseJoinToken(t *testing.T) {
	good := "K10" + strings.Repeat("a", 64) + "::default.secret"
	if jt, err := api.ParseJoinToken(good); err != nil || jt.ID != "default" || jt.Secret != "secret" || jt.String() != good {
		t.Fatalf("%+v %v", jt, err)
	}
	for _, bad := range []string{"", "secret", "K10abc::a.b", "K10" + strings.Repeat("z", 64) + "::a.b", "K10" + strings.Repeat("a", 64) + "::nodot", "K10" + strings.Repeat("a", 64) + ":a.b"} {
		if _, err := api.ParseJoinToken(bad); core.ErrorCode(err) != core.EINVALID {
			t.Errorf("ParseJoinToken(%q) accepted", bad)
		}
	}
}

func TestNodeActions(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	// A node with a deployment pod and a DaemonSet pod on it.
	err := e.db.Update(ctx, func(tx core.Tx) error {
		n := &core.Node{TypeMeta: core.TypeMeta{Kind: core.KindNode}, Metadata: core.ObjectMeta{Name: "n1"}}
		if err := tx.Create(n); err != nil {
			return err
		}
		for _, o := range []struct{ name, kind string }{{"web-1", "Deployment"}, {"logs-1", "DaemonSet"}} {
			p := &core.Pod{TypeMeta: core.TypeMeta{Kind: core.KindPod}, Metadata: core.ObjectMeta{Name: o.name, Namespace: "default",
				OwnerReferences: []core.OwnerReference{{Kind: core.Kind(o.kind), Name: "x", UID: o.kind, Controller: true}}},
				Spec: core.PodSpec{NodeName: "n1", Containers: []core.Container{{Name: "c", Image: "i"}}}}
			if err := tx.Create(p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.admin.NodeAction(ctx, "n1", "drain")
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Action != "cordoned" || res[1].Name != "web-1" || res[1].Action != "evicted" {
		t.Fatalf("drain: %+v", res)
	}
	n, _ := e.admin.Get(ctx, core.Key{Kind: core.KindNode, Name: "n1"})
	if !n.(*core.Node).Spec.Unschedulable {
		t.Fatal("not cordoned")
	}
	ds, _ := e.admin.Get(ctx, core.Key{Kind: core.KindPod, Namespace: "default", Name: "logs-1"})
	web, _ := e.admin.Get(ctx, core.Key{Kind: core.KindPod, Namespace: "default", Name: "web-1"})
	if ds.(*core.Pod).Terminating() || !web.(*core.Pod).Terminating() {
		t.Fatal("drain must evict the deployment pod and keep the DaemonSet pod")
	}
	if res, err := e.admin.NodeAction(ctx, "n1", "uncordon"); err != nil || res[0].Action != "uncordoned" {
		t.Fatalf("uncordon: %v %v", res, err)
	}
	if _, err := e.admin.NodeAction(ctx, "nope", "cordon"); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("cordon missing node: %v", err)
	}
	// Taints, kubectl style.
	if res, err := e.admin.Taint(ctx, "n1", "dedicated=gpu:NoSchedule"); err != nil || res[0].Action != "tainted" {
		t.Fatalf("taint: %v %v", res, err)
	}
	e.admin.Taint(ctx, "n1", "slow:PreferNoSchedule")
	n, _ = e.admin.Get(ctx, core.Key{Kind: core.KindNode, Name: "n1"})
	if ts := n.(*core.Node).Spec.Taints; len(ts) != 2 || ts[0].String() != "dedicated=gpu:NoSchedule" {
		t.Fatalf("taints %v", ts)
	}
	if _, err := e.admin.Taint(ctx, "n1", "dedicated-"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Taint(ctx, "n1", "dedicated=gpu:Often"); core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "NoSchedule, PreferNoSchedule or NoExecute") {
		t.Fatalf("a bad effect: %v", err)
	}
	if _, err := e.admin.Taint(ctx, "n1", "dedicated-"); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("removing a taint that is not there: %v", err)
	}
	n, _ = e.admin.Get(ctx, core.Key{Kind: core.KindNode, Name: "n1"})
	if ts := n.(*core.Node).Spec.Taints; len(ts) != 1 || ts[0].Key != "slow" {
		t.Fatalf("after removing dedicated: %v", ts)
	}
}

func TestLogsThroughBus(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	e.db.Update(ctx, func(tx core.Tx) error {
		return tx.Create(&core.Pod{TypeMeta: core.TypeMeta{Kind: core.KindPod}, Metadata: core.ObjectMeta{Name: "p", Namespace: "default"},
			Spec: core.PodSpec{NodeName: "n1", Containers: []core.Container{{Name: "c", Image: "i"}}}})
	})
	rc, err := e.admin.Logs(ctx, "default", "p", "", false, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	if string(b) != "log of p on n1\n" {
		t.Fatalf("logs = %q", b)
	}
	if _, err := e.admin.Logs(ctx, "default", "nope", "", false, -1); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("logs of a missing pod: %v", err)
	}
}

// delete -f reports what it could not delete while deleting the rest.
func TestDeleteManifestsPartly(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	e.admin.Apply(ctx, []core.ManifestFile{{Name: "d.yaml", Data: []byte(deploy)}})
	two := deploy + "---\n" + strings.Replace(deploy, "name: web,", "name: gone,", 1)
	res, err := e.admin.DeleteManifests(ctx, []core.ManifestFile{{Name: "two.yaml", Data: []byte(two)}})
	if len(res) != 1 || res[0].Name != "web" {
		t.Fatalf("results %+v", res)
	}
	if core.ErrorCode(err) != core.ENOTFOUND || !strings.Contains(err.Error(), `deployment "gone" not found`) {
		t.Fatalf("err = %v", err)
	}
}
