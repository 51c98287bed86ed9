package core

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Pod is a group of containers scheduled together on one node.
type Pod struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     PodSpec    `json:"spec"`
	Status   PodStatus  `json:"status,omitempty"`
}

func (p *Pod) GetTypeMeta() *TypeMeta { return &p.TypeMeta }
func (p *Pod) GetMeta() *ObjectMeta   { return &p.Metadata }

type RestartPolicy string

const (
	RestartAlways    RestartPolicy = "Always"
	RestartOnFailure RestartPolicy = "OnFailure"
	RestartNever     RestartPolicy = "Never"
)

type PodSpec struct {
	Containers    []Container       `json:"containers"`
	Volumes       []Volume          `json:"volumes,omitempty"`
	NodeSelector  map[string]string `json:"nodeSelector,omitempty"`
	NodeName      string            `json:"nodeName,omitempty"`
	RestartPolicy RestartPolicy     `json:"restartPolicy,omitempty"`
	HostNetwork   bool              `json:"hostNetwork,omitempty"`
	// InitContainers run one after the other, each to completion, before
	// the containers start; a sidecar among them (restartPolicy: Always)
	// only has to start, and then runs beside them (container_lifecycle.go).
	InitContainers []Container `json:"initContainers,omitempty"`
	// Hostname and Subdomain name the pod in DNS: with a headless service
	// named Subdomain, HOSTNAME.SUBDOMAIN.NS.svc resolves to the pod.
	Hostname        string              `json:"hostname,omitempty"`
	Subdomain       string              `json:"subdomain,omitempty"`
	SecurityContext *PodSecurityContext `json:"securityContext,omitempty"`
	Tolerations     []Toleration        `json:"tolerations,omitempty"`
	Affinity        *Affinity           `json:"affinity,omitempty"`
	// TopologySpreadConstraints keep matching pods evenly over the
	// domains of a node label (hostname: nodes).
	TopologySpreadConstraints []TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
	HostPID                   bool                       `json:"hostPID,omitempty"`
	HostIPC                   bool                       `json:"hostIPC,omitempty"`
	HostAliases               []HostAlias                `json:"hostAliases,omitempty"`
	// DNSPolicy: ClusterFirst (the default) gives the pod the cluster DNS,
	// Default the node's resolv.conf; ClusterFirstWithHostNet gives a
	// hostNetwork pod the cluster DNS.
	DNSPolicy string `json:"dnsPolicy,omitempty"`
	// DNSConfig adds nameservers, search domains and options to what the
	// policy gives (with dnsPolicy None, it is all the pod gets).
	DNSConfig *PodDNSConfig `json:"dnsConfig,omitempty"`
	// EnableServiceLinks false leaves out the services' variables.
	EnableServiceLinks *bool `json:"enableServiceLinks,omitempty"`
	// Accepted with a warning, without effect: there is no service account
	// API, no priority or second scheduler, and image credentials come from
	// the master's --registries.
	ServiceAccountName            string                 `json:"serviceAccountName,omitempty"`
	DeprecatedServiceAccount      string                 `json:"serviceAccount,omitempty"`
	AutomountServiceAccountToken  *bool                  `json:"automountServiceAccountToken,omitempty"`
	SchedulerName                 string                 `json:"schedulerName,omitempty"`
	PriorityClassName             string                 `json:"priorityClassName,omitempty"`
	RuntimeClassName              string                 `json:"runtimeClassName,omitempty"`
	ImagePullSecrets              []LocalObjectReference `json:"imagePullSecrets,omitempty"`
	TerminationGracePeriodSeconds *int64                 `json:"terminationGracePeriodSeconds,omitempty"`
}

type PodDNSConfig struct {
	Nameservers []string             `json:"nameservers,omitempty"`
	Searches    []string             `json:"searches,omitempty"`
	Options     []PodDNSConfigOption `json:"options,omitempty"`
}

type PodDNSConfigOption struct {
	Name  string  `json:"name"`
	Value *string `json:"value,omitempty"`
}

type LocalObjectReference struct {
	Name string `json:"name"`
}

type PullPolicy string

