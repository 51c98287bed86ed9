package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// edgeagent check needs no master and no token; it takes the agent's flags.
func TestMain_Check(t *testing.T) {
	dir := t.TempDir()
	m := NewMain()
	sock := filepath.Join(dir, "none.sock")
	if err := m.ParseFlags([]string{"check", "--containerd", sock, "--data-dir", dir, "--cni-bin-dir", dir}); err != nil || !m.Check {
		t.Fatalf("ParseFlags: %v, Check %v", err, m.Check)
	}
	var out strings.Builder
	m.Stdout = &out
	err := m.Run(context.Background())
	if err == nil || !strings.HasSuffix(err.Error(), " of 17 checks failed") {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"FAIL  containerd            no socket at " + sock, "fix: apt-get install containerd",
		"FAIL  cni plugins           missing from " + dir, "fix: apt-get install containernetworking-plugins", "17 checks: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out.String())
	}
	if m.Agent != nil {
		t.Fatal("check started the agent")
	}
}

func TestMain_BadFlags(t *testing.T) {
	tok := "K10" + strings.Repeat("a", 64) + "::abcdef.0123456789abcdef"
	for _, args := range [][]string{{"chek"}, {"check", "extra"}, {}, // {}: no token
		{"--token", tok, "--peer-port", "-1"}, {"--token", tok, "--peer-port", "70000"}} {
		if err := NewMain().ParseFlags(args); err == nil {
			t.Errorf("ParseFlags(%q) accepted", args)
		}
	}
}

// The release's unit passes the master and labels in the environment
// (/etc/edge/edge.env); flags win over it.
func TestMain_Environment(t *testing.T) {
	t.Setenv("EDGE_TOKEN", "K10"+strings.Repeat("a", 64)+"::abcdef.0123456789abcdef")
	t.Setenv("EDGE_MASTER", "https://m:7443")
	t.Setenv("EDGE_LABELS", "zone=shed,tier=edge")
	m := NewMain()
	if err := m.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	if m.Master != "https://m:7443" || m.Labels["zone"] != "shed" || m.Labels["tier"] != "edge" || len(m.Labels) != 2 {
		t.Fatalf("master %q labels %v", m.Master, m.Labels)
	}
	m = NewMain()
	if err := m.ParseFlags([]string{"--master", "https://other:7443", "--labels", "a=b"}); err != nil {
		t.Fatal(err)
	}
	if m.Master != "https://other:7443" || len(m.Labels) != 1 || m.Labels["a"] != "b" {
		t.Fatalf("flags did not win: master %q labels %v", m.Master, m.Labels)
	}
	t.Setenv("EDGE_LABELS", "")
	m = NewMain()
	if err := m.ParseFlags(nil); err != nil || len(m.Labels) != 0 {
		t.Fatalf("empty EDGE_LABELS: %v %v", err, m.Labels)
	}
	t.Setenv("EDGE_LABELS", "nolabel")
	if err := NewMain().ParseFlags(nil); err == nil || !strings.Contains(err.Error(), "EDGE_LABELS") {
		t.Fatalf("bad EDGE_LABELS: %v", err)
	}
}
