package core

import (
	"strings"
	"testing"
)

func TestCheckAgentVersion(t *testing.T) {
	for _, tt := range []struct {
		master, agent string
		proto         int
		want          string // "" accepted, else part of the error
	}{
		{"v1.4.2", "v1.4.0", 0, ""},
		{"v1.4.2", "v1.3.9", 1, ""}, // one minor older
		{"v1.4.2", "v1.2.0", 1, "upgrade the agent"},
		{"v1.4.2", "v1.5.0", 1, "upgrade the master first"},
		{"v1.4.2", "v2.0.0", 1, "upgrade the master first"},
		{"v2.0.0", "v1.9.0", 1, "upgrade the agent"},
		{"v1.4.2", "v1.4.2", ProtocolVersion + 1, "protocol 2, this master (v1.4.2) only up to 1: upgrade the master first"},
		{"v0.1.0-dev", "743f97e-dirty", 1, ""}, // development builds: protocol only
		{"v0.1.0-dev", "743f97e-dirty", 9, "upgrade the master first"},
	} {
		err := CheckAgentVersion(tt.master, tt.agent, tt.proto)
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("master %s agent %s protocol %d: %v, want %q", tt.master, tt.agent, tt.proto, err, tt.want)
		}
	}
}