const (
	PullAlways       PullPolicy = "Always"
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullNever        PullPolicy = "Never"
)

type Container struct {
	Name            string          `json:"name"`
	Image           string          `json:"image"`
	ImagePullPolicy PullPolicy      `json:"imagePullPolicy,omitempty"`
	Command         []string        `json:"command,omitempty"`
	Args            []string        `json:"args,omitempty"`
	Env             []EnvVar        `json:"env,omitempty"`
	EnvFrom         []EnvFromSource `json:"envFrom,omitempty"`
	// TerminationMessagePath is the file (default /dev/termination-log)
	// whose content becomes state.terminated.message; the policy
	// FallbackToLogsOnError uses the log's tail when it is empty.
	TerminationMessagePath   string               `json:"terminationMessagePath,omitempty"`
	TerminationMessagePolicy string               `json:"terminationMessagePolicy,omitempty"`
	WorkingDir               string               `json:"workingDir,omitempty"`
	Ports                    []ContainerPort      `json:"ports,omitempty"`
	Resources                ResourceRequirements `json:"resources,omitempty"`
	LivenessProbe            *Probe               `json:"livenessProbe,omitempty"`
	ReadinessProbe           *Probe               `json:"readinessProbe,omitempty"`
	StartupProbe             *Probe               `json:"startupProbe,omitempty"`
	Lifecycle                *Lifecycle           `json:"lifecycle,omitempty"`
	RestartPolicy            string               `json:"restartPolicy,omitempty"` // Always, on an init container only: a sidecar
	VolumeMounts             []VolumeMount        `json:"volumeMounts,omitempty"`
	SecurityContext          *SecurityContext     `json:"securityContext,omitempty"`
	// Stdin, StdinOnce and TTY are accepted with a warning (Job manifests
	// written for kubectl attach carry them); nothing attaches here: the
	// container's stdin is empty and its output goes to the log.
	Stdin     bool `json:"stdin,omitempty"`
	StdinOnce bool `json:"stdinOnce,omitempty"`
	TTY       bool `json:"tty,omitempty"`
}

type EnvVar struct {
	Name      string        `json:"name"`
	Value     string        `json:"value,omitempty"`
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	ContainerPort int32  `json:"containerPort"`
	HostPort      int32  `json:"hostPort,omitempty"`
	Protocol      string `json:"protocol,omitempty"`
}

// ResourceList maps a resource name ("cpu", "memory") to a quantity.
type ResourceList map[string]Quantity

type ResourceRequirements struct {
	Requests ResourceList `json:"requests,omitempty"`
	Limits   ResourceList `json:"limits,omitempty"`
}

type Probe struct {
	Exec                *ExecAction      `json:"exec,omitempty"`
	HTTPGet             *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket           *TCPSocketAction `json:"tcpSocket,omitempty"`
	InitialDelaySeconds int32            `json:"initialDelaySeconds,omitempty"`
	PeriodSeconds       int32            `json:"periodSeconds,omitempty"`
	TimeoutSeconds      int32            `json:"timeoutSeconds,omitempty"`
	SuccessThreshold    int32            `json:"successThreshold,omitempty"`
	FailureThreshold    int32            `json:"failureThreshold,omitempty"`
}

type ExecAction struct {
	Command []string `json:"command,omitempty"`
}

type HTTPGetAction struct {
	Path        string       `json:"path,omitempty"`
	Port        IntOrString  `json:"port"`
	Host        string       `json:"host,omitempty"`
	Scheme      string       `json:"scheme,omitempty"`
	HTTPHeaders []HTTPHeader `json:"httpHeaders,omitempty"`
}

// HTTPHeader is a header a probe or hook sends ("Host" sets the request's
// host name).
type HTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type TCPSocketAction struct {
	Port IntOrString `json:"port"`
	Host string      `json:"host,omitempty"`
}

type VolumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
	SubPath   string `json:"subPath,omitempty"`
	// MountPropagation: None (default), HostToContainer or Bidirectional.
	MountPropagation string `json:"mountPropagation,omitempty"`
}

