package edgeagent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/image-spec/identity"
	"golang.org/x/sys/unix"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/images"
	"github.com/edgeorch/edge/internal/ctrd"
)

// The containerd runtime against a private containerd: what the fake
// stands in for must hold for real. Needs root, containerd, runc and
// busybox-static (make test runs as root); skipped otherwise.

const testImage = "edge.local/busybox:latest"

// startContainerd runs a private containerd (own root, state and socket)
// and returns a runtime on it; everything is removed when the test ends.
func startContainerd(t *testing.T) *containerdRuntime {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root (make test runs as root)")
	}
	for _, bin := range []string{"containerd", "runc", "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	dir, err := os.MkdirTemp("", "edgeagent-ctrd")
	if err != nil {
		t.Fatal(err)
	}
	config, socket, err := ctrd.WriteConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command("containerd", "--config", config)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the *thread* that forked the child exits, and
	// this package's netns code ends the threads it switched into another
	// namespace: fork from a thread kept locked, and alive, until containerd
	// has exited, or a netns call may kill containerd mid-test.
	started, exited := make(chan error, 1), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	parent := fmt.Sprintf("/edge-test-%d", os.Getpid())
	r, err := newContainerdRuntime(socket, "edge", parent)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if ctrs, err := r.Containers(ctx, nil); err == nil {
			for _, c := range ctrs {
				r.DeleteTask(ctx, c.ID)
				r.RemoveContainer(ctx, c.ID)
			}
		}
		r.Close()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		ctrd.UnmountUnder(dir)
		os.RemoveAll(dir)
		removeCgroups(parent)
		if t.Failed() {
			t.Logf("containerd log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(slow(20 * time.Second))
	for {
		_, err := r.Version(context.Background())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd does not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Imported, not unpacked: creating a container unpacks it.
	spec, err := images.BusyboxImage(testImage, mustLookPath(t, "busybox"), runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if err := images.WriteOCIArchive(&archive, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := r.client.Import(namespaces.WithNamespace(context.Background(), "edge"), &archive); err != nil {
		t.Fatal(err)
	}
	return r
}

func mustLookPath(t *testing.T, bin string) string {
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// removeCgroups removes the (empty) cgroups under parent, v1 and v2.
func removeCgroups(parent string) {
	roots := []string{"/sys/fs/cgroup"}
	if entries, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, e := range entries {
			roots = append(roots, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	for _, root := range roots {
		base := filepath.Join(root, parent)
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if e.IsDir() {
				os.Remove(filepath.Join(base, e.Name()))
			}
		}
		os.Remove(base)
	}
}

// slow stretches a deadline by EDGE_TEST_TIMEOUT_SCALE (make test-cgroup2
// sets it: its VM emulates the CPU, about ten times slower).
func slow(d time.Duration) time.Duration {
	if f, err := strconv.ParseFloat(os.Getenv("EDGE_TEST_TIMEOUT_SCALE"), 64); err == nil && f > 1 {
		return time.Duration(float64(d) * f)
	}
	return d
}

// cgroupFile reads a file of container id's cgroup: v1 in the memory
// hierarchy, v2 in the unified one.
func cgroupFile(r *containerdRuntime, id, v1, v2 string) (string, error) {
	return controllerFile(r, id, "memory", v1, v2)
}

func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// controllerFile reads a file of container id's cgroup: v1 in the
// hierarchy of controller, v2 in the unified one.
func controllerFile(r *containerdRuntime, id, controller, v1, v2 string) (string, error) {
	path := filepath.Join("/sys/fs/cgroup", controller, r.cgroupParent, id, v1)
	if cgroupV2() {
		path = filepath.Join("/sys/fs/cgroup", r.cgroupParent, id, v2)
	}
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

// endOfOutput ends what a test container prints: see waitLog.
const endOfOutput = "END-OF-OUTPUT"

// waitLog returns a container's log once it holds endOfOutput: the shim
// copies the output on its own, and may still be at it when the exit is
// reported (seen under the emulated CPU of make test-cgroup2).
func waitLog(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(slow(10 * time.Second))
	for {
		b, err := os.ReadFile(path)
		if strings.Contains(string(b), endOfOutput) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log of the container lacks its end (%v):\n%s", err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitEvent(t *testing.T, events <-chan core.RuntimeEvent, want core.RuntimeEvent) {
	t.Helper()
	timeout := time.After(slow(30 * time.Second))
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("event stream closed before %+v", want)
			}
			if ev == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %+v event", want)
		}
	}
}

// A container with a memory limit starts, and its swap is capped at the
// same limit where the host accounts swap; exec, labels, a graceful stop
// (SIGTERM ignored by PID 1, then SIGKILL) and removal work for real.
func TestContainerdRuntime(t *testing.T) {
	r := startContainerd(t)
	ctx := context.Background()
	events, err := r.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	img, err := r.Image(ctx, testImage)
	if err != nil || !strings.HasPrefix(img.ID, "sha256:") {
		t.Fatalf("image %+v: %v", img, err)
	}
	if _, err := r.Image(ctx, "edge.local/absent:1"); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("absent image: %v", err)
	}
	id := "limits.app.1"
	cfg := &core.ContainerConfig{ID: id, Image: testImage, Labels: map[string]string{labelPodUID: "u1", labelContainer: "app"},
		Command: []string{"sleep", "300"}, HostNetwork: true,
		Resources: core.ContainerResources{MemoryLimit: 32 << 20, CPUQuota: 50000, CPUPeriod: cpuPeriod, CPUShares: 512, PidsLimit: 64}}
	if err := r.CreateContainer(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.CreateContainer(ctx, cfg); core.ErrorCode(err) != core.ECONFLICT {
		t.Fatalf("creating twice: %v", err)
	}
	for sel, n := range map[string]int{"u1": 1, "": 1, "u2": 0} {
		if ctrs, err := r.Containers(ctx, map[string]string{labelPodUID: sel}); err != nil || len(ctrs) != n {
			t.Fatalf("containers of pod %q: %d (%v), want %d", sel, len(ctrs), err, n)
		}
	}
	if _, err := r.Task(ctx, id); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("task before start: %v", err)
	}
	logPath := filepath.Join(t.TempDir(), "logs", "app.log")
	if err := r.StartTask(ctx, id, logPath); err != nil {
		t.Fatal(err)
	}
	if st, err := r.Task(ctx, id); err != nil || st.State != core.TaskRunning {
		t.Fatalf("task %+v: %v", st, err)
	}
	if limit, err := cgroupFile(r, id, "memory.limit_in_bytes", "memory.max"); err != nil || limit != "33554432" {
		t.Fatalf("memory limit %q: %v", limit, err)
	}
	// 50ms of CPU per 100ms, 512 shares (v2: cpu.weight 20, runc's
	// 1 + (512-2)*9999/262142), at most 64 processes.
	want := map[[2]string]string{{"cpu", "cpu.cfs_quota_us"}: "50000", {"cpu", "cpu.cfs_period_us"}: "100000",
		{"cpu", "cpu.shares"}: "512", {"pids", "pids.max"}: "64"}
	if cgroupV2() {
		want = map[[2]string]string{{"", "cpu.max"}: "50000 100000", {"", "cpu.weight"}: "20", {"", "pids.max"}: "64"}
	}
	for f, w := range want {
		if got, err := controllerFile(r, id, f[0], f[1], f[1]); err != nil || got != w {
			t.Fatalf("%s = %q (%v), want %q", f[1], got, err, w)
		}
	}
	switch swap, err := cgroupFile(r, id, "memory.memsw.limit_in_bytes", "memory.swap.max"); {
	case !r.cgroups.swap:
		t.Logf("host without swap accounting: swap not capped (the container started)")
	case err != nil:
		t.Fatalf("swap limit: %v", err)
	case swap != "33554432" && swap != "0": // v1: memory+swap = memory; v2: no swap
		t.Fatalf("swap limit %q, want it capped at the memory limit", swap)
	}
	for cmd, want := range map[string]int{"true": 0, "false": 1} {
		if code, err := r.Exec(ctx, id, []string{cmd}); err != nil || code != want {
			t.Fatalf("exec %s: %d, %v", cmd, code, err)
		}
	}
	if err := r.SetLabels(ctx, id, map[string]string{labelRestarts: "3"}); err != nil {
		t.Fatal(err)
	}
	if info, err := r.Container(ctx, id); err != nil || info.Labels[labelRestarts] != "3" || info.Labels[labelPodUID] != "u1" || info.Image != testImage {
		t.Fatalf("container %+v: %v", info, err)
	}

	// sleep is PID 1 of its namespace: it ignores SIGTERM, so the grace
	// period runs out and SIGKILL follows.
	a := &Agent{rt: r, timer: realTimer, ctx: ctx}
	started := time.Now()
	if err := a.removeContainer(ctx, id, time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(started); d < time.Second {
		t.Fatalf("removed after %s, before its grace period", d)
	}
	waitEvent(t, events, core.RuntimeEvent{Type: core.RuntimeTaskExit, ContainerID: id})
	if _, err := r.Container(ctx, id); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("container after removal: %v", err)
	}
	if err := r.RemoveContainer(ctx, id); err != nil {
		t.Fatalf("removing again: %v", err)
	}
}

// A container that outgrows its memory limit is OOM-killed, and the event
// stream says so before its exit.
func TestContainerdOOM(t *testing.T) {
	r := startContainerd(t)
	ctx := context.Background()
	events, err := r.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	netns := filepath.Join(t.TempDir(), "netns")
	if err := createNetNS(netns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeNetNS(netns) })
	id := "oom.app.1"
	cfg := &core.ContainerConfig{ID: id, Image: testImage, NetNSPath: netns, Hostname: "oom",
		Command:   []string{"tail", "/dev/zero"}, // keeps one endless line in memory
		Resources: core.ContainerResources{MemoryLimit: 16 << 20, PidsLimit: 16}}
	if err := r.CreateContainer(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.StartTask(ctx, id, filepath.Join(t.TempDir(), "oom.log")); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, core.RuntimeEvent{Type: core.RuntimeTaskOOM, ContainerID: id})
	waitEvent(t, events, core.RuntimeEvent{Type: core.RuntimeTaskExit, ContainerID: id})
	st, err := r.Task(ctx, id)
	if err != nil || st.State != core.TaskStopped || st.ExitCode != 137 || st.ExitedAt.IsZero() || !st.OOMKilled {
		t.Fatalf("task %+v: %v", st, err)
	}
	if err := r.DeleteTask(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ctrs, _ := r.Containers(ctx, nil); len(ctrs) != 0 {
		t.Fatalf("%d containers left", len(ctrs))
	}
}

// Where the kernel's memory controller is off (Raspberry Pi OS's default
// for long; make test-cgroup2 boots its VM so once), a container with a
// memory limit is refused, saying how to turn the controller on, rather
// than run unlimited; one without a memory limit runs.
func TestContainerdMemoryControllerOff(t *testing.T) {
	if memoryControllerOn() {
		t.Skip("the memory controller is on (make test-cgroup2 runs this with it off)")
	}
	r := startContainerd(t)
	ctx := context.Background()
	limited := &core.ContainerConfig{ID: "mem.app.1", Image: testImage, HostNetwork: true, Command: []string{"true"},
		Resources: core.ContainerResources{MemoryLimit: 32 << 20, PidsLimit: 64}}
	if err := r.CreateContainer(ctx, limited); core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "cgroup_enable=memory") {
		t.Fatalf("a memory limit without the controller: %v", err)
	}
	id := "nomem.app.1"
	cfg := &core.ContainerConfig{ID: id, Image: testImage, HostNetwork: true, Command: []string{"true"},
		Resources: core.ContainerResources{CPUQuota: 50000, CPUPeriod: cpuPeriod, CPUShares: 512, PidsLimit: 64}}
	if st := runToExit(t, r, cfg, filepath.Join(t.TempDir(), "app.log")); st.ExitCode != 0 {
		t.Fatalf("exit %d", st.ExitCode)
	}
	r.DeleteTask(ctx, id)
	r.RemoveContainer(ctx, id)
}

// memoryControllerOn says whether this host's kernel has a memory cgroup
// controller to use.
func memoryControllerOn() bool {
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return strings.Contains(" "+strings.TrimSpace(string(b))+" ", " memory ")
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes")
	return err == nil
}

// oomKills reads the kernel's count from either cgroup version.
func TestOOMKills(t *testing.T) {
	root := t.TempDir()
	v1 := filepath.Join(root, "memory", "edge", "n1", "c1")
	v2 := filepath.Join(root, "edge", "n1", "c2")
	os.MkdirAll(v1, 0o755)
	os.MkdirAll(v2, 0o755)
	os.WriteFile(filepath.Join(v1, "memory.oom_control"), []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"), 0o644)
	os.WriteFile(filepath.Join(v2, "memory.events"), []byte("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n"), 0o644)
	for path, want := range map[string]int64{"/edge/n1/c1": 2, "/edge/n1/c2": 1, "/edge/n1/gone": -1} {
		if got := oomKills(root, path); got != want {
			t.Errorf("oomKills(%s) = %d, want %d", path, got, want)
		}
	}
}

// An agent killed between preparing a container's snapshot and recording
// the container leaves the snapshot behind: creating the container again
// takes it over instead of failing with "already exists" for ever.
func TestContainerdCreateAfterInterruptedCreate(t *testing.T) {
	r := startContainerd(t)
	ctx := r.ns(context.Background())
	img, err := r.client.GetImage(ctx, testImage)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Unpack(ctx, ""); err != nil {
		t.Fatal(err)
	}
	diffs, err := img.RootFS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := "stale.app.1"
	parent := identity.ChainID(diffs).String()
	if _, err := r.client.SnapshotService("").Prepare(ctx, id, parent); err != nil {
		t.Fatal(err)
	}
	cfg := &core.ContainerConfig{ID: id, Image: testImage, HostNetwork: true, Command: []string{"true"}}
	if err := r.CreateContainer(ctx, cfg); err != nil {
		t.Fatalf("create over a left-over snapshot: %v", err)
	}
	if err := r.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// A security context on the real runtime: the process's user and groups,
// a read-only root, capabilities and no new privileges; runAsNonRoot
// refuses the (root) test image.
func TestContainerdSecurityContext(t *testing.T) {
	r := startContainerd(t)
	ctx := context.Background()
	uid, gid := uint32(1000), uint32(3000)
	id := "sec.app.1"
	cfg := &core.ContainerConfig{ID: id, Image: testImage, HostNetwork: true, UID: &uid, GID: &gid, AdditionalGIDs: []uint32{2000},
		ReadOnlyRoot: true, NoNewPrivileges: true, CapDrop: []string{"ALL"}, CapAdd: []string{"CAP_NET_BIND_SERVICE"}, SeccompDefault: true,
		Command: []string{"sh", "-c", "id; touch /x 2>/dev/null && echo writable || echo read-only; grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; echo " + endOfOutput}}
	logPath := filepath.Join(t.TempDir(), "sec.log")
	runToExit(t, r, cfg, logPath)
	out := waitLog(t, logPath)
	for _, want := range []string{"uid=1000", "gid=3000", "2000", "read-only", "CapBnd:\t0000000000000400", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	r.DeleteTask(ctx, id)
	r.RemoveContainer(ctx, id)

	root := &core.ContainerConfig{ID: "nonroot.app.1", Image: testImage, HostNetwork: true, RunAsNonRoot: true, Command: []string{"true"}}
	if err := r.CreateContainer(ctx, root); core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "runs as root") {
		t.Fatalf("runAsNonRoot with a root image: %v", err)
	}
}

// A hostPath of a character device is made in the container with a cgroup
// rule that lets it open the device, without privileged; without the rule
// the device cgroup refuses it. The device is a node with no driver (major
// 240, for local use), so opening it fails with ENXIO once the cgroup lets
// it through, and with EPERM while it does not.
func TestContainerdDevice(t *testing.T) {
	r := startContainerd(t)
	ctx := context.Background()
	dev := filepath.Join(t.TempDir(), "ttyZB0")
	if err := syscall.Mknod(dev, syscall.S_IFCHR|0o666, int(unix.Mkdev(240, 7))); err != nil {
		t.Fatal(err)
	}
	link := dev + "-by-id" // as /dev/serial/by-id/... links to the tty
	if err := os.Symlink(dev, link); err != nil {
		t.Fatal(err)
	}
	pod := &core.Pod{Spec: core.PodSpec{Volumes: []core.Volume{{Name: "zb", HostPath: &core.HostPathVolumeSource{Path: link, Type: "CharDevice"}}}}}
	ctr := &core.Container{VolumeMounts: []core.VolumeMount{{Name: "zb", MountPath: "/dev/ttyACM0"}}}
	devs, err := devices(pod, ctr)
	if err != nil || len(devs) != 1 || devs[0].HostPath != dev || devs[0].Permissions != "rwm" {
		t.Fatalf("devices: %+v, %v", devs, err)
	}
	// The script's output goes to a file on a mounted directory: a
	// container this short may exit before its log is copied.
	out := t.TempDir()
	run := func(id string, devs []core.Device, script string) string {
		cfg := &core.ContainerConfig{ID: id, Image: testImage, HostNetwork: true, Devices: devs,
			Mounts:  []core.Mount{{Source: out, Destination: "/out"}},
			Command: []string{"sh", "-c", "(" + script + ") >/out/" + id + " 2>&1"}}
		defer r.RemoveContainer(ctx, id)
		defer r.DeleteTask(ctx, id)
		runToExit(t, r, cfg, filepath.Join(t.TempDir(), id+".log"))
		b, _ := os.ReadFile(filepath.Join(out, id))
		return string(b)
	}
	if out := run("dev.app.1", devs, "ls -l /dev/ttyACM0; cat /dev/ttyACM0"); !strings.Contains(out, "240,   7") || !strings.Contains(out, "No such device or address") {
		t.Errorf("with the device rule:\n%s", out)
	}
	// The same node made by hand in the container, without the rule: the
	// device cgroup refuses it.
	if out := run("dev.app.2", nil, "mknod /dev/ttyACM0 c 240 7 && ls -l /dev/ttyACM0; cat /dev/ttyACM0"); !strings.Contains(out, "240,   7") ||
		!strings.Contains(out, "Operation not permitted") {
		t.Errorf("without its cgroup rule:\n%s", out)
	}
	if _, err := devices(&core.Pod{Spec: core.PodSpec{Volumes: []core.Volume{{Name: "zb", HostPath: &core.HostPathVolumeSource{Path: t.TempDir(), Type: "CharDevice"}}}}}, ctr); err == nil || !strings.Contains(err.Error(), "is not a device") {
		t.Errorf("a directory as CharDevice: %v", err)
	}
}

// A termination message file bind-mounted at /dev/termination-log is
// writable by a non-root container, and what it wrote is on the node after
// it exits.
func TestContainerdTerminationMessageFile(t *testing.T) {
	r := startContainerd(t)
	w := &podWorker{a: &Agent{RunDir: t.TempDir()}, uid: "u1"}
	c := &core.Container{Name: "app"}
	m, err := w.terminationMount(c)
	if err != nil {
		t.Fatal(err)
	}
	uid := uint32(1000)
	id := "msg.app.1"
	cfg := &core.ContainerConfig{ID: id, Image: testImage, HostNetwork: true, UID: &uid, ReadOnlyRoot: true, Mounts: []core.Mount{m},
		Command: []string{"sh", "-c", "echo 'config missing' > /dev/termination-log; exit 3"}}
	if st := runToExit(t, r, cfg, filepath.Join(t.TempDir(), "app.log")); st.ExitCode != 3 {
		t.Fatalf("exit %d", st.ExitCode)
	}
	if msg := w.terminationMessage(&core.Pod{}, c, 3); msg != "config missing\n" {
		t.Fatalf("termination message %q", msg)
	}
}

// mountPropagation for real: with HostToContainer (rslave) a mount the
// node makes under a hostPath after the start appears in the container;
// without it (rprivate) it does not.
func TestContainerdMountPropagation(t *testing.T) {
	r := startContainerd(t)
	ctx := context.Background()
	host := t.TempDir()
	// A shared mount of its own, so the test does not depend on how the
	// machine's / propagates.
	if out, err := exec.Command("mount", "-t", "tmpfs", "tmpfs", host).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-R", "-l", host).Run() })
	if out, err := exec.Command("mount", "--make-rshared", host).CombinedOutput(); err != nil {
		t.Fatalf("make-rshared: %v %s", err, out)
	}
	run := func(id, propagation string) {
		cfg := &core.ContainerConfig{ID: id, Image: testImage, HostNetwork: true, Command: []string{"sleep", "300"},
			Mounts: []core.Mount{{Source: host, Destination: "/host", ReadOnly: true, Propagation: propagation}}}
		if err := r.CreateContainer(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if err := r.StartTask(ctx, id, filepath.Join(t.TempDir(), id+".log")); err != nil {
			t.Fatal(err)
		}
	}
	run("prop.slave.1", propagation(core.PropagationHostToContainer))
	run("prop.private.1", propagation(core.PropagationNone))
	sub := filepath.Join(host, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "tmpfs", sub).CombinedOutput(); err != nil {
		t.Fatalf("mount under the hostPath: %v %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(sub, "seen"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]int{"prop.slave.1": 0, "prop.private.1": 1} {
		if code, err := r.Exec(ctx, id, []string{"test", "-f", "/host/sub/seen"}); err != nil || code != want {
			t.Errorf("%s: the node's new mount seen: exit %d (%v), want %d", id, code, err, want)
		}
	}
}

// runToExit creates cfg's container, starts its task logging to logPath
// and returns how the task ended; the caller removes task and container.
func runToExit(t *testing.T, r *containerdRuntime, cfg *core.ContainerConfig, logPath string) core.TaskStatus {
	t.Helper()
	ctx := context.Background()
	if err := r.CreateContainer(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.StartTask(ctx, cfg.ID, logPath); err != nil {
		t.Fatal(err)
	}
	wait, err := r.WaitTask(ctx, cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-wait:
		return st
	case <-time.After(slow(30 * time.Second)):
		t.Fatal("the container did not finish")
	}
	return core.TaskStatus{}
}
