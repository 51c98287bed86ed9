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
	for _, args := range [][]string{{"chek"}, {"check", "extra"}, {}} { // {}: no token
		if err := NewMain().ParseFlags(args); err == nil {
			t.Errorf("ParseFlags(%q) accepted", args)
		}
	}
}
