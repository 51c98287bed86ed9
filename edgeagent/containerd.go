package edgeagent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/logrotate"
)

// containerdRuntime is core.Runtime on containerd's Go client: the only
// file of the agent that knows containerd. Everything it creates lives in
// one containerd namespace, with cgroups under one parent.
type containerdRuntime struct {
	client       *containerd.Client
	namespace    string
	cgroupParent string
	cgroupRoot   string // /sys/fs/cgroup
	cgroups      cgroupSupport
	// unpacked holds the digests of images known to be unpacked: checking
	// costs several round trips (manifest, config, snapshot), for every
	// container of a burst that all use one image.
	unpacked sync.Map
	// lastUse (image name -> time.Time of its last recorded use) and
	// snapUsage (snapshot key -> int64 bytes) spare image GC round trips
	// (containerd_gc.go).
	lastUse, snapUsage sync.Map
	// logDriver runs as the shim's log driver for every task (see
	// internal/logrotate), with these caps; empty: a file the shim
	// appends to.
	logDriver   string
	logMaxSize  int64
	logMaxFiles int
	// mirror is where images are pulled from (the master's registry);
	// nil: each image's own registry. pullReportEvery paces progress
	// reports [2s].
	mirror          atomic.Pointer[pullMirror]
	pullReportEvery time.Duration
	logger          *slog.Logger
	pullsMu         sync.Mutex
	pulls           map[string]int // pulls under way, by lease
	peers           badPeers       // LAN peers that sent a corrupt blob lately

	ctx    context.Context // ends the event streams on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // event stream goroutines
}

// newContainerdRuntime returns a runtime on the containerd socket. It does
// not wait for containerd: gRPC connects (and reconnects) in the background,
// and calls fail with EUNAVAILABLE until it answers.
func newContainerdRuntime(socket, namespace, cgroupParent string) (*containerdRuntime, error) {
	c, err := containerd.New(socket, containerd.WithDefaultNamespace(namespace), containerd.WithTimeout(5*time.Second),
		containerd.WithDefaultPlatform(pullPlatform()))
	if err != nil {
		return nil, err
	}
	r := &containerdRuntime{client: c, namespace: namespace, cgroupParent: cgroupParent, cgroupRoot: "/sys/fs/cgroup"}
	r.cgroups = probeCgroups(r.cgroupRoot, cgroupParent)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// pullPlatform is the platform the node pulls and unpacks of a
// multi-arch image: the agent's own (GOARCH; for arm, the CPU's variant,
// from /proc/cpuinfo or, under emulation, uname), which is the node's
// kubernetes.io/arch label, so that what the scheduler placed by that
// label is what runs. (containerd's default, made explicit here: the
// client's platform, not the containerd daemon's.)
func pullPlatform() platforms.MatchComparer { return platforms.Default() }

// Close ends the event streams and closes the connection.
func (r *containerdRuntime) Close() error {
	r.cancel()
	r.wg.Wait()
	return r.client.Close()
}

func (r *containerdRuntime) ns(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.namespace)
}

// coreError gives a containerd error the code the Runtime contract names,
// keeping its message (it ends up in a container's waiting message).
func coreError(err error) error {
	var code string
	switch {
	case err == nil:
		return nil
	case errdefs.IsNotFound(err):
		code = core.ENOTFOUND
	case errdefs.IsAlreadyExists(err), errdefs.IsConflict(err), errdefs.IsFailedPrecondition(err):
		code = core.ECONFLICT
	case errdefs.IsUnavailable(err):
		code = core.EUNAVAILABLE
	case errdefs.IsInvalidArgument(err):
		code = core.EINVALID
	default:
		return err
	}
	return &core.Error{Code: code, Message: err.Error()}
}

func (r *containerdRuntime) Version(ctx context.Context) (string, error) {
	v, err := r.client.Version(r.ns(ctx))
	if err != nil {
		return "", &core.Error{Code: core.EUNAVAILABLE, Message: err.Error()}
	}
	return "containerd " + v.Version, nil
}

func imageOf(img containerd.Image) core.ContainerImage {
	t := img.Target()
	return core.ContainerImage{Name: img.Name(), ID: t.Digest.String(), Size: t.Size}
}

