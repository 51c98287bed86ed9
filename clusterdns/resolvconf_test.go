package clusterdns

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestResolvConf(t *testing.T) {
	tests := []struct {
		name       string
		ns, domain string
		hostSearch []string
		want       string
	}{
		{"plain", "default", "cluster.local", nil,
			"nameserver 10.42.3.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"},
		{"host search appended without duplicates", "shop", "cluster.local.", []string{"lan", "cluster.local", "example.com."},
			"nameserver 10.42.3.1\nsearch shop.svc.cluster.local svc.cluster.local cluster.local lan example.com\noptions ndots:5\n"},
		{"default domain", "default", "", nil,
			"nameserver 10.42.3.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"},
		{"custom domain", "kube-system", "edge.internal", nil,
			"nameserver 10.42.3.1\nsearch kube-system.svc.edge.internal svc.edge.internal edge.internal\noptions ndots:5\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(ResolvConf("10.42.3.1", tt.ns, tt.domain, tt.hostSearch)); got != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestHostResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	conf := "# generated\nnameserver 192.0.2.53\nnameserver 2001:db8::1\nsearch lan example.com.\noptions edns0 ndots:1\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	servers, search, err := HostResolvConf(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"192.0.2.53:53", "[2001:db8::1]:53"}; !slices.Equal(servers, want) {
		t.Errorf("servers %v, want %v", servers, want)
	}
	if want := []string{"lan", "example.com"}; !slices.Equal(search, want) {
		t.Errorf("search %v, want %v", search, want)
	}

	// A Server without Upstreams takes them from its ResolvConf.
	s := &Server{ResolvConf: path, Log: quiet}
	if got := s.resolveUpstreams(); !slices.Equal(got, servers) {
		t.Errorf("default upstreams %v, want %v", got, servers)
	}

	if _, _, err := HostResolvConf(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file: no error")
	}
}
