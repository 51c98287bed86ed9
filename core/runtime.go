package core

import (
	"context"
	"syscall"
	"time"
)

// Runtime is a node's container runtime as the agent's pod worker uses it:
// images, containers created from a ContainerConfig, their tasks (a
// container's running process) and the stream of exits.
//
// It lives here with the other service interfaces, in the domain's terms
// (no containerd types), for the same reason Store does: the worker's
// riskiest logic (restart backoff, probes, OOM reporting, pull failures,
// graceful teardown) is then tested against an in-memory runtime, and
// containerd is one adapter (edgeagent/containerd.go). Only the agent uses
// it; the master never does.
//
// Containers carry the caller's ids and labels, which is all an agent needs
// to adopt them after it restarts. Errors carry the codes named on each
// method; any method may also return EUNAVAILABLE while the runtime does not
// answer.
type Runtime interface {
	// Version returns the runtime's name and version.
	Version(ctx context.Context) (string, error)

	// Image returns the image ref (a normalised reference) if it is present;
	// ENOTFOUND otherwise.
	Image(ctx context.Context, ref string) (ContainerImage, error)
	// PullImage fetches ref from its registry and makes it ready to run.
	// progress (may be nil) is called now and then while it runs, never
	// after PullImage returns. A pull cut short keeps what it fetched: the
	// next one resumes there. EUNAVAILABLE: the registry cannot be reached;
	// EINVALID: it sent content that does not match its digest (refused).
	PullImage(ctx context.Context, ref string, progress func(PullProgress)) (ContainerImage, error)
	// Images lists the images present.
	Images(ctx context.Context) ([]ContainerImage, error)
	// ImageDisk lists the images present with what each holds on disk and
	// when it was last used: a container created from it, or the last of
	// those removed (else when it was stored), for garbage collection
	// under a disk budget.
	ImageDisk(ctx context.Context) ([]ImageDisk, error)
	// RemoveImage deletes image ref (a name ImageDisk listed) and returns
	// once what no other image or container holds is freed. Removing an
	// image that is not there is not an error.
	RemoveImage(ctx context.Context, ref string) error

	// CreateContainer creates a container (its filesystem and process
	// settings, not its task). ECONFLICT if cfg.ID exists, ENOTFOUND if
	// its image is not present.
	CreateContainer(ctx context.Context, cfg *ContainerConfig) error
	// Container returns what the runtime knows of container id; ENOTFOUND
	// if there is none.
	Container(ctx context.Context, id string) (*ContainerInfo, error)
	// Containers lists the containers whose labels match selector; an empty
	// value matches any value of its key.
	Containers(ctx context.Context, selector map[string]string) ([]*ContainerInfo, error)
	// SetLabels adds or replaces labels of container id; ENOTFOUND if
	// there is none.
	SetLabels(ctx context.Context, id string, labels map[string]string) error
	// RemoveContainer deletes container id and its filesystem; its task
	// must be deleted first (ECONFLICT otherwise). Removing a container
	// that is not there is not an error.
	RemoveContainer(ctx context.Context, id string) error

	// Task returns the status of container id's task; ENOTFOUND if it has
	// none (never started, or deleted).
	Task(ctx context.Context, id string) (TaskStatus, error)
	// StartTask creates and starts container id's task, appending its
	// stdout and stderr to logPath. ECONFLICT if it has a task already,
	// ENOTFOUND if there is no such container.
	StartTask(ctx context.Context, id, logPath string) error
	// WaitTask returns a channel that receives the task's status once it
	// has stopped (at once if it has). Call it before signalling the task,
	// so the exit cannot be missed. ENOTFOUND if there is no task.
	WaitTask(ctx context.Context, id string) (<-chan TaskStatus, error)
	// Signal sends sig to every process of container id's task; ENOTFOUND
	// if it has none.
	Signal(ctx context.Context, id string, sig syscall.Signal) error
	// DeleteTask removes container id's task, killing it if it still runs.
	// Deleting a task that is not there is not an error.
	DeleteTask(ctx context.Context, id string) error
	// Exec runs cmd inside container id's running task, with the task's
	// user, environment and working directory, and returns its exit code.
	// ctx bounds how long it may take.
	Exec(ctx context.Context, id string, cmd []string) (int, error)

	// Events streams the exits of containers' tasks (not of processes
	// started by Exec) and OOM kills. The channel is closed when
	// ctx ends or the stream breaks (the runtime restarted): the caller
	// subscribes again, and must assume it missed events in between.
	Events(ctx context.Context) (<-chan RuntimeEvent, error)
}

// ContainerImage is an image present on a node.
type ContainerImage struct {
	Name string // normalised reference, e.g. docker.io/library/busybox:latest
	ID   string // digest of its manifest or index
	Size int64  // bytes of its manifest or index (what containerd reports)
}

