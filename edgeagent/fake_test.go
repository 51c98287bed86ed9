package edgeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// fakeClock is a manual clock: time moves only when a test advances it,
// and timers fire then. Backoffs and grace periods of minutes pass in
// microseconds.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Timer implements timerFunc.
func (c *fakeClock) Timer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- c.now
		return t.c, func() bool { return false }
	}
	c.timers = append(c.timers, t)
	return t.c, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, x := range c.timers {
			if x == t {
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
				return true
			}
		}
		return false
	}
}

// Advance moves time on by d and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
		} else {
			t.c <- c.now
		}
	}
	c.timers = kept
}

// timersAt counts the timers set to fire at at.
func (c *fakeClock) timersAt(at time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if t.at.Equal(at) {
			n++
		}
	}
	return n
}

// fakeRuntime is a working in-memory core.Runtime: images, a registry to
// pull from, containers with labels, tasks that run until signalled or
// told to exit, and an event stream. Tests make processes exit, run out
// of memory or ignore SIGTERM, and look at what the worker left behind.
type fakeRuntime struct {
	now func() time.Time

	mu       sync.Mutex
	images   map[string]core.ContainerImage // present on the node
	registry map[string]core.ContainerImage // what a pull can fetch
	pulls    map[string]int
	ctrs     map[string]*fakeContainer
	created  int                         // containers ever created
	signals  map[string][]syscall.Signal // by container id, kept after removal
	sigLog   []string                    // "id SIGNAL" of every signal, in order
	subs     map[chan core.RuntimeEvent]bool
	nsubs    int // subscriptions ever made
	// calls lists the calls of Events and Containers, in order.
	calls []string
	// trapTERM lists containers whose process ignores SIGTERM.
	trapTERM map[string]bool
	// exec answers exec probes; nil answers 0.
	exec func(id string, cmd []string) (int, error)
	// execCtx, when set, answers instead of exec, and may wait on ctx
	// (a hook that runs until its deadline).
	execCtx func(ctx context.Context, id string, cmd []string) (int, error)
	// pulling, when set, runs inside PullImage before it answers (a pull
	// that takes a while: it may report progress, or wait on ctx).
	pulling func(ctx context.Context, ref string, progress func(core.PullProgress)) error
	// Image GC: when each image was stored or last used, what each holds
	// on disk (default: one part of its own, Size bytes), what was removed.
	lastUsed map[string]time.Time
	parts    map[string][]core.ImagePart
	removed  []string
	// removeErr makes RemoveImage of an image fail.
	removeErr map[string]error
}

type fakeContainer struct {
	info   core.ContainerInfo
	cfg    core.ContainerConfig
	task   *fakeTask
	starts int
}

type fakeTask struct {
	status  core.TaskStatus
	waiters []chan core.TaskStatus
}

func newFakeRuntime(now func() time.Time) *fakeRuntime {
	return &fakeRuntime{now: now, images: map[string]core.ContainerImage{}, registry: map[string]core.ContainerImage{},
		pulls: map[string]int{}, ctrs: map[string]*fakeContainer{}, subs: map[chan core.RuntimeEvent]bool{},
		trapTERM: map[string]bool{}, signals: map[string][]syscall.Signal{}}
}

func fakeImage(ref string) core.ContainerImage {
	name := core.NormalizeImage(ref)
	return core.ContainerImage{Name: name, ID: "sha256:" + fmt.Sprintf("%064x", len(name)), Size: 1234}
}

func (r *fakeRuntime) addImage(ref string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.images[core.NormalizeImage(ref)] = fakeImage(ref)
	r.used(core.NormalizeImage(ref))
}

// used records that image name was stored or used now (r.mu held).
func (r *fakeRuntime) used(name string) {
	if r.lastUsed == nil {
		r.lastUsed = map[string]time.Time{}
	}
	r.lastUsed[name] = r.now()
}

// setParts says what image ref holds on disk.
func (r *fakeRuntime) setParts(ref string, parts ...core.ImagePart) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.parts == nil {
		r.parts = map[string][]core.ImagePart{}
	}
	r.parts[core.NormalizeImage(ref)] = parts
}