func (r *containerdRuntime) Image(ctx context.Context, ref string) (core.ContainerImage, error) {
	img, err := r.client.GetImage(r.ns(ctx), ref)
	if err != nil {
		return core.ContainerImage{}, coreError(err)
	}
	return imageOf(img), nil
}

func (r *containerdRuntime) Images(ctx context.Context) ([]core.ContainerImage, error) {
	imgs, err := r.client.ImageService().List(r.ns(ctx))
	if err != nil {
		return nil, coreError(err)
	}
	out := make([]core.ContainerImage, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, core.ContainerImage{Name: img.Name, ID: img.Target.Digest.String(), Size: img.Target.Size})
	}
	return out, nil
}

func (r *containerdRuntime) CreateContainer(ctx context.Context, cfg *core.ContainerConfig) error {
	ctx = r.ns(ctx)
	img, err := r.client.GetImage(ctx, cfg.Image)
	if err != nil {
		return coreError(err)
	}
	// An image imported or prefetched without unpacking has no snapshot
	// to start from yet.
	digest := img.Target().Digest
	if _, ok := r.unpacked.Load(digest); !ok {
		if ok, err := img.IsUnpacked(ctx, ""); err != nil {
			return coreError(err)
		} else if !ok {
			if err := img.Unpack(ctx, ""); err != nil {
				return coreError(err)
			}
		}
		r.unpacked.Store(digest, true)
	}
	if cfg.RunAsNonRoot && (cfg.UID == nil || *cfg.UID == 0) {
		if cfg.UID != nil {
			return core.Errorf(core.EINVALID, "runAsNonRoot is set and runAsUser is 0 (root)")
		}
		ic, err := img.Spec(ctx)
		if err != nil {
			return coreError(err)
		}
		if u, _, _ := strings.Cut(ic.Config.User, ":"); u == "" || u == "0" || u == "root" {
			return core.Errorf(core.EINVALID, "runAsNonRoot is set and image %s runs as root (user %q): set runAsUser", cfg.Image, ic.Config.User)
		}
	}
	if cfg.Resources.MemoryLimit > 0 && !r.cgroups.memory {
		// Fail closed: running it unlimited would let it take the node's
		// memory from every other pod.
		return core.Errorf(core.EINVALID, "cannot enforce the memory limit: %s", memoryOffHelp)
	}
	opts := append(imageSpecOpts(img, cfg), containerSpecOpts(cfg, r.cgroupParent+"/"+cfg.ID, r.cgroups.swap)...)
	create := func() error {
		_, err := r.client.NewContainer(ctx, cfg.ID, containerd.WithImage(img), containerd.WithNewSnapshot(cfg.ID, img),
			containerd.WithNewSpec(opts...), containerd.WithContainerLabels(cfg.Labels))
		return err
	}
	err = create()
	if errdefs.IsAlreadyExists(err) && strings.Contains(err.Error(), "snapshot") {
		// An agent killed between preparing the snapshot and recording
		// the container left the snapshot alone: no container owns it
		// (ids are unique per pod), so it goes and the create runs again.
		if _, lerr := r.client.LoadContainer(ctx, cfg.ID); errdefs.IsNotFound(lerr) {
			if rerr := r.client.SnapshotService("").Remove(ctx, cfg.ID); rerr == nil || errdefs.IsNotFound(rerr) {
				err = create()
			}
		}
	}
	if err != nil {
		r.unpacked.Delete(digest) // its snapshots may have gone: check again next time
	} else {
		r.touchImage(ctx, img.Name()) // for image GC: least recently used go first
	}
	return coreError(err)
}

// imageSpecOpts are the spec options that need the image: its config, and
// the command or arguments that replace the image's.
func imageSpecOpts(img containerd.Image, cfg *core.ContainerConfig) []oci.SpecOpts {
	opts := []oci.SpecOpts{oci.WithImageConfig(img)}
	switch {
	case len(cfg.Command) > 0:
		opts = append(opts, oci.WithProcessArgs(append(append([]string{}, cfg.Command...), cfg.Args...)...))
	case len(cfg.Args) > 0:
		opts = append(opts, oci.WithImageConfigArgs(img, cfg.Args))
	}
	return opts
}

