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
	// ProgressDeadlineSeconds is accepted (kubectl writes it) and not
	// acted on: a rollout here waits for slow links instead of failing.
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`
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
	// UpdateStrategy: RollingUpdate (default) replaces stale pods on at
	// most maxUnavailable nodes at a time; OnDelete only when deleted.
	UpdateStrategy DaemonSetUpdateStrategy `json:"updateStrategy,omitempty"`
	// MinReadySeconds and RevisionHistoryLimit are accepted as Kubernetes
	// writes them.
	MinReadySeconds      int32  `json:"minReadySeconds,omitempty"`
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty"`
}

const DaemonSetOnDelete = "OnDelete"

type DaemonSetUpdateStrategy struct {
	Type          string                  `json:"type,omitempty"`
	RollingUpdate *RollingUpdateDaemonSet `json:"rollingUpdate,omitempty"`
}

type RollingUpdateDaemonSet struct {
	MaxUnavailable *IntOrString `json:"maxUnavailable,omitempty"`
	// MaxSurge is accepted; a node's pod is replaced stop-then-start.
	MaxSurge *IntOrString `json:"maxSurge,omitempty"`
}

// maxUnavailable returns how many nodes may be replacing their pod at
// once, of desired.
func (ds *DaemonSet) maxUnavailable(desired int) int {
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ru == nil || ru.MaxUnavailable == nil {
		return 1
	}
	n, _ := ru.MaxUnavailable.Scaled(desired, true)
	return max(n, 1) // 0 with a surge: replaced one at a time, stop-then-start
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
	ServiceClusterIP    = "ClusterIP"
	ServiceNodePort     = "NodePort"
	ServiceLoadBalancer = "LoadBalancer"

	// ClusterIPNone makes a headless service: no virtual IP, its name
	// resolves to the ready pods' IPs.
	ClusterIPNone = "None"

	AffinityNone     = "None"
	AffinityClientIP = "ClientIP"

	TrafficPolicyCluster = "Cluster"
	TrafficPolicyLocal   = "Local"
)

type ServiceSpec struct {
	Type       string            `json:"type,omitempty"`
	Selector   map[string]string `json:"selector,omitempty"`
	Ports      []ServicePort     `json:"ports,omitempty"`
	ClusterIP  string            `json:"clusterIP,omitempty"`
	ClusterIPs []string          `json:"clusterIPs,omitempty"`
	// SessionAffinity ClientIP sends a client to the same endpoint for
	// SessionAffinityConfig.ClientIP.TimeoutSeconds (default 3 hours).
	SessionAffinity       string                 `json:"sessionAffinity,omitempty"`
	SessionAffinityConfig *SessionAffinityConfig `json:"sessionAffinityConfig,omitempty"`
	// ExternalTrafficPolicy Local sends NodePort and LoadBalancer traffic
	// only to the receiving node's own endpoints, keeping the client's IP.
	ExternalTrafficPolicy string `json:"externalTrafficPolicy,omitempty"`
	// PublishNotReadyAddresses lists pods before they are ready (a
	// headless service of a StatefulSet uses it for peer discovery).
	PublishNotReadyAddresses bool `json:"publishNotReadyAddresses,omitempty"`
	// LoadBalancerIP is accepted for manifests written for MetalLB; like
	// k3s' ServiceLB this cluster answers on every node's address instead.
	LoadBalancerIP string `json:"loadBalancerIP,omitempty"`
	// ExternalIPs are addresses routed to the nodes (by the LAN's router
	// or a VIP) on which the service's ports answer, as kube-proxy does.
	ExternalIPs    []string `json:"externalIPs,omitempty"`
	IPFamilies     []string `json:"ipFamilies,omitempty"`
	IPFamilyPolicy string   `json:"ipFamilyPolicy,omitempty"`
	// AllocateLoadBalancerNodePorts and InternalTrafficPolicy are accepted
	// as Kubernetes writes them; node ports are always allocated and every
	// endpoint serves in-cluster traffic (Cluster).
	AllocateLoadBalancerNodePorts *bool  `json:"allocateLoadBalancerNodePorts,omitempty"`
	InternalTrafficPolicy         string `json:"internalTrafficPolicy,omitempty"`
}

type SessionAffinityConfig struct {
	ClientIP *ClientIPConfig `json:"clientIP,omitempty"`
}

type ClientIPConfig struct {
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`
}

type ServicePort struct {
	Name       string      `json:"name,omitempty"`
	Protocol   string      `json:"protocol,omitempty"`
	Port       int32       `json:"port"`
	TargetPort IntOrString `json:"targetPort,omitempty"`
	NodePort   int32       `json:"nodePort,omitempty"`
}

type ServiceStatus struct {
	LoadBalancer LoadBalancerStatus `json:"loadBalancer"`
}

type LoadBalancerStatus struct {
	Ingress []LoadBalancerIngress `json:"ingress,omitempty"`
}

type LoadBalancerIngress struct {
	IP string `json:"ip"`
}

// Headless reports whether s has no cluster IP.
func (s *Service) Headless() bool { return s.Spec.ClusterIP == ClusterIPNone }

// AffinityTimeout returns how long ClientIP affinity holds, in seconds.
func (s *Service) AffinityTimeout() int32 {
	if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		return *c.ClientIP.TimeoutSeconds
	}
	return 10800
}

// Endpoints lists the addresses behind a service, as Kubernetes' v1
// Endpoints: the endpoints controller keeps one per service with a
// selector; a service without one takes an Endpoints object applied by hand.
type Endpoints struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta       `json:"metadata"`
	Subsets  []EndpointSubset `json:"subsets"`
}

func (e *Endpoints) GetTypeMeta() *TypeMeta { return &e.TypeMeta }
func (e *Endpoints) GetMeta() *ObjectMeta   { return &e.Metadata }

// EndpointSubset is a set of addresses sharing one set of ports (a named
// target port may be a different number in different pods).
type EndpointSubset struct {
	Addresses         []EndpointAddress `json:"addresses,omitempty"`
	NotReadyAddresses []EndpointAddress `json:"notReadyAddresses,omitempty"`
	Ports             []EndpointPort    `json:"ports,omitempty"`
}

type EndpointAddress struct {
	IP        string           `json:"ip"`
	Hostname  string           `json:"hostname,omitempty"`
	NodeName  string           `json:"nodeName,omitempty"`
	TargetRef *ObjectReference `json:"targetRef,omitempty"`
}

type EndpointPort struct {
	Name     string `json:"name,omitempty"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// Namespace groups namespaced objects.
type Namespace struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta      `json:"metadata"`
	Spec     NamespaceSpec   `json:"spec,omitempty"`
	Status   NamespaceStatus `json:"status,omitempty"`
}

// NamespaceSpec's finalizers are accepted as exported namespaces carry
// them; deleting a namespace deletes its contents here anyway.
type NamespaceSpec struct {
	Finalizers []string `json:"finalizers,omitempty"`
}

func (n *Namespace) GetTypeMeta() *TypeMeta { return &n.TypeMeta }
func (n *Namespace) GetMeta() *ObjectMeta   { return &n.Metadata }

type NamespaceStatus struct {
	Phase string `json:"phase,omitempty"`
}
