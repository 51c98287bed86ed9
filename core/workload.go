package core

// PodTemplateSpec describes the pods a workload creates.
type PodTemplateSpec struct {
	Metadata ObjectMeta `json:"metadata,omitempty"`
	Spec     PodSpec    `json:"spec"`
}

// Deployment keeps a number of identical pods running.
type Deployment struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta       `json:"metadata"`
	Spec     DeploymentSpec   `json:"spec"`
	Status   DeploymentStatus `json:"status,omitempty"`
}

func (d *Deployment) GetTypeMeta() *TypeMeta { return &d.TypeMeta }
func (d *Deployment) GetMeta() *ObjectMeta   { return &d.Metadata }

type DeploymentSpec struct {
	Replicas             *int32             `json:"replicas,omitempty"`
	Selector             *LabelSelector     `json:"selector"`
	Template             PodTemplateSpec    `json:"template"`
	Strategy             DeploymentStrategy `json:"strategy,omitempty"`
	MinReadySeconds      int32              `json:"minReadySeconds,omitempty"`
	RevisionHistoryLimit *int32             `json:"revisionHistoryLimit,omitempty"`
}

const (
	StrategyRollingUpdate = "RollingUpdate"
	StrategyRecreate      = "Recreate"
)

type DeploymentStrategy struct {
	Type          string                 `json:"type,omitempty"`
	RollingUpdate *RollingUpdateStrategy `json:"rollingUpdate,omitempty"`
}

type RollingUpdateStrategy struct {
	MaxSurge       *IntOrString `json:"maxSurge,omitempty"`
	MaxUnavailable *IntOrString `json:"maxUnavailable,omitempty"`
}

type DeploymentStatus struct {
	ObservedGeneration int64  `json:"observedGeneration,omitempty"`
	Replicas           int32  `json:"replicas"`
	UpdatedReplicas    int32  `json:"updatedReplicas"`
	ReadyReplicas      int32  `json:"readyReplicas"`
	AvailableReplicas  int32  `json:"availableReplicas"`
	TemplateHash       string `json:"templateHash,omitempty"`
	// History holds the templates rolled out, oldest first, the current one
	// last (at most revisionHistoryLimit+1): what rollout undo returns to.
	History []Revision `json:"history,omitempty"`
}

// Revision is one rolled-out pod template.
type Revision struct {
	Revision int64           `json:"revision"`
	Hash     string          `json:"hash"`
	Template PodTemplateSpec `json:"template"`
	Time     *Time           `json:"time,omitempty"` // when it was first rolled out
}

// DesiredReplicas returns spec.replicas, defaulting to 1.
func (d *Deployment) DesiredReplicas() int {
	if d.Spec.Replicas == nil {
		return 1
	}
	return int(*d.Spec.Replicas)
}

// DaemonSet runs one pod on every matching node.
type DaemonSet struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta      `json:"metadata"`
	Spec     DaemonSetSpec   `json:"spec"`
	Status   DaemonSetStatus `json:"status,omitempty"`
}

func (d *DaemonSet) GetTypeMeta() *TypeMeta { return &d.TypeMeta }
func (d *DaemonSet) GetMeta() *ObjectMeta   { return &d.Metadata }

type DaemonSetSpec struct {
	Selector *LabelSelector  `json:"selector"`
	Template PodTemplateSpec `json:"template"`
}

type DaemonSetStatus struct {
	ObservedGeneration     int64 `json:"observedGeneration,omitempty"`
	DesiredNumberScheduled int32 `json:"desiredNumberScheduled"`
	CurrentNumberScheduled int32 `json:"currentNumberScheduled"`
	NumberReady            int32 `json:"numberReady"`
	UpdatedNumberScheduled int32 `json:"updatedNumberScheduled"`
	NumberAvailable        int32 `json:"numberAvailable"`
}

// Service exposes a set of pods under one address.
type Service struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta    `json:"metadata"`
	Spec     ServiceSpec   `json:"spec"`
	Status   ServiceStatus `json:"status,omitempty"`
}

func (s *Service) GetTypeMeta() *TypeMeta { return &s.TypeMeta }
func (s *Service) GetMeta() *ObjectMeta   { return &s.Metadata }

const (
	ServiceClusterIP = "ClusterIP"
	ServiceNodePort  = "NodePort"
)

type ServiceSpec struct {
	Type      string            `json:"type,omitempty"`
	Selector  map[string]string `json:"selector,omitempty"`
	Ports     []ServicePort     `json:"ports,omitempty"`
	ClusterIP string            `json:"clusterIP,omitempty"`
}

type ServicePort struct {
	Name       string      `json:"name,omitempty"`
	Protocol   string      `json:"protocol,omitempty"`
	Port       int32       `json:"port"`
	TargetPort IntOrString `json:"targetPort,omitempty"`
	NodePort   int32       `json:"nodePort,omitempty"`
}

type ServiceStatus struct{}

// Namespace groups namespaced objects.
type Namespace struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta      `json:"metadata"`
	Status   NamespaceStatus `json:"status,omitempty"`
}

func (n *Namespace) GetTypeMeta() *TypeMeta { return &n.TypeMeta }
func (n *Namespace) GetMeta() *ObjectMeta   { return &n.Metadata }

type NamespaceStatus struct {
	Phase string `json:"phase,omitempty"`
}
