package api_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/nettest"
)

func rawGet(t *testing.T, addr, path string) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return c
}

// Idle keep-alive connections are closed, not held forever.
func TestServer_IdleConnectionsClosed(t *testing.T) {
	e := setupWith(t, func(s *api.Server) { s.IdleTimeout = 300 * time.Millisecond })
	c := rawGet(t, e.srv.Address(), "/version")
	if !nettest.ClosedWithin(c, 10*time.Second) {
		t.Fatal("an idle keep-alive connection is still open after 10s (IdleTimeout 300ms)")
	}
}

// No more than MaxConns connections are served at once.
func TestServer_ConnectionLimit(t *testing.T) {
	e := setupWith(t, func(s *api.Server) { s.MaxConns = 2; s.IdleTimeout = time.Minute })
	a := rawGet(t, e.srv.Address(), "/version")
	rawGet(t, e.srv.Address(), "/version")
	// Both are held open and idle: a third connection is not served...
	d := &net.Dialer{Deadline: time.Now().Add(500 * time.Millisecond)}
	if c, err := tls.DialWithDialer(d, "tcp", e.srv.Address(), &tls.Config{InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Fatal("a third connection was served with MaxConns 2")
	}
	// ...until one of them goes.
	a.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if _, err := api.NewClient(e.url, "", e.tls).Version(ctx2); err != nil {
		t.Fatalf("after a connection closed: %v", err)
	}
}

// endless is a log that never ends; it records being closed.
type endless struct{ closed atomic.Bool }

func (r *endless) Read(p []byte) (int, error) {
	if r.closed.Load() {
		return 0, io.EOF
	}
	return len(p), nil
}
func (r *endless) Close() error { r.closed.Store(true); return nil }

type endlessBus struct {
	nullBus
	log *endless
}

func (b endlessBus) Logs(context.Context, string, core.LogRequest) (io.ReadCloser, error) {
	return b.log, nil
}

// A client that stops reading a followed log is dropped after the write
// timeout, and the stream at the node is closed.
func TestServer_StalledLogReaderIsDropped(t *testing.T) {
	log := &endless{}
	e := setupWith(t, func(s *api.Server) {
		s.WriteTimeout = 300 * time.Millisecond
		s.Bus = endlessBus{log: log}
	})
	ctx := context.Background()
	if _, err := e.admin.Apply(ctx, []core.ManifestFile{{Name: "p.yaml", Data: []byte(`apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {nodeName: n1, containers: [{name: c, image: busybox}]}
`)}}); err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", e.srv.Address(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /api/v1/pods/p/log?follow=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-secret\r\n\r\n")
	// Never read. The server fills the socket, then must give up.
	deadline := time.Now().Add(20 * time.Second)
	for !log.closed.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the server still writes to a client that stopped reading 20s ago (WriteTimeout 300ms)")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// silent is a log whose node never sends anything; it records being closed.
type silent struct {
	opened, closed chan struct{}
	once           sync.Once
}

func (r *silent) Read(p []byte) (int, error) { <-r.closed; return 0, io.EOF }
func (r *silent) Close() error               { r.once.Do(func() { close(r.closed) }); return nil }

type silentBus struct {
	nullBus
	log *silent
}

func (b silentBus) Logs(context.Context, string, core.LogRequest) (io.ReadCloser, error) {
	close(b.log.opened)
	return b.log, nil
}

// A client that leaves a log request while its node sends nothing ends the
// stream (it used to hold a goroutine and the node's stream for good).
func TestServer_AbandonedLogRequestEnds(t *testing.T) {
	log := &silent{opened: make(chan struct{}), closed: make(chan struct{})}
	e := setupWith(t, func(s *api.Server) { s.Bus = silentBus{log: log} })
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := e.admin.Apply(ctx, []core.ManifestFile{{Name: "p.yaml", Data: []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {nodeName: n1, containers: [{name: c, image: busybox}]}\n")}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if rc, err := e.admin.Logs(ctx, "default", "p", "", true, -1); err == nil {
			io.Copy(io.Discard, rc)
		}
	}()
	<-log.opened
	cancel()
	select {
	case <-log.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the node's log stream is still open 10 s after its client left")
	}
	<-done
}