// containerSpecOpts are the rest of a container's OCI spec: environment,
// limits, namespaces, mounts, privileges. swap says whether the host can
// cap swap (cgroupSupport.swap).
func containerSpecOpts(cfg *core.ContainerConfig, cgroupPath string, swap bool) []oci.SpecOpts {
	var opts []oci.SpecOpts
	if len(cfg.Env) > 0 {
		opts = append(opts, oci.WithEnv(cfg.Env))
	}
	if cfg.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(cfg.WorkingDir))
	}
	res := cfg.Resources
	if res.MemoryLimit > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(res.MemoryLimit)))
		if swap {
			// memory+swap = memory: no swap beyond the limit (cgroup v1
			// memory.memsw.limit_in_bytes; runc turns it into
			// memory.swap.max=0 on v2). Where swap is not accounted runc
			// would fail the start (v1, and v2 as of runc 1.1), and there
			// is no swap to cap.
			opts = append(opts, oci.WithMemorySwap(res.MemoryLimit))
		}
	}
	if res.CPUQuota > 0 {
		opts = append(opts, oci.WithCPUCFS(res.CPUQuota, uint64(res.CPUPeriod)))
	}
	if res.CPUShares > 0 {
		opts = append(opts, oci.WithCPUShares(res.CPUShares))
	}
	if res.PidsLimit > 0 {
		opts = append(opts, oci.WithPidsLimit(res.PidsLimit))
	}
	opts = append(opts, oci.WithCgroup(cgroupPath))
	if cfg.HostNetwork {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace))
	} else {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: cfg.NetNSPath}))
	}
	if cfg.Hostname != "" {
		opts = append(opts, oci.WithHostname(cfg.Hostname))
	}
	if len(cfg.Mounts) > 0 {
		mounts := make([]specs.Mount, 0, len(cfg.Mounts))
		rootfs := ""
		for _, m := range cfg.Mounts {
			o := []string{"rbind", "rprivate", "rw"}
			if m.Propagation != "" {
				o[1] = m.Propagation
				// The container's root must not be private for the mount
				// to receive (rslave) or send (rshared) mounts, as
				// containerd's CRI plugin arranges.
				if m.Propagation == "rshared" || rootfs == "" {
					rootfs = m.Propagation
				}
			}
			if m.ReadOnly {
				o[2] = "ro"
			}
			mounts = append(mounts, specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source, Options: o})
		}
		opts = append(opts, oci.WithMounts(mounts))
		if rootfs != "" {
			opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
				if s.Linux == nil {
					s.Linux = &specs.Linux{}
				}
				s.Linux.RootfsPropagation = rootfs
				return nil
			})
		}
	}
	for _, d := range cfg.Devices {
		opts = append(opts, oci.WithDevices(d.HostPath, d.ContainerPath, d.Permissions))
	}
	if cfg.HostPID {
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	}
	if cfg.HostIPC {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	}
	switch {
	case cfg.UID != nil && cfg.GID != nil:
		opts = append(opts, oci.WithUIDGID(*cfg.UID, *cfg.GID))
	case cfg.UID != nil:
		opts = append(opts, oci.WithUserID(*cfg.UID)) // its group from the image's /etc/passwd
	case cfg.GID != nil: // the image's user, in another group
		gid := *cfg.GID
		opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			s.Process.User.GID = gid
			return nil
		})
	}
	if len(cfg.AdditionalGIDs) > 0 {
		gids := cfg.AdditionalGIDs
		opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			s.Process.User.AdditionalGids = append(s.Process.User.AdditionalGids, gids...)
			return nil
		})
	}
	if cfg.Privileged {
		return append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices)
	}
	if cfg.ReadOnlyRoot {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if cfg.NoNewPrivileges {
		opts = append(opts, oci.WithNoNewPrivileges)
	}
	if slices.Contains(cfg.CapDrop, "ALL") {
		opts = append(opts, oci.WithCapabilities(nil))
	} else if len(cfg.CapDrop) > 0 {
		opts = append(opts, oci.WithDroppedCapabilities(cfg.CapDrop))
	}
	if len(cfg.CapAdd) > 0 {
		opts = append(opts, oci.WithAddedCapabilities(cfg.CapAdd))
	}
	if cfg.SeccompDefault {
		opts = append(opts, seccomp.WithDefaultProfile())
	}
	return opts
}

