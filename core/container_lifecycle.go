package core

import (
	"fmt"
	"strings"
)

// A container's lifecycle beyond its process: init containers that run
// before it (sidecars among them, which keep running), a startup probe that holds back the other probes, hooks run
// after it starts and before it stops, the file it leaves a termination
// message in, and how its mounts propagate.

// Lifecycle holds a container's hooks.
type Lifecycle struct {
	// PostStart runs right after the container starts; if it fails the
	// container is killed and restarted per the pod's restartPolicy.
	PostStart *LifecycleHandler `json:"postStart,omitempty"`
	// PreStop runs before the stop signal when the pod is deleted, within
	// its grace period.
	PreStop *LifecycleHandler `json:"preStop,omitempty"`
}

// LifecycleHandler is one hook's action: exactly one is set.
type LifecycleHandler struct {
	Exec    *ExecAction    `json:"exec,omitempty"`
	HTTPGet *HTTPGetAction `json:"httpGet,omitempty"`
	// TCPSocket is deprecated in Kubernetes (whose kubelet fails such a
	// hook); here it connects, and warns.
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"`
	Sleep     *SleepAction     `json:"sleep,omitempty"`
}

// SleepAction waits Seconds.
type SleepAction struct {
	Seconds int64 `json:"seconds"`
}

// Termination message defaults, as in Kubernetes.
const (
	DefaultTerminationMessagePath = "/dev/termination-log"
	TerminationMessageReadFile    = "File"
	TerminationMessageFallback    = "FallbackToLogsOnError"
)

// Mount propagation modes, as in Kubernetes.
const (
	PropagationNone            = "None"
	PropagationHostToContainer = "HostToContainer"
	PropagationBidirectional   = "Bidirectional"
)

// MessagePath returns the container's termination message path.
func (c *Container) MessagePath() string {
	if c.TerminationMessagePath == "" {
		return DefaultTerminationMessagePath
	}
	return c.TerminationMessagePath
}

// EachContainer calls f for every container of the pod, init containers
// first (in their order), then the containers.
func (s *PodSpec) EachContainer(f func(c *Container, init bool)) {
	for i := range s.InitContainers {
		f(&s.InitContainers[i], true)
	}
	for i := range s.Containers {
		f(&s.Containers[i], false)
	}
}

// ContainersAndSidecars returns the containers that run for the pod's
// life: its containers, then its sidecars (whose ports publish as theirs).
func (s *PodSpec) ContainersAndSidecars() []*Container {
	out := make([]*Container, 0, len(s.Containers))
	for i := range s.Containers {
		out = append(out, &s.Containers[i])
	}
	for i := range s.InitContainers {
		if s.InitContainers[i].IsSidecar() {
			out = append(out, &s.InitContainers[i])
		}
	}
	return out
}

// Images returns the images of the pod's containers and init containers,
// each once, in order.
func (s *PodSpec) Images() []string {
	var out []string
	s.EachContainer(func(c *Container, _ bool) {
		if !contains(out, c.Image) {
			out = append(out, c.Image)
		}
	})
	return out
}

// defaultContainer fills what a container may omit. Termination message
// fields are left empty (meaning their defaults): filling them would change
// the template hash of every stored Deployment and roll it out.
func defaultContainer(c *Container) {
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = PullIfNotPresent
	}
	for j := range c.Ports {
		if c.Ports[j].Protocol == "" {
			c.Ports[j].Protocol = "TCP"
		}
	}
	for _, p := range []*Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p == nil {
			continue
		}
		if p.PeriodSeconds == 0 {
			p.PeriodSeconds = 10
		}
		if p.TimeoutSeconds == 0 {
			p.TimeoutSeconds = 1
		}
		if p.SuccessThreshold == 0 {
			p.SuccessThreshold = 1
		}
		if p.FailureThreshold == 0 {
			p.FailureThreshold = 3
		}
		if p.HTTPGet != nil && p.HTTPGet.Path == "" {
			p.HTTPGet.Path = "/"
		}
	}
	if lc := c.Lifecycle; lc != nil {
		for _, h := range []*LifecycleHandler{lc.PostStart, lc.PreStop} {
			if h != nil && h.HTTPGet != nil && h.HTTPGet.Path == "" {
				h.HTTPGet.Path = "/"
			}
		}
	}
}

// ContainerRestartAlways is the only restartPolicy a container may have:
// on an init container it makes it a sidecar.
const ContainerRestartAlways = "Always"

// IsSidecar reports whether c, an init container, is a sidecar (KEP-753):
// it starts in its place in the init sequence, the next one starts once it
// has started, and it runs, restarted whenever it exits, for the pod's life.
func (c *Container) IsSidecar() bool { return c.RestartPolicy == ContainerRestartAlways }