type Volume struct {
	Name      string                 `json:"name"`
	HostPath  *HostPathVolumeSource  `json:"hostPath,omitempty"`
	EmptyDir  *EmptyDirVolumeSource  `json:"emptyDir,omitempty"`
	ConfigMap *ConfigMapVolumeSource `json:"configMap,omitempty"`
	Secret    *SecretVolumeSource    `json:"secret,omitempty"`

	PersistentVolumeClaim *PersistentVolumeClaimVolumeSource `json:"persistentVolumeClaim,omitempty"`
}

type HostPathVolumeSource struct {
	Path string `json:"path"`
	Type string `json:"type,omitempty"`
}

type EmptyDirVolumeSource struct {
	Medium    string    `json:"medium,omitempty"`
	SizeLimit *Quantity `json:"sizeLimit,omitempty"`
}

type PodPhase string

const (
	PodPending   PodPhase = "Pending"
	PodRunning   PodPhase = "Running"
	PodSucceeded PodPhase = "Succeeded"
	PodFailed    PodPhase = "Failed"
	PodUnknown   PodPhase = "Unknown"
)

type PodStatus struct {
	Phase             PodPhase          `json:"phase,omitempty"`
	Conditions        []PodCondition    `json:"conditions,omitempty"`
	Message           string            `json:"message,omitempty"`
	Reason            string            `json:"reason,omitempty"`
	HostIP            string            `json:"hostIP,omitempty"`
	PodIP             string            `json:"podIP,omitempty"`
	StartTime         *Time             `json:"startTime,omitempty"`
	ContainerStatuses []ContainerStatus `json:"containerStatuses,omitempty"`
	// InitContainerStatuses are the init containers', in spec order.
	InitContainerStatuses []ContainerStatus `json:"initContainerStatuses,omitempty"`
}

type PodCondition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

const (
	ConditionTrue    = "True"
	ConditionFalse   = "False"
	ConditionUnknown = "Unknown"
)

type ContainerStatus struct {
	Name         string         `json:"name"`
	State        ContainerState `json:"state"`
	LastState    ContainerState `json:"lastState,omitempty"`
	Ready        bool           `json:"ready"`
	RestartCount int32          `json:"restartCount"`
	Image        string         `json:"image"`
	ImageID      string         `json:"imageID,omitempty"`
	ContainerID  string         `json:"containerID,omitempty"`
	// Started is true once the container runs and its startup probe, if
	// any, succeeded.
	Started *bool `json:"started,omitempty"`
}

type ContainerState struct {
	Waiting    *ContainerStateWaiting    `json:"waiting,omitempty"`
	Running    *ContainerStateRunning    `json:"running,omitempty"`
	Terminated *ContainerStateTerminated `json:"terminated,omitempty"`
}