func (r *fakeRuntime) ImageDisk(context.Context) ([]core.ImageDisk, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []core.ImageDisk
	for name, img := range r.images {
		parts, ok := r.parts[name]
		if !ok {
			parts = []core.ImagePart{{Key: img.ID, Size: img.Size}}
		}
		out = append(out, core.ImageDisk{ContainerImage: img, LastUsed: r.lastUsed[name], Parts: parts})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (r *fakeRuntime) RemoveImage(_ context.Context, ref string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.removeErr[ref]; err != nil {
		return err
	}
	if _, ok := r.images[ref]; ok {
		delete(r.images, ref)
		r.removed = append(r.removed, ref)
	}
	return nil
}

func (r *fakeRuntime) removedImages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.removed...)
}

func (r *fakeRuntime) addToRegistry(ref string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.registry[core.NormalizeImage(ref)] = fakeImage(ref)
}

func notFound(what, id string) error { return core.Errorf(core.ENOTFOUND, "%s %q not found", what, id) }

func (r *fakeRuntime) Version(context.Context) (string, error) { return "fake 1.0", nil }

func (r *fakeRuntime) Image(_ context.Context, ref string) (core.ContainerImage, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	img, ok := r.images[ref]
	if !ok {
		return img, notFound("image", ref)
	}
	return img, nil
}

