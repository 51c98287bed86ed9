package edgeagent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgeorch/edge/core"
)

// probeState tracks a container's startup, readiness and liveness probes.
type probeState struct {
	nextReady, nextLive      time.Time
	readyOK, readyFail, live int
	// started: the startup probe succeeded (or there is none) since the
	// container's last start.
	started   bool
	nextStart time.Time
	startFail int
}

// startedUp reports whether c counts as started: it has no startup probe,
// or that succeeded.
func startedUp(c *core.Container, st *ctrState) bool {
	return c.StartupProbe == nil || st.probes.started
}

// readyWithoutProbe reports whether c is ready as soon as it runs: no
// readiness probe, started up, and its postStart hook done.
func readyWithoutProbe(c *core.Container, st *ctrState) bool {
	return c.ReadinessProbe == nil && startedUp(c, st) && st.hook == nil
}

// probe runs the container's due probes and returns when the next is due
// (0 if it has none). Until its startup probe succeeds only that runs; no
// probe runs before its postStart hook is done.
func (w *podWorker) probe(pod *core.Pod, c *core.Container, st *ctrState) time.Duration {
	if st.running == nil || st.hook != nil || (c.ReadinessProbe == nil && c.LivenessProbe == nil && c.StartupProbe == nil) {
		return 0
	}
	now := w.a.Now()
	started := now
	if st.running.StartedAt != nil {
		started = st.running.StartedAt.Time
	}
	next := time.Duration(0)
	schedule := func(at time.Time) {
		if d := at.Sub(now); next == 0 || d < next {
			next = max(d, 10*time.Millisecond)
		}
	}
	if p := c.StartupProbe; p != nil && !st.probes.started {
		ps := &st.probes
		if ps.nextStart.IsZero() {
			ps.nextStart = started.Add(time.Duration(p.InitialDelaySeconds) * time.Second)
		}
		if !now.Before(ps.nextStart) {
			if err := w.runProbe(pod, c, p); err == nil {
				ps.started, ps.startFail = true, 0
				// The other probes start now, their initial delays
				// counted from the container's start, as the kubelet.
				ps.nextReady, ps.nextLive = time.Time{}, time.Time{}
				if readyWithoutProbe(c, st) {
					st.ready = true
				}
			} else if ps.startFail++; ps.startFail >= int(p.FailureThreshold) {
				w.a.Log.Info("startup probe failed; restarting container", "pod", w.namespace+"/"+w.name, "container", c.Name, "err", err)
				w.event(c.Name, core.EventWarning, "Unhealthy", "Startup probe failed %d times: %v; restarting the container", p.FailureThreshold, err)
				w.killForRestart(pod, c)
				ps.startFail = 0
			}
			ps.nextStart = now.Add(time.Duration(p.PeriodSeconds) * time.Second)
		}
		if !ps.started {
			schedule(ps.nextStart)
			return next
		}
	}
	if p := c.ReadinessProbe; p != nil {
		ps := &st.probes
		if ps.nextReady.IsZero() {
			ps.nextReady = started.Add(time.Duration(p.InitialDelaySeconds) * time.Second)
		}
		if !now.Before(ps.nextReady) {
			if err := w.runProbe(pod, c, p); err == nil {
				ps.readyOK, ps.readyFail = ps.readyOK+1, 0
				if ps.readyOK >= int(p.SuccessThreshold) {
					st.ready = true
				}
			} else {
				ps.readyOK, ps.readyFail = 0, ps.readyFail+1
				if ps.readyFail >= int(p.FailureThreshold) {
					st.ready = false
				}
			}
			ps.nextReady = now.Add(time.Duration(p.PeriodSeconds) * time.Second)
		}
		schedule(ps.nextReady)
	}
	if p := c.LivenessProbe; p != nil {
		ps := &st.probes
		if ps.nextLive.IsZero() {
			ps.nextLive = started.Add(time.Duration(p.InitialDelaySeconds) * time.Second)
		}
		if !now.Before(ps.nextLive) {
			if err := w.runProbe(pod, c, p); err == nil {
				ps.live = 0
			} else if ps.live++; ps.live >= int(p.FailureThreshold) {
				w.a.Log.Info("liveness probe failed; restarting container", "pod", w.namespace+"/"+w.name, "container", c.Name, "err", err)
				w.event(c.Name, core.EventWarning, "Unhealthy", "Liveness probe failed %d times: %v; restarting the container", p.FailureThreshold, err)
				w.killForRestart(pod, c)
				ps.live = 0
			}
			ps.nextLive = now.Add(time.Duration(p.PeriodSeconds) * time.Second)
		}
		schedule(ps.nextLive)
	}
	return next
}

