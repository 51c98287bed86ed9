package api

import (
	"strings"
	"testing"
)

// FuzzParseJoinToken: never panics; what it accepts prints back to a token
// that parses to the same thing, with a 64-hex-digit CA hash.
func FuzzParseJoinToken(f *testing.F) {
	for _, s := range []string{
		"K10" + strings.Repeat("ab", 32) + "::default.0123456789abcdef",
		"K10" + strings.Repeat("AB", 32) + "::id.secret\n",
		"K10::x.y", "K10" + strings.Repeat("0", 64) + "::.", "K10" + strings.Repeat("z", 64) + "::a.b", "", "::",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		jt, err := ParseJoinToken(s)
		if err != nil {
			return
		}
		if len(jt.CAHash) != 64 || jt.ID == "" || jt.Secret == "" || strings.ToLower(jt.CAHash) != jt.CAHash {
			t.Fatalf("accepted %q as %+v", s, jt)
		}
		again, err := ParseJoinToken(jt.String())
		if err != nil || again != jt {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, jt, jt.String(), again, err)
		}
	})
}
