package core

// Node is a worker running edgeagent.
type Node struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     NodeSpec   `json:"spec"`
	Status   NodeStatus `json:"status,omitempty"`
}

func (n *Node) GetTypeMeta() *TypeMeta { return &n.TypeMeta }
func (n *Node) GetMeta() *ObjectMeta   { return &n.Metadata }

// Well-known node labels, set by the agent.
const (
	LabelArch     = "kubernetes.io/arch"
	LabelOS       = "kubernetes.io/os"
	LabelHostname = "kubernetes.io/hostname"
)

type NodeSpec struct {
	Unschedulable bool `json:"unschedulable,omitempty"`
	// PodCIDR is the node's pod subnet, given by the master out of the
	// cluster CIDR when the node first registers; it stays the node's until
	// the node is deleted.
	PodCIDR string `json:"podCIDR,omitempty"`
	// Taints keep pods without a matching toleration away.
	Taints []Taint `json:"taints,omitempty"`
}

// InternalIP returns the node's LAN address as its agent reports it.
func (n *Node) InternalIP() string {
	for _, a := range n.Status.Addresses {
		if a.Type == "InternalIP" {
			return a.Address
		}
	}
	return ""
}

type NodeStatus struct {
	Capacity    ResourceList    `json:"capacity,omitempty"`
	Allocatable ResourceList    `json:"allocatable,omitempty"`
	Conditions  []NodeCondition `json:"conditions,omitempty"`
	Addresses   []NodeAddress   `json:"addresses,omitempty"`
	NodeInfo    NodeSystemInfo  `json:"nodeInfo,omitempty"`
	Images      []NodeImage     `json:"images,omitempty"`
	// VolumeDir is where the agent keeps provisioned volumes ("": it
	// provisions none); Volumes names those whose directories it holds.
	VolumeDir string   `json:"volumeDir,omitempty"`
	Volumes   []string `json:"volumes,omitempty"`
}

type NodeCondition struct {
	Type               string `json:"type"`
	Status             string `json:"status"`
	Reason             string `json:"reason,omitempty"`
	Message            string `json:"message,omitempty"`
	LastTransitionTime *Time  `json:"lastTransitionTime,omitempty"`
}

type NodeAddress struct {
	Type    string `json:"type"`
	Address string `json:"address"`
}

type NodeSystemInfo struct {
	MachineID               string `json:"machineID,omitempty"`
	KernelVersion           string `json:"kernelVersion"`
	OSImage                 string `json:"osImage"`
	ContainerRuntimeVersion string `json:"containerRuntimeVersion"`
	KubeletVersion          string `json:"kubeletVersion"`
	OperatingSystem         string `json:"operatingSystem"`
	Architecture            string `json:"architecture"`
}

type NodeImage struct {
	Names     []string `json:"names"`
	SizeBytes int64    `json:"sizeBytes,omitempty"`
}

// Ready returns the status of the node's Ready condition ("True", "False",
// "Unknown"); a node that never reported is Unknown.
func (n *Node) Ready() string {
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status
		}
	}
	return ConditionUnknown
}

// SetReady sets the Ready condition; it reports whether anything changed.
func (n *Node) SetReady(status, reason, message string, now *Time) bool {
	for i, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			if c.Status == status && c.Reason == reason && c.Message == message {
				return false
			}
			if c.Status != status {
				c.LastTransitionTime = now
			}
			c.Status, c.Reason, c.Message = status, reason, message
			n.Status.Conditions[i] = c
			return true
		}
	}
	// First, where the merge of an agent's report keeps it (nodeConditions).
	n.Status.Conditions = append([]NodeCondition{{Type: "Ready", Status: status, Reason: reason, Message: message, LastTransitionTime: now}}, n.Status.Conditions...)
	return true
}

// HasImage reports whether the node reported holding image ref.
func (n *Node) HasImage(ref string) bool {
	norm := NormalizeImage(ref)
	for _, img := range n.Status.Images {
		for _, name := range img.Names {
			if name == ref || NormalizeImage(name) == norm {
				return true
			}
		}
	}
	return false
}
