package edgeagent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/edgeorch/edge/core"
)

// Labels on runtime containers: everything needed to adopt a container
// after an agent restart, without any other state.
const (
	labelPodUID       = "edge.pod.uid"
	labelPodName      = "edge.pod.name"
	labelPodNamespace = "edge.pod.namespace"
	labelContainer    = "edge.container.name"
	labelRestarts     = "edge.restarts"
	labelStartedAt    = "edge.started.at"
	labelNetNS        = "edge.pod.netns"
	labelPodIP        = "edge.pod.ip"
	// labelGrace keeps the pod's grace period (seconds) for an agent that
	// removes the container without knowing the pod (adopted, and no
	// longer wanted).
	labelGrace = "edge.pod.grace"
	// labelSidecar marks a sidecar with its place among the pod's init
	// containers: an agent that removes it without knowing the pod still
	// stops it after the containers, and sidecars in reverse order.
	labelSidecar = "edge.sidecar"
)

// containerID names a pod's container in the runtime: readable in
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

func atoi32(s string) int32 {
	n, _ := strconv.Atoi(s)
	return int32(n)
}

const cpuPeriod = 100000 // microseconds, the kernel default

// containerLimits converts a container's resources into cgroup limits. A
// quantity that does not parse is an error naming the container and field:
// running the container unlimited instead would let one bad manifest take
// a Pi's memory from every other pod.
func containerLimits(c *core.Container, pids int64) (core.ContainerResources, error) {
	r := core.ContainerResources{PidsLimit: pids, CPUShares: 2, CPUPeriod: cpuPeriod}
	bad := func(field string, err error) error {
		return fmt.Errorf("container %q: %s: %v", c.Name, field, err)
	}
	if q := c.Resources.Limits["memory"]; q != "" {
		v, err := q.Value()
		if err == nil && v < 0 {
			err = fmt.Errorf("quantity %q is negative", string(q))
		}
		if err != nil {
			return r, bad("resources.limits.memory", err)
		}
		r.MemoryLimit = v
	}
	if q := c.Resources.Limits["cpu"]; q != "" {
		m, err := q.MilliValue()
		if err == nil && (m < 0 || m > math.MaxInt64/cpuPeriod) {
			err = fmt.Errorf("quantity %q is out of range", string(q))
		}
		if err != nil {
			return r, bad("resources.limits.cpu", err)
		}
		if m > 0 {
			r.CPUQuota = max(m*cpuPeriod/1000, 1000) // the kernel's minimum quota is 1ms
		}
	}
	field, req := "resources.requests.cpu", c.Resources.Requests["cpu"]
	if req == "" {
		field, req = "resources.limits.cpu", c.Resources.Limits["cpu"]
	}
	if req != "" {
		m, err := req.MilliValue()
		if err == nil && m < 0 {
			err = fmt.Errorf("quantity %q is negative", string(req))
		}
		if err != nil {
			return r, bad(field, err)
		}
		r.CPUShares = max(uint64(m)*1024/1000, 2) // as the kubelet converts requests to shares
	}
	return r, nil
}

// containerConfig is what the runtime creates a pod's container from.
// Volume directories are made here, on the node, before the runtime needs
// them.
func (w *podWorker) containerConfig(pod *core.Pod, c *core.Container, image string) (*core.ContainerConfig, error) {
	res, err := containerLimits(c, w.a.PidsLimit)
	if err != nil {
		return nil, err
	}
	vols, err := w.volumeMounts(pod, c)
	if err != nil {
		return nil, err
	}
	env, err := w.containerEnv(pod, c)
	if err != nil {
		return nil, err
	}
	msg, err := w.terminationMount(c)
	if err != nil {
		return nil, fmt.Errorf("termination message file: %w", err)
	}
	resolv, ownResolv := w.a.podResolvConf(pod)
	if ownResolv && pod.Spec.HostNetwork { // no setupNetwork writes it
		if err := os.MkdirAll(w.podDir(), 0o755); err != nil {
			return nil, err
		}
		if err := writeIfChanged(filepath.Join(w.podDir(), "resolv.conf"), string(resolv)); err != nil {
			return nil, fmt.Errorf("resolv.conf: %w", err)
		}
	}
	labels := map[string]string{
		labelPodUID: pod.Metadata.UID, labelPodName: pod.Metadata.Name, labelPodNamespace: pod.Metadata.Namespace,
		labelContainer: c.Name, labelRestarts: "0",
		labelGrace: strconv.FormatInt(pod.Spec.GracePeriod(), 10),
	}
	if i := sidecarIndex(pod, c.Name); i >= 0 {
		labels[labelSidecar] = strconv.Itoa(i)
	}
	cfg := &core.ContainerConfig{
		ID: containerID(pod, c.Name), Image: image, Labels: labels,
		Command: c.Command, Args: c.Args, WorkingDir: c.WorkingDir,
		HostNetwork: pod.Spec.HostNetwork, Resources: res,
		Mounts: append(append(podFileMounts(pod, w.podDir(), ownResolv), vols...), msg),
	}
	cfg.Env = env
	if cfg.Devices, err = devices(pod, c); err != nil {
		return nil, err
	}
	if !pod.Spec.HostNetwork {
		cfg.Hostname = pod.Metadata.Name
		if pod.Spec.Hostname != "" {
			cfg.Hostname = pod.Spec.Hostname
		}
		cfg.NetNSPath = w.netnsPath
		labels[labelNetNS] = w.netnsPath
	}
	applySecurity(cfg, &pod.Spec, c)
	return cfg, nil
}

