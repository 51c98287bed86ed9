package edgeagent

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/logrotate"
)

func TestTailOffset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	os.WriteFile(path, []byte("one\ntwo\nthree\n"), 0o644)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tt := range []struct {
		n    int
		want string
	}{{-1, "one\ntwo\nthree\n"}, {0, ""}, {1, "three\n"}, {2, "two\nthree\n"}, {3, "one\ntwo\nthree\n"}, {10, "one\ntwo\nthree\n"}} {
		st, _ := f.Stat()
		off, err := logrotate.TailOffset(f, st.Size(), tt.n)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		copyFrom(f, off, func(b []byte) error { got = append(got, b...); return nil })
		if string(got) != tt.want {
			t.Errorf("tail %d = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestContainerLimits(t *testing.T) {
	limits := func(c *core.Container, pids int64) core.ContainerResources {
		t.Helper()
		r, err := containerLimits(c, pids)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	c := &core.Container{Resources: core.ResourceRequirements{
		Limits:   core.ResourceList{"memory": "32Mi", "cpu": "250m"},
		Requests: core.ResourceList{"cpu": "100m"},
	}}
	l := limits(c, 512)
	if l.MemoryLimit != 33554432 || l.CPUQuota != 25000 || l.CPUPeriod != cpuPeriod || l.CPUShares != 102 || l.PidsLimit != 512 {
		t.Fatalf("limits %+v", l)
	}
	// Limits without requests request the limits, as in Kubernetes.
	l = limits(&core.Container{Resources: core.ResourceRequirements{Limits: core.ResourceList{"cpu": "2"}}}, 1)
	if l.CPUQuota != 200000 || l.CPUShares != 2048 || l.MemoryLimit != 0 {
		t.Fatalf("limits %+v", l)
	}
	// A tiny cpu limit still gets the kernel's minimum quota.
	if l = limits(&core.Container{Resources: core.ResourceRequirements{Limits: core.ResourceList{"cpu": "1m"}}}, 1); l.CPUQuota != 1000 {
		t.Fatalf("quota %d", l.CPUQuota)
	}
}

// A limit that does not parse fails the container instead of running it
// unlimited, and the error names the container and the field.
func TestContainerLimitsFailClosed(t *testing.T) {
	for _, tt := range []struct {
		name string
		res  core.ResourceRequirements
		want string
	}{
		{"memory", core.ResourceRequirements{Limits: core.ResourceList{"memory": "32MiB"}}, `container "app": resources.limits.memory: quantity "32MiB" has an unknown suffix`},
		{"negative memory", core.ResourceRequirements{Limits: core.ResourceList{"memory": "-1Mi"}}, `container "app": resources.limits.memory: quantity "-1Mi" is negative`},
		{"cpu limit", core.ResourceRequirements{Limits: core.ResourceList{"cpu": "lots"}}, `container "app": resources.limits.cpu: quantity "lots" must start with a number`},
		{"cpu limit out of range", core.ResourceRequirements{Limits: core.ResourceList{"cpu": "1e16"}}, `container "app": resources.limits.cpu: quantity "1e16" is out of range`},
		{"cpu request", core.ResourceRequirements{Requests: core.ResourceList{"cpu": "1x"}}, `container "app": resources.requests.cpu: quantity "1x" has an unknown suffix`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := containerLimits(&core.Container{Name: "app", Resources: tt.res}, 1)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %s...", err, tt.want)
			}
		})
	}
}

func TestContainerID(t *testing.T) {
	p := &core.Pod{Metadata: core.ObjectMeta{Name: "web-abc", UID: "2a93f54c-f4ed-4249-8f44-4bd855f25e38"}}
	if id := containerID(p, "main"); id != "web-abc.main.2a93f54c" {
		t.Fatalf("id %q", id)
	}
	p.Metadata.Name = strings.Repeat("x", 120)
	id := containerID(p, "main")
	if len(id) > 76 || id == containerID(&core.Pod{Metadata: core.ObjectMeta{Name: p.Metadata.Name, UID: "other"}}, "main") {
		t.Fatalf("long id %q (%d)", id, len(id))
	}
}

func TestDefaultNetwork(t *testing.T) {
	b, err := DefaultNetwork("edge0", "10.42.3.0/24", "/var/lib/x")
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(b, &conf); err != nil || len(conf.Plugins) != 2 || conf.Plugins[0]["bridge"] != "edge0" || conf.Plugins[1]["type"] != "portmap" ||
		fmt.Sprint(conf.Plugins[1]["conditionsV4"]) != "[! -d 10.42.3.1/32]" {
		t.Fatalf("conf %s: %v", b, err)
	}
	if _, err := DefaultNetwork("edge0", "10.42.3.0", "/x"); err == nil || !strings.Contains(err.Error(), `pod subnet "10.42.3.0"`) {
		t.Fatalf("bad cidr accepted: %v", err)
	}
}

func TestShouldRestart(t *testing.T) {
	for _, tt := range []struct {
		p    core.RestartPolicy
		code int32
		want bool
	}{{core.RestartAlways, 0, true}, {core.RestartAlways, 1, true}, {core.RestartOnFailure, 0, false},
		{core.RestartOnFailure, 2, true}, {core.RestartNever, 1, false}} {
		if got := shouldRestart(tt.p, tt.code); got != tt.want {
			t.Errorf("shouldRestart(%s, %d) = %v", tt.p, tt.code, got)
		}
	}
	if nextBackoff(0) != 1e9 || nextBackoff(40e9) != maxBackoff {
		t.Fatal("backoff")
	}
}

// A pod namespace is a real network namespace with loopback up, and is
// removed without a trace.
func TestNetNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root (make test runs as root)")
	}
	path := filepath.Join(t.TempDir(), "ns")
	if err := createNetNS(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeNetNS(path) })
	if err := createNetNS(path); err != nil {
		t.Fatalf("creating an existing namespace again: %v", err)
	}
	var addr string
	err := inNetNS(path, func() error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		addr = l.Addr().String()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		t.Fatalf("loopback inside the namespace: %v", err)
	}
	// The listener lived in the pod namespace, not the host's.
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("the pod's listener is reachable from the host namespace")
	}
	if err := removeNetNS(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("namespace file still there: %v", err)
	}
}

