package core_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/storetest"
)

func dryRun(t *testing.T, s core.Store, docs ...string) ([]core.Change, error) {
	t.Helper()
	return core.DryRunApply(ctx, s, decode(t, docs...), t0, core.NetworkConfig{})
}

func changeResults(changes []core.Change) string {
	var out []string
	for _, c := range changes {
		out = append(out, c.String())
	}
	return strings.Join(out, ", ")
}

// A server dry run refuses what apply refuses, with apply's words, and
// leaves the store as it was.
func TestDryRunApply_Errors(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, svcYAML, podYAML, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {a: b}\n")
	before := storetest.Snapshot(t, s)
	for _, tt := range []struct {
		name, doc, code string
	}{
		{"ClusterIPChanged", svcYAML + "  clusterIP: 10.43.0.99\n", core.EINVALID},
		{"ImmutableData", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {a: c}\n", core.EINVALID},
		{"PodSpec", strings.Replace(podYAML, "demo:1", "demo:2", 1), core.EINVALID},
		{"NoNamespace", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: nope}\n", core.ENOTFOUND},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dryRun(t, s, tt.doc)
			_, applyErr := apply(t, s, tt.doc)
			if core.ErrorCode(err) != tt.code || applyErr == nil || err.Error() != applyErr.Error() {
				t.Fatalf("dry run: %v (%s); apply: %v", err, core.ErrorCode(err), applyErr)
			}
		})
	}
	if _, err := dryRun(t, s, svcYAML+"  clusterIP: 10.43.0.99\n"); !strings.Contains(err.Error(), "spec.clusterIP: cannot change from 10.43.0.11 to 10.43.0.99") {
		t.Fatalf("changed cluster IP: %v", err)
	}
	if after := storetest.Snapshot(t, s); after != before {
		t.Fatalf("store changed:\n%s\nwant:\n%s", after, before)
	}
}

// A rolled-back create gives its uid back: a dry run leaves no trace even
// in the uids the memory store hands out next.
func TestDryRunApply_LeavesNoUID(t *testing.T) {
	plain, dry := newStore(t), newStore(t)
	if _, err := dryRun(t, dry, podYAML, svcYAML); err != nil {
		t.Fatal(err)
	}
	mustApply(t, plain, podYAML)
	mustApply(t, dry, podYAML)
	a, b := mustGet(t, plain, core.KindPod, "default", "p"), mustGet(t, dry, core.KindPod, "default", "p")
	if a.GetMeta().UID != b.GetMeta().UID {
		t.Fatalf("uid %s after a dry run, %s without", b.GetMeta().UID, a.GetMeta().UID)
	}
}

func TestDryRunLocal(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, nsTeam, deployment("web", 2, ""), svcYAML)
	live := func(k core.Key) (core.Object, error) { return s.Get(ctx, k) }
	local := func(live func(core.Key) (core.Object, error), docs ...string) (string, error) {
		res, err := core.DryRunLocal(ctx, decode(t, docs...), live)
		return results(res), err
	}
	before := storetest.Snapshot(t, s)

	got, err := local(live, deployment("web", 3, ""), svcYAML, podYAML)
	want := "service/web unchanged (dry run), deployment.apps/web configured (dry run), pod/p created (dry run)"
	if err != nil || got != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	// What the object's stored version refuses is refused locally too.
	if _, err := local(live, svcYAML+"  clusterIP: 10.43.0.99\n"); core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "spec.clusterIP: cannot change") {
		t.Fatalf("changed cluster IP: %v", err)
	}
	if _, err := local(live, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: nope}\n"); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("missing namespace: %v", err)
	}
	// The master's ranges are not the client's to enforce.
	if got, err := local(live, "apiVersion: v1\nkind: Service\nmetadata: {name: far}\nspec:\n  clusterIP: 10.96.0.20\n  ports: [{port: 80}]\n"); err != nil || got != "service/far created (dry run)" {
		t.Fatalf("service outside the default range: %q, %v", got, err)
	}
	// Errors other than not found are the caller's.
	down := func(core.Key) (core.Object, error) {
		return nil, core.Errorf(core.EUNAVAILABLE, "cannot reach the master")
	}
	if _, err := local(down, podYAML); core.ErrorCode(err) != core.EUNAVAILABLE {
		t.Fatalf("unreachable: %v", err)
	}
	// Offline: everything is new, in namespaces taken to exist.
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: team}\n"
	if got, err := local(nil, deployment("web", 3, ""), cm); err != nil || got != "configmap/c created (dry run), deployment.apps/web created (dry run)" {
		t.Fatalf("offline: %q, %v", got, err)
	}
	if got, err := local(nil, nsTeam, cm); err != nil || got != "namespace/team created (dry run), configmap/c created (dry run)" {
		t.Fatalf("offline with the namespace: %q, %v", got, err)
	}
	if after := storetest.Snapshot(t, s); after != before {
		t.Fatal("a local dry run changed the live store")
	}
}