// killForRestart kills a container that failed its liveness probe; its
// exit then restarts it per policy, as for any crash.
func (w *podWorker) killForRestart(pod *core.Pod, c *core.Container) {
	w.a.rt.Signal(w.a.ctx, containerID(pod, c.Name), syscall.SIGKILL)
}

func (w *podWorker) port(c *core.Container, v core.IntOrString) (int, error) {
	if !v.IsString {
		return int(v.IntVal), nil
	}
	for _, p := range c.Ports {
		if p.Name == v.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("no container port named %q", v.StrVal)
}

// dial connects to port in the pod: through the pod IP when it has one,
// otherwise from inside its network namespace.
func (w *podWorker) dial(ctx context.Context, pod *core.Pod, host string, port int) (net.Conn, error) {
	var d net.Dialer
	w.mu.Lock()
	ip := w.podIP
	w.mu.Unlock()
	switch {
	case host != "":
		return d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	case pod.Spec.HostNetwork:
		return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	case ip != "":
		return d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	}
	var conn net.Conn
	err := inNetNS(w.netnsPath, func() error {
		var err error
		conn, err = d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		return err
	})
	return conn, err
}

func (w *podWorker) runProbe(pod *core.Pod, c *core.Container, p *core.Probe) error {
	ctx, cancel := context.WithTimeout(w.a.ctx, time.Duration(p.TimeoutSeconds)*time.Second)
	defer cancel()
	return w.action(ctx, pod, c, containerID(pod, c.Name), p.Exec, p.HTTPGet, p.TCPSocket)
}

// action runs a probe's or a hook's check against container id of pod:
// the one of exec, httpGet or tcpSocket that is set.
func (w *podWorker) action(ctx context.Context, pod *core.Pod, c *core.Container, id string,
	exec *core.ExecAction, httpGet *core.HTTPGetAction, tcpSocket *core.TCPSocketAction) error {
	switch {
	case tcpSocket != nil:
		port, err := w.port(c, tcpSocket.Port)
		if err != nil {
			return err
		}
		conn, err := w.dial(ctx, pod, tcpSocket.Host, port)
		if err != nil {
			return err
		}
		return conn.Close()
	case httpGet != nil:
		port, err := w.port(c, httpGet.Port)
		if err != nil {
			return err
		}
		scheme := "http"
		if httpGet.Scheme == "HTTPS" {
			scheme = "https"
		}
		client := &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return w.dial(ctx, pod, httpGet.Host, port)
			},
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // as the kubelet: probes check liveness, not identity
			DisableKeepAlives: true,
		}}
		req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s://probe:%d%s", scheme, port, httpGet.Path), nil)
		if err != nil {
			return err
		}
		// The Host header the kubelet sends: the probe's host, else the
		// pod's address (a virtual host keyed on "probe" would 404).
		host := httpGet.Host
		if host == "" && !pod.Spec.HostNetwork {
			w.mu.Lock()
			host = w.podIP
			w.mu.Unlock()
		}
		if host == "" {
			host = "127.0.0.1"
		}
		req.Host = net.JoinHostPort(host, strconv.Itoa(port))
		req.Header.Set("User-Agent", "edge-probe/1.0")
		for _, h := range httpGet.HTTPHeaders {
			if strings.EqualFold(h.Name, "Host") {
				req.Host = h.Value
				continue
			}
			req.Header.Add(h.Name, h.Value)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe failed with status %d", resp.StatusCode)
		}
		return nil
	case exec != nil:
		return w.execProbe(ctx, id, exec.Command)
	}
	return nil
}

func (w *podWorker) execProbe(ctx context.Context, id string, cmd []string) error {
	code, err := w.a.rt.Exec(ctx, id, cmd)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("command %s exited with %d", cmd[0], code)
	}
	return nil
}
