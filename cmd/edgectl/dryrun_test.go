package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/sqlite"
)

// startMaster serves the API on a real SQLite store and returns an
// edgectl config for it (admin.conf's format).
func startMaster(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	pki, err := api.LoadOrCreatePKI(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	db := sqlite.NewDB(filepath.Join(dir, "state.db"))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.CreateToken(context.Background(), &core.Token{ID: "admin", Kind: core.TokenAdmin, Hash: api.HashSecret("admin-secret")}); err != nil {
		t.Fatal(err)
	}
	srv := &api.Server{Addr: "127.0.0.1:0", PKI: pki, Store: db, Tokens: db, Version: "test", Now: time.Now}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cfg := &api.Config{Server: "https://" + srv.Address(), Token: "admin-secret",
		CertificateAuthorityData: base64.StdEncoding.EncodeToString(pki.CAPEM)}
	path := filepath.Join(dir, "admin.conf")
	writeFile(t, path, string(cfg.Marshal()))
	return path
}

func webYAML(replicas string) string {
	return "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: " + replicas +
		"\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: demo:1}]\n"
}

const npYAML = "apiVersion: v1\nkind: Service\nmetadata: {name: np}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, nodePort: 30080}]\n"

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := run(args...)
	if err != nil {
		t.Fatalf("edgectl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

func TestApplyDryRun(t *testing.T) {
	cfg := startMaster(t)
	dir := t.TempDir()
	web, web3 := filepath.Join(dir, "web.yaml"), filepath.Join(dir, "web3.yaml")
	writeFile(t, web, webYAML("2"))
	writeFile(t, web3, webYAML("3"))
	replicas := func() string {
		out := mustRun(t, "--config", cfg, "get", "deployment", "web", "-o", "json")
		o, err := core.DecodeObject(core.KindDeployment, []byte(out))
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(o.(*core.Deployment).DesiredReplicas())
	}

	t.Run("ServerCreatesNothing", func(t *testing.T) {
		if out := mustRun(t, "--config", cfg, "apply", "-f", web, "--dry-run=server"); out != "deployment.apps/web created (server dry run)\n" {
			t.Fatalf("output %q", out)
		}
		out, stderr, err := run("--config", cfg, "get", "deployments")
		if err != nil || out != "" || !strings.Contains(stderr, "No resources found") {
			t.Fatalf("get after a dry run: %v %q %q", err, out, stderr)
		}
	})
	t.Run("ClientCreatesNothing", func(t *testing.T) {
		for _, flag := range []string{"--dry-run", "--dry-run=client", "--dry-run=true"} {
			if out := mustRun(t, "--config", cfg, "apply", flag, "-f", web); out != "deployment.apps/web created (dry run)\n" {
				t.Fatalf("%s: output %q", flag, out)
			}
		}
		if _, _, err := run("--config", cfg, "get", "deployment", "web"); core.ErrorCode(err) != core.ENOTFOUND {
			t.Fatalf("get after a dry run: %v", err)
		}
	})
	mustRun(t, "--config", cfg, "apply", "-f", web, "--dry-run=none")
	t.Run("AgainstLive", func(t *testing.T) {
		for _, tt := range []struct{ file, mode, want string }{
			{web, "client", "deployment.apps/web unchanged (dry run)\n"},
			{web3, "client", "deployment.apps/web configured (dry run)\n"},
			{web, "server", "deployment.apps/web unchanged (server dry run)\n"},
			{web3, "server", "deployment.apps/web configured (server dry run)\n"},
		} {
			if out := mustRun(t, "--config", cfg, "apply", "-f", tt.file, "--dry-run="+tt.mode); out != tt.want {
				t.Errorf("%s %s: %q, want %q", tt.mode, tt.file, out, tt.want)
			}
		}
		if r := replicas(); r != "2" {
			t.Fatalf("%s replicas after dry runs, want 2", r)
		}
	})
	t.Run("ClientOffline", func(t *testing.T) {
		out, stderr, err := run("--config", cfg, "--server", "https://127.0.0.1:1", "apply", "--dry-run=client", "-f", web)
		if err != nil || out != "deployment.apps/web created (dry run)\n" || !strings.Contains(stderr, "Warning: no live objects to compare with (cannot reach the master") {
			t.Fatalf("offline client dry run: %v %q %q", err, out, stderr)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		np := filepath.Join(dir, "np.yaml")
		writeFile(t, np, npYAML)
		mustRun(t, "--config", cfg, "apply", "-f", np)
		clash := filepath.Join(dir, "clash.yaml")
		writeFile(t, clash, strings.Replace(npYAML, "name: np", "name: clash", 1))
		_, _, dryErr := run("--config", cfg, "apply", "-f", clash, "--dry-run=server")
		_, _, err := run("--config", cfg, "apply", "-f", clash)
		if dryErr == nil || err == nil || dryErr.Error() != err.Error() || !strings.Contains(err.Error(), "30080/TCP is already used by service default/np") {
			t.Fatalf("dry run: %v; apply: %v", dryErr, err)
		}
		moved := filepath.Join(dir, "moved.yaml")
		writeFile(t, moved, npYAML+"  clusterIP: 10.43.0.99\n")
		for _, mode := range []string{"client", "server"} {
			if _, _, err := run("--config", cfg, "apply", "-f", moved, "--dry-run="+mode); err == nil || !strings.Contains(err.Error(), "spec.clusterIP: cannot change from") {
				t.Errorf("%s dry run of a changed cluster IP: %v", mode, err)
			}
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		writeFile(t, bad, webYAML("2")+"---\n"+strings.Replace(npYAML, "port: 80,", "port: 80, bogus: 1,", 1))
		for _, mode := range []string{"client", "server"} {
			_, _, err := run("--config", cfg, "apply", "-f", bad, "--dry-run="+mode)
			if want := bad + `: document 2: Service "np": unknown field "spec.ports[0].bogus"`; err == nil || err.Error() != want {
				t.Errorf("%s: err %v, want %q", mode, err, want)
			}
		}
		for _, tt := range []struct{ args, want string }{
			{"--dry-run=bogus", "--dry-run=bogus: use none, client or server"},
			{"--dry-run server", "write --dry-run=server (with =)"},
		} {
			args := append([]string{"--config", cfg, "apply", "-f", web}, strings.Fields(tt.args)...)
			if _, _, err := run(args...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: err %v, want %q", tt.args, err, tt.want)
			}
		}
	})
}

func TestDiff(t *testing.T) {
	cfg := startMaster(t)
	dir := t.TempDir()
	web, web3 := filepath.Join(dir, "web.yaml"), filepath.Join(dir, "web3.yaml")
	writeFile(t, web, webYAML("2"))
	writeFile(t, web3, webYAML("3"))

	out, _, err := run("--config", cfg, "diff", "-f", web)
	if ExitCode(err) != 1 || !strings.Contains(out, "--- live/apps.v1.Deployment.default.web\n+++ merged/apps.v1.Deployment.default.web\n") ||
		!strings.Contains(out, "\n+kind: Deployment\n") || strings.Contains(out, "\n kind:") {
		t.Fatalf("new object: exit %d (%v)\n%s", ExitCode(err), err, out)
	}
	mustRun(t, "--config", cfg, "apply", "-f", web)
	if out, _, err := run("--config", cfg, "diff", "-f", web); ExitCode(err) != 0 || out != "" {
		t.Fatalf("no change: exit %d (%v) %q", ExitCode(err), err, out)
	}
	out, _, err = run("--config", cfg, "diff", "-f", web3)
	if ExitCode(err) != 1 || !strings.Contains(out, "\n-  replicas: 2\n+  replicas: 3\n") {
		t.Fatalf("changed replicas: exit %d (%v)\n%s", ExitCode(err), err, out)
	}
	if strings.Count(out, "\n-") != 2 || strings.Count(out, "\n+") != 2 { // header and replicas
		t.Fatalf("more than the replicas changed:\n%s", out)
	}
	// A diff changes nothing either.
	if out, _, err := run("--config", cfg, "diff", "-f", web); ExitCode(err) != 0 || out != "" {
		t.Fatalf("after diff: exit %d (%v) %q", ExitCode(err), err, out)
	}

	// Errors are exit status 2, differences or not.
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i, bogus: 1}]}\n")
	np, clash := filepath.Join(dir, "np.yaml"), filepath.Join(dir, "clash.yaml")
	writeFile(t, np, npYAML)
	writeFile(t, clash, strings.Replace(npYAML, "name: np", "name: clash", 1))
	mustRun(t, "--config", cfg, "apply", "-f", np)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", cfg, "diff", "-f", bad}, bad + `: Pod "p": unknown field "spec.containers[0].bogus"`},
		{[]string{"--config", cfg, "diff", "-f", clash}, "30080/TCP is already used by service default/np"},
		{[]string{"--config", cfg, "--server", "https://127.0.0.1:1", "diff", "-f", web3}, "cannot reach the master"},
		{[]string{"--config", cfg, "diff"}, "-f is required"},
		{[]string{"--config", cfg, "diff", "--bogus", "-f", web3}, "unknown flag: --bogus"},
	} {
		out, _, err := run(tt.args...)
		if ExitCode(err) != 2 || !strings.Contains(err.Error(), tt.want) || out != "" {
			t.Errorf("edgectl %s: exit %d, err %v, out %q; want 2 and %q", strings.Join(tt.args, " "), ExitCode(err), err, out, tt.want)
		}
	}
}
