package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/storetest"
)

func files(docs ...string) []core.ManifestFile {
	return []core.ManifestFile{{Name: "m.yaml", Data: []byte(strings.Join(docs, "---\n"))}}
}

const nodePortSvc = "apiVersion: v1\nkind: Service\nmetadata: {name: np}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, nodePort: 30080}]\n"

// ?dryRun=All runs the whole apply on the master and stores nothing.
func TestApplyDryRun(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	if _, err := e.admin.Apply(ctx, files(deploy, nodePortSvc)); err != nil {
		t.Fatal(err)
	}
	before := storetest.Snapshot(t, e.db)
	scaled := strings.Replace(deploy, "replicas: 2", "replicas: 3", 1)
	newSvc := "apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec:\n  selector: {app: api}\n  ports: [{port: 80}]\n"

	res, err := e.admin.ApplyDryRun(ctx, files(scaled, newSvc, nodePortSvc))
	var got []string
	for _, r := range res {
		got = append(got, r.String())
	}
	want := "service/api created (server dry run), service/np unchanged (server dry run), deployment.apps/web configured (server dry run)"
	if err != nil || strings.Join(got, ", ") != want {
		t.Fatalf("dry run: %q, %v; want %q", strings.Join(got, ", "), err, want)
	}

	changes, err := e.admin.DryRunChanges(ctx, files(scaled, newSvc))
	if err != nil || len(changes) != 2 {
		t.Fatalf("changes: %v, %v", changes, err)
	}
	if c := changes[0]; c.Name != "api" || c.Live != nil || c.Merged.(*core.Service).Spec.ClusterIP == "" {
		t.Fatalf("new service: %+v", c)
	}
	d, err := core.Diff(changes[1].Live, changes[1].Merged)
	if err != nil || !strings.Contains(d, "\n-  replicas: 2\n+  replicas: 3\n") {
		t.Fatalf("diff of the scaled deployment: %v\n%s", err, d)
	}

	t.Run("ErrConflict", func(t *testing.T) {
		clash := strings.Replace(nodePortSvc, "name: np", "name: clash", 1)
		_, err := e.admin.ApplyDryRun(ctx, files(clash))
		_, applyErr := e.admin.Apply(ctx, files(clash))
		if core.ErrorCode(err) != core.ECONFLICT || applyErr == nil || err.Error() != applyErr.Error() ||
			!strings.Contains(err.Error(), "30080/TCP is already used by service default/np") {
			t.Fatalf("dry run: %v; apply: %v", err, applyErr)
		}
		_, err = e.admin.DryRunChanges(ctx, files(clash))
		if core.ErrorCode(err) != core.ECONFLICT {
			t.Fatalf("changes: %v", err)
		}
	})
	t.Run("ErrImmutableClusterIP", func(t *testing.T) {
		moved := nodePortSvc + "  clusterIP: 10.43.0.99\n"
		_, err := e.admin.ApplyDryRun(ctx, files(moved))
		if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "spec.clusterIP: cannot change from") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("ErrInvalidManifest", func(t *testing.T) {
		_, err := e.admin.ApplyDryRun(ctx, files(deploy, strings.Replace(nodePortSvc, "port: 80,", "port: 80, bogus: 1,", 1)))
		if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), `m.yaml: document 2: Service "np": unknown field "spec.ports[0].bogus"`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("ErrBadQuery", func(t *testing.T) {
		for _, q := range []string{"dryRun=true", "output=objects", "dryRun=All&output=yaml"} {
			body, _ := json.Marshal(map[string]any{"files": files(deploy)})
			req, _ := http.NewRequest("POST", e.url+"/api/v1/apply?"+q, strings.NewReader(string(body)))
			req.Header.Set("Authorization", "Bearer admin-secret")
			resp, err := e.admin.HTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var ce core.Error
			json.NewDecoder(resp.Body).Decode(&ce)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || ce.Code != core.EINVALID {
				t.Errorf("?%s: %s %+v, want 400 invalid", q, resp.Status, ce)
			}
		}
	})

	if after := storetest.Snapshot(t, e.db); after != before {
		t.Fatalf("dry runs changed the store:\n%s\nwant:\n%s", after, before)
	}
}

// A master that ignores dryRun (one older than it) applied for real; the
// client must not report that as a dry run.
func TestApplyDryRun_OldMaster(t *testing.T) {
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"results":[{"kind":"Deployment","name":"web","action":"configured"}]}`))
	}))
	defer old.Close()
	c := &api.Client{Server: old.URL, HTTP: old.Client()}
	_, err := c.ApplyDryRun(context.Background(), files(deploy))
	if err == nil || !strings.Contains(err.Error(), "does not support dry runs and applied") {
		t.Fatalf("err = %v", err)
	}
	if _, err := c.DryRunChanges(context.Background(), files(deploy)); err == nil {
		t.Fatal("no error from an old master")
	}
}