type ContainerStateWaiting struct {
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

type ContainerStateRunning struct {
	StartedAt *Time `json:"startedAt,omitempty"`
}

type ContainerStateTerminated struct {
	ExitCode   int32  `json:"exitCode"`
	Signal     int32  `json:"signal,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Message    string `json:"message,omitempty"`
	StartedAt  *Time  `json:"startedAt,omitempty"`
	FinishedAt *Time  `json:"finishedAt,omitempty"`
}

// Condition returns the status of the pod condition typ, or "".
func (s *PodStatus) Condition(typ string) *PodCondition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == typ {
			return &s.Conditions[i]
		}
	}
	return nil
}

// SetCondition adds or replaces the condition of c.Type.
func (s *PodStatus) SetCondition(c PodCondition) {
	if old := s.Condition(c.Type); old != nil {
		*old = c
		return
	}
	s.Conditions = append(s.Conditions, c)
}

// Ready reports whether every container of the pod, and every sidecar, is
// ready, and its node has not stopped answering since.
func (p *Pod) Ready() bool {
	if p.Status.Phase != PodRunning || len(p.Status.ContainerStatuses) == 0 {
		return false
	}
	if c := p.Status.Condition("Ready"); c != nil && c.Status == ConditionFalse && c.Reason == ReasonNodeNotReady {
		return false
	}
	for _, c := range p.Status.ContainerStatuses {
		if !c.Ready {
			return false
		}
	}
	for _, c := range p.Status.InitContainerStatuses {
		if !c.Ready && p.Spec.isSidecar(c.Name) {
			return false
		}
	}
	return true
}

// isSidecar reports whether the init container name is a sidecar.
func (s *PodSpec) isSidecar(name string) bool {
	for i := range s.InitContainers {
		if s.InitContainers[i].Name == name {
			return s.InitContainers[i].IsSidecar()
		}
	}
	return false
}

// Terminal reports whether the pod has finished and will not run again.
func (p *Pod) Terminal() bool {
	return p.Status.Phase == PodSucceeded || p.Status.Phase == PodFailed
}

// Terminating reports whether the pod is being deleted.
func (p *Pod) Terminating() bool { return p.Metadata.DeletionTimestamp != nil }

// Restarts sums the restart counts of the pod's containers.
func (p *Pod) Restarts() int32 {
	var n int32
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}

// GracePeriod returns the termination grace period in seconds (default 30).
func (s *PodSpec) GracePeriod() int64 {
	if s.TerminationGracePeriodSeconds != nil {
		return *s.TerminationGracePeriodSeconds
	}
	return 30
}

// Requests returns the pod's cpu (millicores) and memory (bytes) requests,
// per resource as in Kubernetes: the larger of the containers' sum plus
// every sidecar's, and of what any init container needs while it runs (its
// own request plus the sidecars started before it: init containers run one
// at a time, sidecars stay). A container with limits but no requests
// requests its limits. The spec must have been validated.
func (s *PodSpec) Requests() (milliCPU, memory int64) {
	for i := range s.Containers {
		cpu, mem := s.Containers[i].requests()
		milliCPU += cpu
		memory += mem
	}
	var initCPU, initMem, sideCPU, sideMem int64 // sideX: the sidecars so far
	for i := range s.InitContainers {
		c := &s.InitContainers[i]
		cpu, mem := c.requests()
		if c.IsSidecar() {
			sideCPU, sideMem = sideCPU+cpu, sideMem+mem
			milliCPU, memory = milliCPU+cpu, memory+mem
			cpu, mem = sideCPU, sideMem
		} else {
			cpu, mem = cpu+sideCPU, mem+sideMem
		}
		initCPU, initMem = max(initCPU, cpu), max(initMem, mem)
	}
	return max(milliCPU, initCPU), max(memory, initMem)
}

// requests returns the container's cpu and memory requests, its limits
// where it requests nothing.
func (c *Container) requests() (milliCPU, memory int64) {
	cpu, mem := c.Resources.Requests["cpu"], c.Resources.Requests["memory"]
	if cpu == "" {
		cpu = c.Resources.Limits["cpu"]
	}
	if mem == "" {
		mem = c.Resources.Limits["memory"]
	}
	if cpu != "" {
		milliCPU, _ = cpu.MilliValue()
	}
	if mem != "" {
		memory, _ = mem.Value()
	}
	return milliCPU, memory
}

// OwnerOf returns the controlling owner of a pod, if any.
func (p *Pod) Owner() *OwnerReference {
	for i := range p.Metadata.OwnerReferences {
		if p.Metadata.OwnerReferences[i].Controller {
			return &p.Metadata.OwnerReferences[i]
		}
	}
	return nil
}

// Hash returns a short stable hash of v's JSON form.
func Hash(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10]
}

// PodSpecOf returns the pod spec an object holds (a pod's own, a
// workload's template) and its field path; nil for other kinds.
func PodSpecOf(obj Object) (*PodSpec, string) {
	switch o := obj.(type) {
	case *Pod:
		return &o.Spec, "spec"
	case *Deployment:
		return &o.Spec.Template.Spec, "spec.template.spec"
	case *DaemonSet:
		return &o.Spec.Template.Spec, "spec.template.spec"
	case *StatefulSet:
		return &o.Spec.Template.Spec, "spec.template.spec"
	case *Job:
		return &o.Spec.Template.Spec, "spec.template.spec"
	case *CronJob:
		return &o.Spec.JobTemplate.Spec.Template.Spec, "spec.jobTemplate.spec.template.spec"
	}
	return nil, ""
}