func (r *fakeRuntime) PullImage(ctx context.Context, ref string, progress func(core.PullProgress)) (core.ContainerImage, error) {
	if r.pulling != nil {
		if err := r.pulling(ctx, ref, progress); err != nil {
			r.mu.Lock()
			r.pulls[ref]++
			r.mu.Unlock()
			return core.ContainerImage{}, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pulls[ref]++
	img, ok := r.registry[ref]
	if !ok {
		return img, core.Errorf(core.EUNAVAILABLE, "%s: registry unreachable", ref)
	}
	r.images[ref] = img
	r.used(ref)
	return img, nil
}

func (r *fakeRuntime) Images(context.Context) ([]core.ContainerImage, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []core.ContainerImage
	for _, img := range r.images {
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func copyLabels(l map[string]string) map[string]string {
	out := make(map[string]string, len(l))
	for k, v := range l {
		out[k] = v
	}
	return out
}

func (r *fakeRuntime) CreateContainer(_ context.Context, cfg *core.ContainerConfig) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctrs[cfg.ID] != nil {
		return core.Errorf(core.ECONFLICT, "container %q exists", cfg.ID)
	}
	if _, ok := r.images[cfg.Image]; !ok {
		return notFound("image", cfg.Image)
	}
	r.created++
	r.used(cfg.Image)
	c := &fakeContainer{cfg: *cfg, info: core.ContainerInfo{ID: cfg.ID, Image: cfg.Image, Labels: copyLabels(cfg.Labels), CreatedAt: r.now()}}
	r.ctrs[cfg.ID] = c
	return nil
}

func (r *fakeRuntime) infoOf(c *fakeContainer) *core.ContainerInfo {
	info := c.info
	info.Labels = copyLabels(info.Labels)
	return &info
}

func (r *fakeRuntime) Container(_ context.Context, id string) (*core.ContainerInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.ctrs[id]
	if c == nil {
		return nil, notFound("container", id)
	}
	return r.infoOf(c), nil
}

func (r *fakeRuntime) Containers(_ context.Context, selector map[string]string) ([]*core.ContainerInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "Containers")
	var out []*core.ContainerInfo
next:
	for _, c := range r.ctrs {
		for k, v := range selector {
			if got, ok := c.info.Labels[k]; !ok || (v != "" && got != v) {
				continue next
			}
		}
		out = append(out, r.infoOf(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (r *fakeRuntime) SetLabels(_ context.Context, id string, labels map[string]string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.ctrs[id]
	if c == nil {
		return notFound("container", id)
	}
	for k, v := range labels {
		c.info.Labels[k] = v
	}
	return nil
}

func (r *fakeRuntime) RemoveContainer(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.ctrs[id]
	if c == nil {
		return nil
	}
	if c.task != nil {
		return core.Errorf(core.ECONFLICT, "container %q has a task", id)
	}
	if _, ok := r.images[c.info.Image]; ok {
		r.used(c.info.Image)
	}
	delete(r.ctrs, id)
	return nil
}

// taskOf returns container id's task; the caller holds r.mu.
func (r *fakeRuntime) taskOf(id string) (*fakeContainer, error) {
	c := r.ctrs[id]
	if c == nil {
		return nil, notFound("container", id)
	}
	if c.task == nil {
		return nil, notFound("task", id)
	}
	return c, nil
}

func (r *fakeRuntime) Task(_ context.Context, id string) (core.TaskStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.taskOf(id)
	if err != nil {
		return core.TaskStatus{}, err
	}
	return c.task.status, nil
}

func (r *fakeRuntime) StartTask(_ context.Context, id, logPath string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.ctrs[id]
	if c == nil {
		return notFound("container", id)
	}
	if c.task != nil {
		return core.Errorf(core.ECONFLICT, "container %q has a task", id)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "start %d\n", c.starts)
	f.Close()
	c.starts++
	c.task = &fakeTask{status: core.TaskStatus{State: core.TaskRunning}}
	return nil
}

func (r *fakeRuntime) WaitTask(_ context.Context, id string) (<-chan core.TaskStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.taskOf(id)
	if err != nil {
		return nil, err
	}
	ch := make(chan core.TaskStatus, 1)
	if c.task.status.State == core.TaskStopped {
		ch <- c.task.status
	} else {
		c.task.waiters = append(c.task.waiters, ch)
	}
	return ch, nil
}

func (r *fakeRuntime) Signal(_ context.Context, id string, sig syscall.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.taskOf(id)
	if err != nil {
		return err
	}
	r.signals[id] = append(r.signals[id], sig)
	r.sigLog = append(r.sigLog, id+" "+sig.String())
	if sig == syscall.SIGKILL || (sig == syscall.SIGTERM && !r.trapTERM[c.info.Labels[labelContainer]]) {
		r.stopLocked(c, 128+int32(sig), false)
	}
	return nil
}

func (r *fakeRuntime) DeleteTask(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.taskOf(id)
	if err != nil {
		return nil
	}
	r.stopLocked(c, 137, false)
	c.task = nil
	return nil
}

func (r *fakeRuntime) Exec(ctx context.Context, id string, cmd []string) (int, error) {
	r.mu.Lock()
	c, err := r.taskOf(id)
	if err == nil && c.task.status.State != core.TaskRunning {
		err = core.Errorf(core.ECONFLICT, "task %q is not running", id)
	}
	exec, execCtx := r.exec, r.execCtx
	r.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if execCtx != nil {
		return execCtx(ctx, id, cmd)
	}
	if exec == nil {
		return 0, nil
	}
	return exec(id, cmd)
}

func (r *fakeRuntime) Events(ctx context.Context) (<-chan core.RuntimeEvent, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan core.RuntimeEvent, 256)
	r.subs[ch] = true
	r.nsubs++
	r.calls = append(r.calls, "Events")
	context.AfterFunc(ctx, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.subs[ch] {
			delete(r.subs, ch)
			close(ch)
		}
	})
	return ch, nil
}

// publishLocked sends ev to every subscriber; the caller holds r.mu.
func (r *fakeRuntime) publishLocked(ev core.RuntimeEvent) {
	for ch := range r.subs {
		select {
		case ch <- ev:
		default:
			panic("fake runtime: event subscriber not reading")
		}
	}
}

// stopLocked ends a running task with code; the caller holds r.mu.
func (r *fakeRuntime) stopLocked(c *fakeContainer, code int32, oom bool) {
	r.stopQuietly(c, code, oom, oom)
}

// stopQuietly stops c's task; event says whether an OOM kill is also
// announced on the event stream (the cgroup counts it either way).
func (r *fakeRuntime) stopQuietly(c *fakeContainer, code int32, oom, event bool) {
	if c.task.status.State == core.TaskStopped {
		return
	}
	if event {
		r.publishLocked(core.RuntimeEvent{Type: core.RuntimeTaskOOM, ContainerID: c.info.ID})
	}
	c.task.status = core.TaskStatus{State: core.TaskStopped, ExitCode: code, ExitedAt: r.now(), OOMKilled: oom}
	for _, w := range c.task.waiters {
		w <- c.task.status
	}
	c.task.waiters = nil
	r.publishLocked(core.RuntimeEvent{Type: core.RuntimeTaskExit, ContainerID: c.info.ID})
}

// exit makes container id's process exit with code (a crash, or done).
func (r *fakeRuntime) exit(t testing.TB, id string, code int32) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.taskOf(id)
	if err != nil || c.task.status.State != core.TaskRunning {
		t.Fatalf("exit %s: not running (%v)", id, err)
	}
	r.stopLocked(c, code, false)
}

// oomKill has the kernel kill container id's process for want of memory.
func (r *fakeRuntime) oomKill(t testing.TB, id string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.taskOf(id)
	if err != nil || c.task.status.State != core.TaskRunning {
		t.Fatalf("oom %s: not running (%v)", id, err)
	}
	r.stopLocked(c, 137, true)
}

// oomKillUnannounced is an OOM kill whose event the worker never saw (lost
// with a broken stream, or before an agent restart).
func (r *fakeRuntime) oomKillUnannounced(t testing.TB, id string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.taskOf(id)
	if err != nil || c.task.status.State != core.TaskRunning {
		t.Fatalf("oom %s: not running (%v)", id, err)
	}
	r.stopQuietly(c, 137, true, false)
}

// breakStreams ends every event subscription, as a containerd restart does.
func (r *fakeRuntime) breakStreams() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ch := range r.subs {
		delete(r.subs, ch)
		close(ch)
	}
}

func (r *fakeRuntime) subscriptions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nsubs
}

// state returns container id's task state ("" without a task, "absent"
// without a container), its starts and the signals it ever got.
func (r *fakeRuntime) state(id string) (state core.TaskState, starts int, signals []syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	signals = append([]syscall.Signal(nil), r.signals[id]...)
	c := r.ctrs[id]
	if c == nil {
		return "absent", 0, signals
	}
	if c.task != nil {
		state = c.task.status.State
	}
	return state, c.starts, signals
}

// setTrapTERM makes the processes of containers named name ignore SIGTERM.
func (r *fakeRuntime) setTrapTERM(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trapTERM[name] = true
}

func (r *fakeRuntime) pullCount(ref string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pulls[core.NormalizeImage(ref)]
}

func (r *fakeRuntime) config(id string) *core.ContainerConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.ctrs[id]; c != nil {
		cfg := c.cfg
		return &cfg
	}
	return nil
}

