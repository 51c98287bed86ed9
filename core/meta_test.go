package core_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
)

func TestIntOrString_Scaled(t *testing.T) {
	for _, tt := range []struct {
		v       core.IntOrString
		total   int
		roundUp bool
		want    int
		err     bool
	}{
		{core.IntOrInt(3), 10, true, 3, false},
		{core.IntOrInt(3), 10, false, 3, false},
		{core.IntOrInt(0), 10, true, 0, false},
		{core.IntOrStr("25%"), 10, true, 3, false},
		{core.IntOrStr("25%"), 10, false, 2, false},
		{core.IntOrStr("25%"), 4, true, 1, false},
		{core.IntOrStr("25%"), 4, false, 1, false},
		{core.IntOrStr("1%"), 1, true, 1, false},
		{core.IntOrStr("1%"), 1, false, 0, false},
		{core.IntOrStr("0%"), 10, true, 0, false},
		{core.IntOrStr("100%"), 7, false, 7, false},
		{core.IntOrStr("150%"), 10, true, 15, false},
		{core.IntOrStr("50%"), 0, true, 0, false},
		{core.IntOrStr("25"), 10, true, 0, true},
		{core.IntOrStr("x%"), 10, true, 0, true},
		{core.IntOrStr("-5%"), 10, true, 0, true},
		{core.IntOrStr("%"), 10, true, 0, true},
	} {
		got, err := tt.v.Scaled(tt.total, tt.roundUp)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("%s of %d (up %v) = %d, %v; want %d, error %v", tt.v, tt.total, tt.roundUp, got, err, tt.want, tt.err)
		}
	}
}

func TestIntOrString_JSON(t *testing.T) {
	for _, tt := range []struct {
		json string
		want core.IntOrString
	}{
		{`8080`, core.IntOrInt(8080)},
		{`"http"`, core.IntOrStr("http")},
		{`"25%"`, core.IntOrStr("25%")},
	} {
		var v core.IntOrString
		if err := json.Unmarshal([]byte(tt.json), &v); err != nil || v != tt.want {
			t.Fatalf("unmarshal %s = %+v, %v", tt.json, v, err)
		}
		if b, _ := json.Marshal(v); string(b) != tt.json {
			t.Fatalf("marshal %+v = %s, want %s", v, b, tt.json)
		}
		if v.String() != strings.Trim(tt.json, `"`) {
			t.Fatalf("String() = %q", v.String())
		}
	}
	var v core.IntOrString
	if err := json.Unmarshal([]byte(`true`), &v); err == nil {
		t.Fatal("a boolean unmarshalled")
	}
}

func TestRandomPodName(t *testing.T) {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		for _, tt := range []struct{ owner, hash, prefix string }{{"web", "5d8f", "web-5d8f-"}, {"logs", "", "logs-"}} {
			name := core.RandomPodName(tt.owner, tt.hash)
			suffix, ok := strings.CutPrefix(name, tt.prefix)
			if !ok || len(suffix) != 5 || strings.Trim(suffix, alphabet) != "" {
				t.Fatalf("RandomPodName(%q, %q) = %q", tt.owner, tt.hash, name)
			}
			seen[name] = true
		}
	}
	// 27^5 names per prefix: 400 draws collide rarely, and never all.
	if len(seen) < 390 {
		t.Fatalf("%d distinct names in 400", len(seen))
	}
	// A long owner is cut so the name stays a valid hostname.
	long := strings.Repeat("a", 253)
	name := core.RandomPodName(long, "0123456789")
	if len(name) != 63 || !strings.HasPrefix(name, strings.Repeat("a", 58)) {
		t.Fatalf("RandomPodName of a 253-character owner = %q (%d characters)", name, len(name))
	}
}
