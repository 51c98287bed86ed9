package edgeagent

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/edgeorch/edge/core"
)

// An httpGet probe sends its path, its httpHeaders and, as the kubelet, a
// Host header of the address it probes unless a "Host" header says
// otherwise; a status of 400 or more fails it.
func TestHTTPProbeHeaders(t *testing.T) {
	var got *http.Request
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.WriteHeader(status)
	}))
	defer srv.Close()
	_, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	w := &podWorker{a: &Agent{}}
	pod := &core.Pod{Spec: core.PodSpec{HostNetwork: true}}
	c := &core.Container{Ports: []core.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	probe := func(h *core.HTTPGetAction) error {
		return w.action(context.Background(), pod, c, "id", nil, h, nil)
	}
	if err := probe(&core.HTTPGetAction{Path: "/healthz?full=1", Port: core.IntOrStr("http"),
		HTTPHeaders: []core.HTTPHeader{{Name: "X-Token", Value: "s3cret"}, {Name: "Accept", Value: "application/json"}}}); err != nil {
		t.Fatal(err)
	}
	if got.URL.RequestURI() != "/healthz?full=1" || got.Header.Get("X-Token") != "s3cret" || got.Header.Get("Accept") != "application/json" ||
		got.Host != "127.0.0.1:"+portStr {
		t.Fatalf("request %s host %q headers %v", got.URL, got.Host, got.Header)
	}
	if err := probe(&core.HTTPGetAction{Path: "/", Port: core.IntOrInt(int32(port)), HTTPHeaders: []core.HTTPHeader{{Name: "Host", Value: "ha.local"}}}); err != nil || got.Host != "ha.local" {
		t.Fatalf("Host header: %v, host %q", err, got.Host)
	}
	status = http.StatusServiceUnavailable
	if err := probe(&core.HTTPGetAction{Path: "/", Port: core.IntOrInt(int32(port))}); err == nil {
		t.Fatal("a 503 passed the probe")
	}
}