func TestDiff(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, deployment("web", 2, ""), svcYAML)
	changes, err := dryRun(t, s, deployment("web", 3, ""), svcYAML, podYAML)
	if err != nil {
		t.Fatal(err)
	}
	diffs := map[string]string{}
	for _, c := range changes {
		d, err := core.Diff(c.Live, c.Merged)
		if err != nil {
			t.Fatal(err)
		}
		diffs[string(c.Kind)+"/"+c.Name] = d
	}

	t.Run("Changed", func(t *testing.T) {
		d := diffs["Deployment/web"]
		for _, want := range []string{
			"diff -u -N live/apps.v1.Deployment.default.web merged/apps.v1.Deployment.default.web\n",
			"--- live/apps.v1.Deployment.default.web\n+++ merged/apps.v1.Deployment.default.web\n",
			"\n-  replicas: 2\n+  replicas: 3\n",
			"\n   selector:\n", // context around the change
		} {
			if !strings.Contains(d, want) {
				t.Errorf("diff lacks %q:\n%s", want, d)
			}
		}
		if n := strings.Count(d, "\n-") + strings.Count(d, "\n+"); n != 4 { // the two header lines and the two changed
			t.Errorf("%d changed lines, want one each way:\n%s", n-2, d)
		}
		for _, field := range []string{"resourceVersion", "generation", "uid", "creationTimestamp", "status"} {
			if strings.Contains(d, field+":") {
				t.Errorf("diff shows server-managed %s:\n%s", field, d)
			}
		}
	})
	t.Run("Unchanged", func(t *testing.T) {
		if changes[0].Kind != core.KindService || changes[0].Action != "unchanged" || diffs["Deployment/web"] == "" {
			t.Fatalf("changes %s", changeResults(changes))
		}
		if d := diffs["Service/web"]; d != "" {
			t.Fatalf("unchanged service: %q", d)
		}
	})
	t.Run("New", func(t *testing.T) {
		d := diffs["Pod/p"]
		lines := strings.Split(strings.TrimSuffix(d, "\n"), "\n")
		if len(lines) < 5 || lines[3] != "@@ -0,0 +1,"+strconv.Itoa(len(lines)-4)+" @@" {
			t.Fatalf("new object's hunk header:\n%s", d)
		}
		for _, l := range lines[4:] {
			if !strings.HasPrefix(l, "+") {
				t.Fatalf("new object: line %q is not an addition:\n%s", l, d)
			}
		}
		if !strings.Contains(d, "+kind: Pod\n") || strings.Contains(d, "uid:") {
			t.Fatalf("new object:\n%s", d)
		}
	})
}

// Secret values never reach the terminal: a diff says only whether each
// one changes.
func TestDiff_MasksSecrets(t *testing.T) {
	s := newStore(t)
	secret := func(a, b string) string {
		return "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {user: " + a + ", pass: " + b + "}\n"
	}
	mustApply(t, s, secret("admin", "hunter2"))
	changes, err := dryRun(t, s, secret("admin", "correct-horse"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := core.Diff(changes[0].Live, changes[0].Merged)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-  pass: '*** (before)'\n", "+  pass: '*** (after)'\n", "   user: '***'\n"} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
	for _, secret := range []string{"hunter2", "correct-horse", "admin", "aHVudGVyMg", "YWRtaW4"} {
		if strings.Contains(d, secret) {
			t.Errorf("diff shows %q:\n%s", secret, d)
		}
	}
}