func infoOf(c containerd.Container, ctx context.Context) (*core.ContainerInfo, error) {
	info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return nil, coreError(err)
	}
	return &core.ContainerInfo{ID: info.ID, Image: info.Image, Labels: info.Labels, CreatedAt: info.CreatedAt}, nil
}

func (r *containerdRuntime) Container(ctx context.Context, id string) (*core.ContainerInfo, error) {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, coreError(err)
	}
	return infoOf(c, ctx)
}

func (r *containerdRuntime) Containers(ctx context.Context, selector map[string]string) ([]*core.ContainerInfo, error) {
	ctx = r.ns(ctx)
	keys := make([]string, 0, len(selector))
	for k := range selector {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var conds []string
	for _, k := range keys {
		if v := selector[k]; v != "" {
			conds = append(conds, fmt.Sprintf(`labels.%q==%q`, k, v))
		} else {
			conds = append(conds, fmt.Sprintf(`labels.%q`, k))
		}
	}
	var filters []string
	if len(conds) > 0 {
		filters = []string{strings.Join(conds, ",")} // one filter: all conditions hold
	}
	ctrs, err := r.client.Containers(ctx, filters...)
	if err != nil {
		return nil, coreError(err)
	}
	out := make([]*core.ContainerInfo, 0, len(ctrs))
	for _, c := range ctrs {
		info, err := infoOf(c, ctx)
		if err != nil {
			continue // removed while listing
		}
		out = append(out, info)
	}
	return out, nil
}

func (r *containerdRuntime) SetLabels(ctx context.Context, id string, labels map[string]string) error {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return coreError(err)
	}
	_, err = c.SetLabels(ctx, labels)
	return coreError(err)
}

func (r *containerdRuntime) RemoveContainer(ctx context.Context, id string) error {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	} else if err != nil {
		return coreError(err)
	}
	info, ierr := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return coreError(err)
	}
	if ierr == nil && info.Image != "" {
		r.touchImage(ctx, info.Image) // its image was in use until now
	}
	return nil
}

// task loads container id's task.
func (r *containerdRuntime) task(ctx context.Context, id string) (containerd.Task, error) {
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, coreError(err)
	}
	t, err := c.Task(ctx, nil)
	if err != nil {
		return nil, coreError(err)
	}
	return t, nil
}

func (r *containerdRuntime) Task(ctx context.Context, id string) (core.TaskStatus, error) {
	ctx = r.ns(ctx)
	t, err := r.task(ctx, id)
	if err != nil {
		return core.TaskStatus{}, err
	}
	st, err := t.Status(ctx)
	if err != nil {
		return core.TaskStatus{}, coreError(err)
	}
	switch st.Status {
	case containerd.Stopped:
		ts := core.TaskStatus{State: core.TaskStopped, ExitCode: int32(st.ExitStatus), ExitedAt: st.ExitTime}
		if ts.ExitCode == 128+int32(syscall.SIGKILL) {
			// The cgroup lives until the task is deleted: ask it.
			ts.OOMKilled = oomKills(r.cgroupRoot, r.cgroupParent+"/"+id) > 0
		}
		return ts, nil
	case containerd.Created:
		return core.TaskStatus{State: core.TaskCreated}, nil
	default:
		// Running, or paused (the agent never pauses) or unknown: the
		// worker treats it as running and looks again.
		return core.TaskStatus{State: core.TaskRunning}, nil
	}
}

func (r *containerdRuntime) StartTask(ctx context.Context, id, logPath string) error {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return coreError(err)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	logIO := cio.LogFile(logPath)
	if r.logDriver != "" {
		logIO = cio.BinaryIO(r.logDriver, logrotate.DriverArgs(logPath, r.logMaxSize, r.logMaxFiles))
	}
	task, err := c.NewTask(ctx, logIO)
	if err != nil {
		return coreError(err)
	}
	if err := task.Start(ctx); err != nil {
		task.Delete(ctx, containerd.WithProcessKill)
		return coreError(err)
	}
	return nil
}