// podFileMounts are the files every container of a pod sees: the node's
// hosts with hostNetwork, otherwise the pod's own hosts and hostname
// (written by setupNetwork); the pod's own resolv.conf when it has one
// (podResolvConf), else the node's.
func podFileMounts(pod *core.Pod, podDir string, ownResolv bool) []core.Mount {
	var out []core.Mount
	if pod.Spec.HostNetwork {
		out = append(out, core.Mount{Source: "/etc/hosts", Destination: "/etc/hosts", ReadOnly: true})
	} else {
		out = append(out,
			core.Mount{Source: filepath.Join(podDir, "hosts"), Destination: "/etc/hosts", ReadOnly: true},
			core.Mount{Source: filepath.Join(podDir, "hostname"), Destination: "/etc/hostname", ReadOnly: true})
	}
	if ownResolv {
		out = append(out, core.Mount{Source: filepath.Join(podDir, "resolv.conf"), Destination: "/etc/resolv.conf", ReadOnly: true})
	} else if _, err := os.Stat("/etc/resolv.conf"); err == nil {
		out = append(out, core.Mount{Source: "/etc/resolv.conf", Destination: "/etc/resolv.conf", ReadOnly: true})
	}
	return out
}

// volumeMounts resolves a container's volume mounts to host paths,
// creating the directories and files they need.
func (w *podWorker) volumeMounts(p *core.Pod, c *core.Container) ([]core.Mount, error) {
	podDir := w.podDir()
	vols := map[string]core.Volume{}
	for _, v := range p.Spec.Volumes {
		vols[v.Name] = v
	}
	var out []core.Mount
	for _, m := range c.VolumeMounts {
		v := vols[m.Name]
		var src string
		switch {
		case v.HostPath != nil:
			src = v.HostPath.Path
			if isDevice(src) {
				continue // a device node with its cgroup rule: see devices
			}
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
			if err := applyFSGroup(p, src); err != nil {
				return nil, fmt.Errorf("volume %q fsGroup: %w", m.Name, err)
			}
		case v.PersistentVolumeClaim != nil:
			cv, err := w.claimDir(p, v.PersistentVolumeClaim)
			if err != nil {
				return nil, fmt.Errorf("volume %q: %w", m.Name, err)
			}
			if cv.Provisioned {
				if err := applyFSGroup(p, cv.Path); err != nil {
					return nil, fmt.Errorf("volume %q fsGroup: %w", m.Name, err)
				}
			}
			src = cv.Path
			if v.PersistentVolumeClaim.ReadOnly {
				m.ReadOnly = true
			}
		case v.ConfigMap != nil || v.Secret != nil:
			// Written by syncConfigVolumes; read-only as in Kubernetes. A
			// subPath is one file, as it is now: it does not follow updates.
			src = w.configVolumeDir(v)
			if m.SubPath != "" {
				real, err := filepath.EvalSymlinks(filepath.Join(src, m.SubPath))
				if err != nil {
					return nil, fmt.Errorf("volume %q subPath %q: %w", m.Name, m.SubPath, err)
				}
				out = append(out, core.Mount{Source: real, Destination: m.MountPath, ReadOnly: true})
				continue
			}
			out = append(out, core.Mount{Source: src, Destination: m.MountPath, ReadOnly: true})
			continue
		}
		if m.SubPath != "" {
			src = filepath.Join(src, m.SubPath)
			if err := os.MkdirAll(src, 0o755); err != nil {
				return nil, fmt.Errorf("volume %q subPath: %w", m.Name, err)
			}
		}
		out = append(out, core.Mount{Source: src, Destination: m.MountPath, ReadOnly: m.ReadOnly, Propagation: propagation(m.MountPropagation)})
	}
	return out, nil
}

