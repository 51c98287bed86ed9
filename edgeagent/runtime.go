package edgeagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/edgeorch/edge/core"
)

// Labels on containerd containers: everything needed to adopt a container
// after an agent restart, without any other state.
const (
	labelPodUID       = "edge.pod.uid"
	labelPodName      = "edge.pod.name"
	labelPodNamespace = "edge.pod.namespace"
	labelContainer    = "edge.container.name"
	labelSpecHash     = "edge.container.hash"
	labelRestarts     = "edge.restarts"
	labelStartedAt    = "edge.started.at"
	labelNetNS        = "edge.pod.netns"
	labelPodIP        = "edge.pod.ip"
)

// containerID names a pod's container in containerd: readable in
// `ctr containers ls`, unique by pod UID, within containerd's 76 characters.
func containerID(p *core.Pod, container string) string {
	uid := strings.ReplaceAll(p.Metadata.UID, "-", "")
	if len(uid) > 8 {
		uid = uid[:8]
	}
	id := p.Metadata.Name + "." + container + "." + uid
	if len(id) > 76 {
		sum := sha256.Sum256([]byte(id))
		id = id[:76-17] + "." + hex.EncodeToString(sum[:8])
	}
	return id
}

// specHash identifies what a container was created from.
func specHash(c *core.Container) string { return core.Hash(c) }

// limits are a container's cgroup settings.
type limits struct {
	memory   int64 // bytes, 0 = unlimited
	cpuQuota int64 // microseconds per period, 0 = unlimited
	shares   uint64
	pids     int64
}

const cpuPeriod = 100000 // microseconds, the kernel default

func containerLimits(c *core.Container, pids int64) limits {
	l := limits{pids: pids, shares: 2}
	if q := c.Resources.Limits["memory"]; q != "" {
		l.memory, _ = q.Value()
	}
	if q := c.Resources.Limits["cpu"]; q != "" {
		m, _ := q.MilliValue()
		l.cpuQuota = m * cpuPeriod / 1000
		if l.cpuQuota < 1000 {
			l.cpuQuota = 1000 // the kernel's minimum quota is 1ms
		}
	}
	req := c.Resources.Requests["cpu"]
	if req == "" {
		req = c.Resources.Limits["cpu"]
	}
	if req != "" {
		m, _ := req.MilliValue()
		l.shares = max(uint64(m)*1024/1000, 2) // as the kubelet converts requests to shares
	}
	return l
}

// specOpts builds the OCI spec options of a pod's container.
func (a *Agent) specOpts(p *core.Pod, c *core.Container, img containerd.Image, netnsPath, podDir string) ([]oci.SpecOpts, error) {
	opts := []oci.SpecOpts{oci.WithImageConfig(img)}
	switch {
	case len(c.Command) > 0:
		opts = append(opts, oci.WithProcessArgs(append(append([]string{}, c.Command...), c.Args...)...))
	case len(c.Args) > 0:
		opts = append(opts, oci.WithImageConfigArgs(img, c.Args))
	}
	env := []string{}
	for _, e := range c.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	if len(env) > 0 {
		opts = append(opts, oci.WithEnv(env))
	}
	if c.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(c.WorkingDir))
	}
	l := containerLimits(c, a.PidsLimit)
	if l.memory > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(l.memory)))
	}
	if l.cpuQuota > 0 {
		opts = append(opts, oci.WithCPUCFS(l.cpuQuota, cpuPeriod))
	}
	opts = append(opts, oci.WithCPUShares(l.shares), oci.WithPidsLimit(l.pids),
		oci.WithCgroup(a.cgroupPath(containerID(p, c.Name))))
	if p.Spec.HostNetwork {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostHostsFile, oci.WithHostResolvconf)
	} else {
		opts = append(opts, oci.WithHostname(p.Metadata.Name),
			oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: netnsPath}))
		mounts := []specs.Mount{
			{Destination: "/etc/hosts", Type: "bind", Source: filepath.Join(podDir, "hosts"), Options: []string{"rbind", "ro"}},
			{Destination: "/etc/hostname", Type: "bind", Source: filepath.Join(podDir, "hostname"), Options: []string{"rbind", "ro"}},
		}
		if _, err := os.Stat("/etc/resolv.conf"); err == nil {
			mounts = append(mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: "/etc/resolv.conf", Options: []string{"rbind", "ro"}})
		}
		opts = append(opts, oci.WithMounts(mounts))
	}
	vols, err := a.volumeMounts(p, c, podDir)
	if err != nil {
		return nil, err
	}
	if len(vols) > 0 {
		opts = append(opts, oci.WithMounts(vols))
	}
	if sc := c.SecurityContext; sc != nil && sc.Privileged != nil && *sc.Privileged {
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices)
	}
	return opts, nil
}

// cgroupPath puts each container under the agent's cgroup parent.
func (a *Agent) cgroupPath(id string) string {
	return a.CgroupParent + "/" + id
}