// validateInitContainers checks the init containers as containers, with
// names unique among all of the pod's (names holds the containers').
func validateInitContainers(path string, s *PodSpec, volumes map[string]bool, names map[string]bool) error {
	if n := len(s.InitContainers); n > maxContainers {
		return invalid(path+".initContainers", "%d init containers (at most %d)", n, maxContainers)
	}
	for i := range s.InitContainers {
		c := &s.InitContainers[i]
		p := fmt.Sprintf("%s.initContainers[%d]", path, i)
		if err := validateDNSLabel(p+".name", c.Name); err != nil {
			return err
		}
		if names[c.Name] {
			return invalid(p+".name", "duplicate container name %q (init containers and containers share names)", c.Name)
		}
		names[c.Name] = true
		if c.RestartPolicy != "" && !c.IsSidecar() {
			return invalid(p+".restartPolicy", "%q: an init container's restartPolicy can only be Always (a sidecar)", c.RestartPolicy)
		}
		if !c.IsSidecar() {
			for _, f := range []struct {
				name string
				set  bool
			}{{"livenessProbe", c.LivenessProbe != nil}, {"readinessProbe", c.ReadinessProbe != nil},
				{"startupProbe", c.StartupProbe != nil}, {"lifecycle", c.Lifecycle != nil}} {
				if f.set {
					return invalid(p+"."+f.name, "may not be set for init containers (they run to completion), only for sidecars (restartPolicy: Always)")
				}
			}
		}
		if err := validateContainer(p, c, volumes); err != nil {
			return err
		}
	}
	return nil
}

// validateContainerLifecycle checks what a container has beyond its
// process: startup probe, hooks, termination message, mount propagation.
func validateContainerLifecycle(p string, c *Container) error {
	if c.RestartPolicy != "" && !strings.Contains(p, "initContainers[") {
		// Kubernetes 1.34's per-container restart rules (KEP-5307) are not
		// supported: a container restarts per the pod's restartPolicy.
		return invalid(p+".restartPolicy", "may only be set for init containers (Always: a sidecar); a container restarts per the pod's restartPolicy")
	}
	if pr := c.StartupProbe; pr != nil && pr.SuccessThreshold != 1 {
		return invalid(p+".startupProbe.successThreshold", "%d: must be 1", pr.SuccessThreshold)
	}
	if lc := c.Lifecycle; lc != nil {
		for _, h := range []struct {
			name    string
			handler *LifecycleHandler
		}{{"postStart", lc.PostStart}, {"preStop", lc.PreStop}} {
			if h.handler == nil {
				continue
			}
			if err := validateHandler(p+".lifecycle."+h.name, h.handler); err != nil {
				return err
			}
		}
	}
	if mp := c.TerminationMessagePath; mp != "" && !strings.HasPrefix(mp, "/") {
		return invalid(p+".terminationMessagePath", "%q must be an absolute path", mp)
	}
	switch c.TerminationMessagePolicy {
	case "", TerminationMessageReadFile, TerminationMessageFallback:
	default:
		return invalid(p+".terminationMessagePolicy", "%q: must be File or FallbackToLogsOnError", c.TerminationMessagePolicy)
	}
	for i, m := range c.VolumeMounts {
		mp := fmt.Sprintf("%s.volumeMounts[%d].mountPropagation", p, i)
		switch m.MountPropagation {
		case "", PropagationNone, PropagationHostToContainer:
		case PropagationBidirectional:
			if sc := c.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged {
				return invalid(mp, "Bidirectional is only allowed for privileged containers (securityContext.privileged: true)")
			}
		default:
			return invalid(mp, "%q: must be None, HostToContainer or Bidirectional", m.MountPropagation)
		}
	}
	return nil
}

func validateHandler(p string, h *LifecycleHandler) error {
	n := 0
	if h.Exec != nil {
		n++
		if len(h.Exec.Command) == 0 {
			return invalid(p+".exec.command", "required")
		}
	}
	if h.HTTPGet != nil {
		n++
		if err := validatePort(p+".httpGet.port", h.HTTPGet.Port); err != nil {
			return err
		}
		if s := h.HTTPGet.Scheme; s != "" && s != "HTTP" && s != "HTTPS" {
			return invalid(p+".httpGet.scheme", "%q: must be HTTP or HTTPS", s)
		}
		if err := validateHTTPHeaders(p+".httpGet.httpHeaders", h.HTTPGet.HTTPHeaders); err != nil {
			return err
		}
	}
	if h.TCPSocket != nil {
		n++
		if err := validatePort(p+".tcpSocket.port", h.TCPSocket.Port); err != nil {
			return err
		}
	}
	if h.Sleep != nil {
		n++
		if h.Sleep.Seconds < 1 {
			return invalid(p+".sleep.seconds", "%d: must be at least 1", h.Sleep.Seconds)
		}
	}
	if n != 1 {
		return invalid(p, "exactly one of exec, httpGet, sleep or tcpSocket is required")
	}
	return nil
}

// lifecycleWarnings names the hook fields that do not behave as in
// Kubernetes.
func lifecycleWarnings(prefix string, s *PodSpec) []string {
	var w []string
	for _, list := range []struct {
		field string
		ctrs  []Container
	}{{"initContainers", s.InitContainers}, {"containers", s.Containers}} { // a sidecar has hooks too
		for i, c := range list.ctrs {
			lc := c.Lifecycle
			if lc == nil {
				continue
			}
			for _, h := range []struct {
				name    string
				handler *LifecycleHandler
			}{{"postStart", lc.PostStart}, {"preStop", lc.PreStop}} {
				if h.handler != nil && h.handler.TCPSocket != nil {
					w = append(w, fmt.Sprintf("%s.%s[%d].lifecycle.%s.tcpSocket: deprecated in Kubernetes (whose kubelet fails it); here the hook connects to the port", prefix, list.field, i, h.name))
				}
			}
		}
	}
	return w
}