// Events survive a restart once flushed, come out in order, ids keep
// increasing after delivered ones are gone, and a burst is written as one
// file (one fsync), not one file per event.
func TestEventQueue(t *testing.T) {
	dir := t.TempDir()
	q, err := openEventQueue(dir, 5)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		q.add(core.PodEvent{Reason: "r" + string(rune('a'+i))})
	}
	if got := q.pending(10); len(got) != 0 {
		t.Fatalf("%d events pending before they are on disk", len(got))
	}
	if wrote, err := q.flush(); !wrote || err != nil {
		t.Fatalf("flush = %v, %v", wrote, err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.json")); len(files) != 1 {
		t.Fatalf("3 events in %d files, want 1", len(files))
	}
	q.add(core.PodEvent{Reason: "lost"}) // recorded, never flushed: a crash loses it
	q, _ = openEventQueue(dir, 5)        // an agent restart
	got := q.pending(10)
	if len(got) != 3 || got[0].Reason != "ra" || got[2].Reason != "rc" || got[0].ID >= got[1].ID {
		t.Fatalf("pending %+v", got)
	}
	q.ack(got[:2])
	if rest := q.pending(10); len(rest) != 1 || rest[0].Reason != "rc" {
		t.Fatalf("after ack %+v", rest)
	}
	q.ack(q.pending(10))
	if files, _ := filepath.Glob(filepath.Join(dir, "*.json")); len(files) != 0 {
		t.Fatalf("%d files left after everything was acknowledged", len(files))
	}
	q, _ = openEventQueue(dir, 5)
	id := q.add(core.PodEvent{Reason: "rd"})
	if id <= got[2].ID {
		t.Fatalf("id %d reused after restart (last was %d)", id, got[2].ID)
	}
	q.flush()
	for i := 0; i < 10; i++ {
		q.add(core.PodEvent{Reason: "flood"})
		q.flush()
	}
	if n := len(q.pending(100)); n != 5 {
		t.Fatalf("%d queued, want the newest 5", n)
	}
	// A file from an agent before batching (one event) still reads.
	os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016d.json", 1)), []byte(`{"id":1,"reason":"old"}`), 0o600)
	q, _ = openEventQueue(dir, 100)
	if p := q.pending(100); len(p) != 6 || p[0].Reason != "old" {
		t.Fatalf("with an old single-event file: %+v", p)
	}
}