func (r *fakeRuntime) counts() (containers, created int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ctrs), r.created
}

// fakeNetwork hands out pod IPs.
type fakeNetwork struct {
	mu        sync.Mutex
	attached  map[string]string // pod UID -> IP
	next      int
	teardowns int
}

// Setup attaches a pod; like CNI's bridge plugin it refuses a namespace
// that is attached already.
func (n *fakeNetwork) SetPodCIDR(string) error { return nil }

func (n *fakeNetwork) Setup(_ context.Context, uid, _, _, _ string, _ []core.ContainerPort) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.attached == nil {
		n.attached = map[string]string{}
	}
	if _, ok := n.attached[uid]; ok {
		return "", fmt.Errorf("container veth name provided (eth0) already exists")
	}
	n.next++
	ip := fmt.Sprintf("10.42.0.%d", n.next+1)
	n.attached[uid] = ip
	return ip, nil
}

func (n *fakeNetwork) releases() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.teardowns
}

func (n *fakeNetwork) Teardown(_ context.Context, uid, _, _, _ string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.teardowns++
	delete(n.attached, uid)
	return nil
}

// fakeReporter keeps what the agent sends.
type fakeReporter struct {
	mu      sync.Mutex
	reports []*core.NodeReport
	events  []core.PodEvent
}

func (f *fakeReporter) Report(r *core.NodeReport) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports = append(f.reports, r)
	return nil
}

func (f *fakeReporter) Events(events []core.PodEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, events...)
	return nil
}

func (f *fakeReporter) sentReports() []*core.NodeReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*core.NodeReport(nil), f.reports...)
}

func (f *fakeReporter) sent() []core.PodEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]core.PodEvent(nil), f.events...)
}

// newTestAgent returns an agent on rt and clk that needs neither root nor
// containerd: network namespaces are plain files.
func newTestAgent(t *testing.T, rt core.Runtime, clk *fakeClock, dataDir string) *Agent {
	a := &Agent{Name: "pi", DataDir: dataDir, RunDir: t.TempDir(), Runtime: rt, Now: clk.Now, Resync: time.Hour,
		Log: slog.New(slog.DiscardHandler), SystemReserved: core.ResourceList{}}
	a.timer = clk.Timer
	a.createNetNS = func(path string) error {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		return os.WriteFile(path, nil, 0o444)
	}
	a.removeNetNS = func(path string) error {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	return a
}

// waitUntil polls cond until it holds or a deadline passes.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// signalLog returns every signal sent, in order, as "id signal".
func (r *fakeRuntime) signalLog() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.sigLog...)
}
