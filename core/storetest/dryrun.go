package storetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// Snapshot renders everything s holds, every object of every kind as its
// JSON, and its revision where it has one: two equal snapshots mean
// nothing changed.
func Snapshot(t *testing.T, s core.Store) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "revision %d\n", revision(s))
	for _, kind := range core.Kinds {
		for _, o := range list(t, s, kind, "") {
			j, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s\n", j)
		}
	}
	return b.String()
}

var time0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func manifests(t *testing.T, docs ...string) []core.Object {
	t.Helper()
	objs, err := core.DecodeManifests([]core.ManifestFile{{Name: "dryrun.yaml", Data: []byte(strings.Join(docs, "---\n"))}})
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// DryRunDocs are manifests for a dry run test: Base is applied for real,
// then Next dry-run over it: a deployment scaled from 2 to 3, a NodePort
// service unchanged, a new namespace with a new service in it.
var DryRunDocs = struct{ Base, Next []string }{
	Base: []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: np}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, nodePort: 30080}]\n",
		dryRunDeployment(2),
	},
	Next: []string{
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: team}\nspec:\n  selector: {app: api}\n  ports: [{port: 80}]\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: np}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, nodePort: 30080}]\n",
		dryRunDeployment(3),
	},
}

func dryRunDeployment(replicas int) string {
	return fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: %d\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: demo:1}]\n", replicas)
}

// A dry run reports what the apply would do, and conflicts as the apply
// would, while the store keeps every byte, its revision and its write
// count, and watchers hear nothing: its transaction is rolled back.
func testDryRunApply(t *testing.T, s core.Store) {
	net := core.NetworkConfig{}
	if _, err := core.Apply(ctx, s, manifests(t, DryRunDocs.Base...), time0, net); err != nil {
		t.Fatal(err)
	}
	before, writes0 := Snapshot(t, s), writes(s)
	ch, stop := s.Watch()
	defer stop()

	changes, err := core.DryRunApply(ctx, s, manifests(t, DryRunDocs.Next...), time0, net)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.String())
	}
	want := "namespace/team created (server dry run), service/api created (server dry run), " +
		"service/np unchanged (server dry run), deployment.apps/web configured (server dry run)"
	if strings.Join(got, ", ") != want {
		t.Fatalf("results %q, want %q", strings.Join(got, ", "), want)
	}
	if c := changes[1]; c.Live != nil || c.Merged.(*core.Service).Spec.ClusterIP == "" {
		t.Fatalf("new service: live %v, merged cluster IP %q (want one allocated)", c.Live, c.Merged.(*core.Service).Spec.ClusterIP)
	}
	if c := changes[3]; c.Live.(*core.Deployment).DesiredReplicas() != 2 || c.Merged.(*core.Deployment).DesiredReplicas() != 3 {
		t.Fatalf("deployment: live %d replicas, merged %d; want 2 and 3",
			c.Live.(*core.Deployment).DesiredReplicas(), c.Merged.(*core.Deployment).DesiredReplicas())
	}

	// A dry run that conflicts fails as the apply would, and changes nothing either.
	clash := "apiVersion: v1\nkind: Service\nmetadata: {name: clash}\nspec:\n  type: NodePort\n  selector: {app: x}\n  ports: [{port: 80, nodePort: 30080}]\n"
	_, err = core.DryRunApply(ctx, s, manifests(t, DryRunDocs.Next[0], clash), time0, net)
	_, applyErr := core.Apply(ctx, s, manifests(t, DryRunDocs.Next[0], clash), time0, net)
	if core.ErrorCode(err) != core.ECONFLICT || applyErr == nil || err.Error() != applyErr.Error() {
		t.Fatalf("conflicting dry run: %v; apply says %v", err, applyErr)
	}

	if after := Snapshot(t, s); after != before {
		t.Fatalf("a dry run changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if w := writes(s); w != writes0 {
		t.Fatalf("writes %d -> %d for dry runs", writes0, w)
	}
	k := sentinel(t, s, "after-dry-run")
	wantEvent(t, ch, core.Added, k) // nothing came before it

	// And the apply for real does what the dry run said.
	res, err := core.Apply(ctx, s, manifests(t, DryRunDocs.Next...), time0, net)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		r.DryRun = core.DryRunServer
		if r.String() != got[i] {
			t.Fatalf("apply %d: %q, dry run said %q", i, r.String(), got[i])
		}
	}
}
