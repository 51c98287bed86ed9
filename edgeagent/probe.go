package edgeagent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/edgeorch/edge/core"
)

// probeState tracks a container's readiness and liveness probes.
type probeState struct {
	nextReady, nextLive      time.Time
	readyOK, readyFail, live int
}

// probe runs the container's due probes and returns when the next is due
// (0 if it has none).
func (w *podWorker) probe(pod *core.Pod, c *core.Container, st *ctrState) time.Duration {
	if st.running == nil || (c.ReadinessProbe == nil && c.LivenessProbe == nil) {
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
	switch {
	case p.TCPSocket != nil:
		port, err := w.port(c, p.TCPSocket.Port)
		if err != nil {
			return err
		}
		conn, err := w.dial(ctx, pod, p.TCPSocket.Host, port)
		if err != nil {
			return err
		}
		return conn.Close()
	case p.HTTPGet != nil:
		port, err := w.port(c, p.HTTPGet.Port)
		if err != nil {
			return err
		}
		scheme := "http"
		if p.HTTPGet.Scheme == "HTTPS" {
			scheme = "https"
		}
		client := &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return w.dial(ctx, pod, p.HTTPGet.Host, port)
			},
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // as the kubelet: probes check liveness, not identity
			DisableKeepAlives: true,
		}}
		req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s://probe:%d%s", scheme, port, p.HTTPGet.Path), nil)
		if err != nil {
			return err
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
	case p.Exec != nil:
		return w.execProbe(ctx, pod, c, p.Exec.Command)
	}
	return nil
}

func (w *podWorker) execProbe(ctx context.Context, pod *core.Pod, c *core.Container, cmd []string) error {
	code, err := w.a.rt.Exec(ctx, containerID(pod, c.Name), cmd)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("exec probe exited with %d", code)
	}
	return nil
}