func (a *Agent) volumeMounts(p *core.Pod, c *core.Container, podDir string) ([]specs.Mount, error) {
	vols := map[string]core.Volume{}
	for _, v := range p.Spec.Volumes {
		vols[v.Name] = v
	}
	var out []specs.Mount
	for _, m := range c.VolumeMounts {
		v := vols[m.Name]
		var src string
		switch {
		case v.HostPath != nil:
			src = v.HostPath.Path
			switch v.HostPath.Type {
			case "DirectoryOrCreate":
				if err := os.MkdirAll(src, 0o755); err != nil {
					return nil, fmt.Errorf("volume %q: %w", m.Name, err)
				}
			case "FileOrCreate":
				f, err := os.OpenFile(src, os.O_CREATE|os.O_RDONLY, 0o644)
				if err != nil {
					return nil, fmt.Errorf("volume %q: %w", m.Name, err)
				}
				f.Close()
			case "":
			default:
				if _, err := os.Stat(src); err != nil {
					return nil, fmt.Errorf("volume %q: hostPath %s: %w", m.Name, src, err)
				}
			}
		case v.EmptyDir != nil:
			src = filepath.Join(podDir, "volumes", v.Name)
			if err := os.MkdirAll(src, 0o777); err != nil {
				return nil, fmt.Errorf("volume %q: %w", m.Name, err)
			}
		}
		if m.SubPath != "" {
			src = filepath.Join(src, m.SubPath)
			if err := os.MkdirAll(src, 0o755); err != nil {
				return nil, fmt.Errorf("volume %q subPath: %w", m.Name, err)
			}
		}
		opts := []string{"rbind", "rprivate"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		out = append(out, specs.Mount{Destination: m.MountPath, Type: "bind", Source: src, Options: opts})
	}
	return out, nil
}

// ensureImage returns the image for ref, pulling it per policy. An image
// already in the namespace is never pulled for IfNotPresent; for Always a
// failed pull falls back to the local copy, so a node on a dead link keeps
// starting its pods.
func (a *Agent) ensureImage(ctx context.Context, ref string, policy core.PullPolicy) (containerd.Image, error) {
	name := core.NormalizeImage(ref)
	img, err := a.client.GetImage(ctx, name)
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	if img != nil && policy != core.PullAlways {
		return img, a.unpack(ctx, img)
	}
	if img == nil && policy == core.PullNever {
		return nil, &pullError{reason: "ErrImageNeverPull", msg: fmt.Sprintf("image %q is not present and imagePullPolicy is Never", ref)}
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	pulled, perr := a.client.Pull(pctx, name, containerd.WithPullUnpack)
	if perr == nil {
		return pulled, nil
	}
	if img != nil {
		a.Log.Warn("pull failed; using the local copy", "image", ref, "err", perr)
		return img, a.unpack(ctx, img)
	}
	return nil, &pullError{reason: "ErrImagePull", msg: fmt.Sprintf("pull %q: %v", ref, perr)}
}

func (a *Agent) unpack(ctx context.Context, img containerd.Image) error {
	ok, err := img.IsUnpacked(ctx, "")
	if err != nil || ok {
		return err
	}
	return img.Unpack(ctx, "")
}

type pullError struct{ reason, msg string }

func (e *pullError) Error() string { return e.msg }

// stopTask stops a task: SIGTERM, then SIGKILL after grace, then deletes it.
func stopTask(ctx context.Context, task containerd.Task, grace time.Duration) {
	st, err := task.Status(ctx)
	if err == nil && st.Status != containerd.Stopped {
		wctx, cancel := context.WithCancel(ctx)
		exited, err := task.Wait(wctx)
		if err == nil {
			if grace > 0 {
				task.Kill(ctx, syscall.SIGTERM, containerd.WithKillAll)
				select {
				case <-exited:
				case <-time.After(grace):
				case <-ctx.Done():
				}
			}
			task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
			}
		}
		cancel()
	}
	task.Delete(ctx, containerd.WithProcessKill)
}

// removeContainer stops and deletes a container and its snapshot.
func removeContainer(ctx context.Context, c containerd.Container, grace time.Duration) error {
	if task, err := c.Task(ctx, nil); err == nil {
		stopTask(ctx, task, grace)
	}
	err := c.Delete(ctx, containerd.WithSnapshotCleanup)
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// newTask creates and starts a container's task, logging to logPath.
func newTask(ctx context.Context, c containerd.Container, logPath string) (containerd.Task, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	task, err := c.NewTask(ctx, cio.LogFile(logPath))
	if err != nil {
		return nil, err
	}
	if err := task.Start(ctx); err != nil {
		task.Delete(ctx, containerd.WithProcessKill)
		return nil, err
	}
	return task, nil
}

func atoi32(s string) int32 {
	n, _ := strconv.Atoi(s)
	return int32(n)
}
