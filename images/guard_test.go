package images

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
)

// The dial guard refuses any address the request's context does not name,
// before a connection is attempted.
func TestDialGuard(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	var dials atomic.Int32
	u := newUpstream(nil, func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	})
	target, _ := url.Parse(srv.URL + "/v2/")
	tr, err := u.transport(target)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: tr}
	// No allowance at all, then an allowance for another host.
	ctx, allow := withAllowed(context.Background())
	other, _ := url.Parse("http://127.0.0.1:1/")
	allow.add(other)
	for _, c := range []context.Context{context.Background(), ctx} {
		req, _ := http.NewRequestWithContext(c, "GET", target.String(), nil)
		_, err := client.Do(req)
		if !errors.Is(err, ErrNotAllowed) {
			t.Fatalf("guard let %s through: %v", target.Host, err)
		}
	}
	if dials.Load() != 0 || conns.Load() != 0 {
		t.Fatalf("%d dials reached the dialer, %d connections the server", dials.Load(), conns.Load())
	}
	// Named: it goes through.
	allow.add(target)
	req, _ := http.NewRequestWithContext(ctx, "GET", target.String(), nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("a named host was refused: %v", err)
	}
	resp.Body.Close()
	if conns.Load() != 1 {
		t.Fatalf("%d connections", conns.Load())
	}
}