func (r *containerdRuntime) WaitTask(ctx context.Context, id string) (<-chan core.TaskStatus, error) {
	ctx = r.ns(ctx)
	t, err := r.task(ctx, id)
	if err != nil {
		return nil, err
	}
	exited, err := t.Wait(ctx)
	if err != nil {
		return nil, coreError(err)
	}
	out := make(chan core.TaskStatus, 1)
	r.wg.Add(1)
	go func() { // ends with the exit, with ctx (containerd then sends an error status) or on Close
		defer r.wg.Done()
		select {
		case s := <-exited:
			if s.Error() == nil {
				out <- core.TaskStatus{State: core.TaskStopped, ExitCode: int32(s.ExitCode()), ExitedAt: s.ExitTime()}
			}
		case <-r.ctx.Done():
		}
	}()
	return out, nil
}

func (r *containerdRuntime) Signal(ctx context.Context, id string, sig syscall.Signal) error {
	ctx = r.ns(ctx)
	t, err := r.task(ctx, id)
	if err != nil {
		return err
	}
	return coreError(t.Kill(ctx, sig, containerd.WithKillAll))
}

func (r *containerdRuntime) DeleteTask(ctx context.Context, id string) error {
	ctx = r.ns(ctx)
	t, err := r.task(ctx, id)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return nil
	} else if err != nil {
		return err
	}
	if _, err := t.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return coreError(err)
	}
	return nil
}

func (r *containerdRuntime) Exec(ctx context.Context, id string, cmd []string) (int, error) {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return 0, coreError(err)
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return 0, coreError(err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return 0, coreError(err)
	}
	ps := *spec.Process
	ps.Args = cmd
	ps.Terminal = false
	execID := "probe-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	proc, err := task.Exec(ctx, execID, &ps, cio.NullIO)
	if err != nil {
		return 0, coreError(err)
	}
	defer proc.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
	exited, err := proc.Wait(ctx)
	if err != nil {
		return 0, coreError(err)
	}
	if err := proc.Start(ctx); err != nil {
		return 0, coreError(err)
	}
	select {
	case s := <-exited:
		if err := s.Error(); err != nil {
			return 0, err
		}
		return int(s.ExitCode()), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("exec timed out")
	}
}

func (r *containerdRuntime) Events(ctx context.Context) (<-chan core.RuntimeEvent, error) {
	ctx, cancel := context.WithCancel(r.ns(ctx))
	envs, errs := r.client.Subscribe(ctx,
		fmt.Sprintf(`topic=="/tasks/exit",namespace==%q`, r.namespace),
		fmt.Sprintf(`topic=="/tasks/oom",namespace==%q`, r.namespace))
	out := make(chan core.RuntimeEvent, 64)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(out)
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.ctx.Done():
				return
			case <-errs:
				return // containerd restarted: the caller subscribes again
			case e := <-envs:
				if e == nil {
					continue
				}
				ev, err := typeurl.UnmarshalAny(e.Event)
				if err != nil {
					continue
				}
				var re core.RuntimeEvent
				switch ev := ev.(type) {
				case *apievents.TaskOOM:
					re = core.RuntimeEvent{Type: core.RuntimeTaskOOM, ContainerID: ev.ContainerID}
				case *apievents.TaskExit:
					if ev.ID != ev.ContainerID {
						continue // an exec'd process (a probe) exited, not the container
					}
					re = core.RuntimeEvent{Type: core.RuntimeTaskExit, ContainerID: ev.ContainerID}
				default:
					continue
				}
				select {
				case out <- re:
				case <-ctx.Done():
					return
				case <-r.ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// oomKills returns how many processes the kernel's OOM killer killed in the
// memory cgroup at path under root (cgroup v1: memory.oom_control; v2:
// memory.events), or -1 if it cannot tell.
func oomKills(root, path string) int64 {
	for _, f := range []string{filepath.Join(root, "memory", path, "memory.oom_control"), filepath.Join(root, path, "memory.events")} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err == nil {
					return n
				}
			}
		}
	}
	return -1
}