// ImageDisk is an image present on a node, as its garbage collection
// weighs it.
type ImageDisk struct {
	ContainerImage
	LastUsed time.Time
	// Parts are what it holds on disk: its blobs (manifests, config,
	// layers) and its unpacked snapshots, each under a key that another
	// image holding the same part shares.
	Parts []ImagePart
}

// ImagePart is a blob or snapshot an image holds, and its size in bytes.
type ImagePart struct {
	Key  string
	Size int64
}

// PullProgress is how far a pull got: bytes of the image's content the
// node holds (fetched now, or before an interruption) of Total; Total is 0
// until the image's manifest is known. Retry, when set, says why the
// transfer stopped and that it resumes.
type PullProgress struct {
	Done, Total int64
	Retry       string
	// Source is where the bytes come from when not the master ("peer w2").
	Source string
}

// ContainerConfig is everything a container is created from. The agent
// computes it from a pod; the runtime turns it into its own spec.
type ContainerConfig struct {
	ID     string
	Image  string // a present image's normalised reference
	Labels map[string]string
	// Command replaces the image's entrypoint and command; Args, when
	// Command is empty, replaces only the image's command.
	Command    []string
	Args       []string
	Env        []string // NAME=value, added to (and overriding) the image's
	WorkingDir string
	Hostname   string // empty: the runtime's default
	// HostNetwork runs the container in the node's network namespace;
	// otherwise it joins the namespace bind-mounted at NetNSPath.
	HostNetwork bool
	NetNSPath   string
	Mounts      []Mount
	Privileged  bool
	Resources   ContainerResources
	// Who the process runs as (nil: the image's user) and what it may do.
	UID, GID        *uint32
	AdditionalGIDs  []uint32
	RunAsNonRoot    bool // refuse to start as root (the image's user included)
	ReadOnlyRoot    bool
	NoNewPrivileges bool
	CapAdd, CapDrop []string // CAP_ names; "ALL" in CapDrop drops every default one
	SeccompDefault  bool     // the runtime's default seccomp profile
	HostPID         bool
	HostIPC         bool
	// Devices are the node's device files made in the container, with the
	// cgroup rule that lets it use them (a hostPath of a serial port for a
	// Zigbee stick), without privileged.
	Devices []Device
}

// Device is a node's device file exposed in a container.
type Device struct {
	HostPath      string // resolved: no symlinks
	ContainerPath string
	Permissions   string // cgroup access: "rwm", or "rm" read-only
}

// ContainerResources are a container's cgroup limits.
type ContainerResources struct {
	// MemoryLimit in bytes, 0 for none. Where the host accounts swap, the
	// runtime caps memory plus swap at the same value, as the kubelet does:
	// a container must not use swap to grow past its limit.
	MemoryLimit int64
	CPUQuota    int64  // microseconds per CPUPeriod, 0 for none
	CPUPeriod   int64  // microseconds
	CPUShares   uint64 // relative weight
	PidsLimit   int64  // 0 for none
}

// Mount is a bind mount of a host path into a container.
type Mount struct {
	Source      string
	Destination string
	ReadOnly    bool
	// Propagation is the bind's propagation: "" (rprivate), "rslave"
	// (mounts the host makes below Source appear in the container) or
	// "rshared" (both ways).
	Propagation string
}

// ContainerInfo is what the runtime knows of a container.
type ContainerInfo struct {
	ID        string
	Image     string
	Labels    map[string]string
	CreatedAt time.Time
}

// TaskState is the state of a container's task.
type TaskState string

const (
	// TaskCreated is a task created but not started: a start interrupted
	// by an agent crash.
	TaskCreated TaskState = "created"
	TaskRunning TaskState = "running"
	TaskStopped TaskState = "stopped"
)

// TaskStatus is the state of a task, with its exit once stopped.
type TaskStatus struct {
	State    TaskState
	ExitCode int32     // when stopped; 128+n after signal n
	ExitedAt time.Time // when stopped; zero if unknown
	// OOMKilled says, when stopped, that the kernel's OOM killer killed a
	// process of the container, as its memory cgroup counts it: known
	// whatever order the runtime's events came in, and after an agent
	// restart.
	OOMKilled bool
}

// RuntimeEventType says what a RuntimeEvent reports.
type RuntimeEventType string

const (
	RuntimeTaskExit RuntimeEventType = "exit" // the container's task exited
	RuntimeTaskOOM  RuntimeEventType = "oom"  // the kernel OOM-killed a process of the container
)

// RuntimeEvent is something that happened to a container's task.
type RuntimeEvent struct {
	Type        RuntimeEventType
	ContainerID string
}
