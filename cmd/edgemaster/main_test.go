package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeorch/edge/api"
)

func runMain(t *testing.T, dir string) *Main {
	t.Helper()
	m := NewMain()
	if err := m.ParseFlags([]string{"--data-dir", dir, "--api-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--no-mdns"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// First start creates the CA, admin.conf and join-token; a restart reuses
// every one of them and the stored state.
func TestMain_FirstStartAndRestart(t *testing.T) {
	dir := t.TempDir()
	m := runMain(t, dir)
	for _, f := range []string{"ca.crt", "ca.key", "server.crt", "server.key", "admin.conf", "join-token", "state.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("%s not created: %v", f, err)
		}
	}
	cfg, err := api.LoadConfig(filepath.Join(dir, "admin.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(cfg.Server, m.API.Address()[strings.LastIndex(m.API.Address(), ":"):]) {
		t.Fatalf("admin.conf server %q does not point at %s", cfg.Server, m.API.Address())
	}
	caPEM, _ := cfg.CAPEM()
	tlsConfig, err := api.CATLS(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := api.NewClient(cfg.Server, cfg.Token, tlsConfig).List(ctx, "Node", "", ""); err != nil {
		t.Fatalf("admin.conf does not work: %v", err)
	}
	join1, _ := os.ReadFile(filepath.Join(dir, "join-token"))
	ca1, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	m = runMain(t, dir)
	defer m.Close()
	join2, _ := os.ReadFile(filepath.Join(dir, "join-token"))
	ca2, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	cfg2, _ := api.LoadConfig(filepath.Join(dir, "admin.conf"))
	if string(join1) != string(join2) || string(ca1) != string(ca2) || cfg2.Token != cfg.Token {
		t.Fatal("a restart made new credentials")
	}
	jt, err := api.ParseJoinToken(string(join2))
	if err != nil {
		t.Fatal(err)
	}
	// The old join token still joins against the restarted master.
	c := api.NewClient(cfg2.Server, jt.String(), api.PinnedTLS(jt.CAHash))
	if _, err := c.Join(ctx, "pi-1", "0123456789abcdef-node"); err != nil {
		t.Fatalf("join after restart: %v", err)
	}
}

func TestMain_BadFlags(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "registries.yaml")
	os.WriteFile(bad, []byte("mirrors:\n  docker.io:\n    endpoint: [\"ftp://mirror\"]\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--registries", "/etc/hostname"}, "/etc/hostname"},
		{[]string{"--registries", "/nonexistent.yaml"}, "no such file"},
		{[]string{"--registries", bad}, `mirrors."docker.io".endpoint[0]`},
		{[]string{"extra"}, "unexpected"},
		{[]string{"--nope"}, "nope"},
	} {
		err := NewMain().ParseFlags(c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseFlags(%q): %v, want an error naming %s", c.args, err, c.want)
		}
	}
}

// A first start that fails (the API port is taken) leaves a data dir that
// the next start completes, with a working admin.conf.
func TestMain_FailedFirstStartRecovers(t *testing.T) {
	dir := t.TempDir()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMain()
	if err := m.ParseFlags([]string{"--data-dir", dir, "--api-addr", taken.Addr().String(), "--mqtt-addr", "127.0.0.1:0", "--no-mdns"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Run with the API port taken: %v", err)
	}
	m.Close()
	taken.Close()
	m = runMain(t, dir)
	defer m.Close()
	cfg, err := api.LoadConfig(filepath.Join(dir, "admin.conf"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := cfg.CAPEM()
	tlsConfig, _ := api.CATLS(caPEM)
	if _, err := api.NewClient(cfg.Server, cfg.Token, tlsConfig).List(context.Background(), "Node", "", ""); err != nil {
		t.Fatalf("admin.conf after a failed first start: %v", err)
	}
}

// edgemaster check takes the daemon's flags, checks without creating
// anything, and fails when a port is taken.
func TestMain_Check(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "master")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	m := NewMain()
	if err := m.ParseFlags([]string{"check", "--data-dir", dir, "--api-addr", "127.0.0.1:0", "--mqtt-addr", taken.Addr().String()}); err != nil || !m.Check {
		t.Fatalf("ParseFlags: %v, Check %v", err, m.Check)
	}
	var out strings.Builder
	m.Stdout = &out
	if err := m.Run(context.Background()); err == nil || err.Error() != "1 of 6 checks failed" {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "FAIL  port mqtt") || !strings.Contains(out.String(), taken.Addr().String()+" is in use by ") ||
		!strings.Contains(out.String(), "      fix: stop ") {
		t.Fatalf("output:\n%s", out.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("check made the data dir: %v", err)
	}
	if m.DB != nil || m.API != nil {
		t.Fatal("check started the master")
	}
}