// isDevice reports whether path is (or links to) a character or block
// device.
func isDevice(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&(os.ModeDevice|os.ModeCharDevice) != 0
}

// devices returns the device files a container's hostPath volumes name
// (type CharDevice or BlockDevice, or a path that is one), to be made in
// the container with a cgroup rule allowing them: a serial port for a
// Zigbee or Z-Wave stick works without privileged. A device named by a
// type that is missing, or not a device, is an error naming the volume.
func devices(p *core.Pod, c *core.Container) ([]core.Device, error) {
	vols := map[string]core.Volume{}
	for _, v := range p.Spec.Volumes {
		vols[v.Name] = v
	}
	var out []core.Device
	for _, m := range c.VolumeMounts {
		v := vols[m.Name]
		if v.HostPath == nil {
			continue
		}
		typ := v.HostPath.Type
		if typ != "CharDevice" && typ != "BlockDevice" && !isDevice(v.HostPath.Path) {
			continue
		}
		real, err := filepath.EvalSymlinks(v.HostPath.Path)
		if err != nil {
			return nil, fmt.Errorf("volume %q: hostPath %s: %w", m.Name, v.HostPath.Path, err)
		}
		fi, err := os.Stat(real)
		if err != nil {
			return nil, fmt.Errorf("volume %q: hostPath %s: %w", m.Name, v.HostPath.Path, err)
		}
		char := fi.Mode()&os.ModeCharDevice != 0
		switch {
		case fi.Mode()&os.ModeDevice == 0:
			return nil, fmt.Errorf("volume %q: hostPath %s is not a device (type %s)", m.Name, v.HostPath.Path, typ)
		case typ == "CharDevice" && !char:
			return nil, fmt.Errorf("volume %q: hostPath %s is a block device, not a CharDevice", m.Name, v.HostPath.Path)
		case typ == "BlockDevice" && char:
			return nil, fmt.Errorf("volume %q: hostPath %s is a character device, not a BlockDevice", m.Name, v.HostPath.Path)
		}
		perm := "rwm"
		if m.ReadOnly {
			perm = "rm"
		}
		out = append(out, core.Device{HostPath: real, ContainerPath: m.MountPath, Permissions: perm})
	}
	return out, nil
}

// applyFSGroup gives a volume directory the pod made (emptyDir) or the
// node provisioned to the pod's fsGroup, and makes files created in it
// belong to that group too (setgid), as the kubelet arranges. A user's
// hostPath is left as it is, as the kubelet leaves it.
func applyFSGroup(p *core.Pod, dir string) error {
	sc := p.Spec.SecurityContext
	if sc == nil || sc.FSGroup == nil {
		return nil
	}
	if err := os.Chown(dir, -1, int(*sc.FSGroup)); err != nil {
		return err
	}
	return os.Chmod(dir, 0o777|os.ModeSetgid)
}

// applySecurity sets cfg's user, privileges, capabilities and namespaces
// from the pod's and the container's security contexts.
func applySecurity(cfg *core.ContainerConfig, pod *core.PodSpec, c *core.Container) {
	sc := core.EffectiveSecurity(pod, c)
	cfg.Privileged = sc.Privileged != nil && *sc.Privileged
	if sc.RunAsUser != nil {
		uid := uint32(*sc.RunAsUser)
		cfg.UID = &uid
	}
	if sc.RunAsGroup != nil {
		gid := uint32(*sc.RunAsGroup)
		cfg.GID = &gid
	}
	if ps := pod.SecurityContext; ps != nil {
		if ps.FSGroup != nil {
			cfg.AdditionalGIDs = append(cfg.AdditionalGIDs, uint32(*ps.FSGroup))
		}
		for _, g := range ps.SupplementalGroups {
			cfg.AdditionalGIDs = append(cfg.AdditionalGIDs, uint32(g))
		}
	}
	cfg.RunAsNonRoot = sc.RunAsNonRoot != nil && *sc.RunAsNonRoot
	cfg.ReadOnlyRoot = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
	cfg.NoNewPrivileges = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
	if caps := sc.Capabilities; caps != nil {
		for _, n := range caps.Add {
			name, _ := core.CapabilityName(n)
			cfg.CapAdd = append(cfg.CapAdd, name)
		}
		for _, n := range caps.Drop {
			name, _ := core.CapabilityName(n)
			cfg.CapDrop = append(cfg.CapDrop, name)
		}
	}
	cfg.SeccompDefault = sc.SeccompProfile != nil && sc.SeccompProfile.Type == "RuntimeDefault"
	cfg.HostPID, cfg.HostIPC = pod.HostPID, pod.HostIPC
}
