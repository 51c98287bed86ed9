package core

import (
	"context"
	"fmt"
	"io"
)

// The master<->agent protocol, independent of its transport (mqtt/).

// DesiredState is the full set of pods a node must run. The master publishes
// it retained, so an agent that (re)connects always gets the latest one.
type DesiredState struct {
	Node string `json:"node"`
	// Hash identifies this set; agents report the hash they acted on.
	Hash string `json:"hash"`
	Pods []*Pod `json:"pods"`
	// Prefetch lists images to pull in the background: those of a rollout
	// that will replace pods on this node.
	Prefetch []string `json:"prefetch,omitempty"`
	// Pinned lists the images the node holds that the master pinned
	// (imported air-gapped): the node's image garbage collection never
	// removes them.
	Pinned []string `json:"pinned,omitempty"`
	// PodCIDR is the node's pod subnet ("" until the master gave one).
	PodCIDR string `json:"podCIDR,omitempty"`
	// ConfigMaps and Secrets are those the node's pods use, and no others.
	ConfigMaps []*ConfigMap `json:"configMaps,omitempty"`
	Secrets    []*Secret    `json:"secrets,omitempty"`
	// Volumes says where the claims of the node's pods are; Released lists
	// provisioned volumes whose directories the node is to remove.
	Volumes  []ClaimVolume `json:"volumes,omitempty"`
	Released []ClaimVolume `json:"released,omitempty"`
}

// NodeReport is what an agent reports about itself and its pods. It is a
// full snapshot, so a lost or repeated report does no harm.
type NodeReport struct {
	Node   string            `json:"node"`
	Labels map[string]string `json:"labels,omitempty"`
	Status NodeStatus        `json:"status"`
	Pods   []PodReport       `json:"pods"`
	// DesiredHash is the hash of the desired state the agent has acted on.
	DesiredHash string `json:"desiredHash,omitempty"`
	// Protocol is the agent's protocol version (0: before it was sent, 1).
	Protocol int `json:"protocol,omitempty"`
}

// PodReport is the observed status of one pod on a node.
type PodReport struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       string    `json:"uid"`
	Status    PodStatus `json:"status"`
}

// LogRequest asks an agent for a container's log.
type LogRequest struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Container string `json:"container,omitempty"`
	Follow    bool   `json:"follow,omitempty"`
	Tail      int    `json:"tail"` // -1 for all
}

// Bus is the master's side of the agent protocol.
type Bus interface {
	// PublishDesired publishes (retained, at least once) a node's desired state.
	PublishDesired(ctx context.Context, ds *DesiredState) error
	// PublishNetwork publishes (retained, at least once) the network view
	// every node routes by.
	PublishNetwork(ctx context.Context, ns *NetworkState) error
	// Logs streams a container log from the agent of node. Closing the reader
	// ends a follow. Returns EUNAVAILABLE if the agent does not answer.
	Logs(ctx context.Context, node string, req LogRequest) (io.ReadCloser, error)
}

// ReportSink receives what agents send; the master implements it.
type ReportSink interface {
	// NodeReport stores what changed in a report. A node may only report
	// on itself and on pods bound to it.
	NodeReport(ctx context.Context, r *NodeReport) error
	// NodeOnline records that a node's agent connected (true) or that its
	// connection was lost (false).
	NodeOnline(ctx context.Context, node string, online bool) error
	// NodeEvents records events a node saw, in order; repeats are ignored.
	NodeEvents(ctx context.Context, node string, events []PodEvent) error
}

// Reporter is the agent's side of the protocol: it sends node reports.
type Reporter interface {
	// Report sends a report; EUNAVAILABLE while disconnected.
	Report(r *NodeReport) error
	// Events sends events in order and returns once the broker has them;
	// EUNAVAILABLE while disconnected.
	Events(events []PodEvent) error
}

// Bounds on what an agent may send in one message. A node is trusted with
// its own pods, not with the master's memory or CPU: anything beyond these
// is refused as a whole.
const (
	MaxEventsPerMessage = 100
	MaxPodsPerReport    = 1000
	MaxImagesPerReport  = 2000
	maxReportString     = 4096 // messages, reasons, image names, versions
)

// Validate checks a report from node as API input is checked: it must be
// about node itself, its labels must be valid label keys and values with
// kubernetes.io/hostname equal to the node's name, its quantities must parse
// (and so are bounded in length), and its lists and strings are bounded.
// It returns an EINVALID error naming the field.
func (r *NodeReport) Validate(node string) error {
	if r.Node != node {
		return invalid("node", "report for %q arrived on node %q's topic", r.Node, node)
	}
	if err := validateLabels("labels", r.Labels); err != nil {
		return err
	}
	if h, ok := r.Labels[LabelHostname]; ok && h != node {
		return invalid("labels."+LabelHostname, "%q must be the node's own name %q", h, node)
	}
	for _, list := range []struct {
		path string
		l    ResourceList
	}{{"status.capacity", r.Status.Capacity}, {"status.allocatable", r.Status.Allocatable}} {
		if len(list.l) > 32 {
			return invalid(list.path, "%d resources (at most 32)", len(list.l))
		}
		for name, q := range list.l {
			if len(name) > 253 {
				return invalid(list.path, "resource name of %d characters", len(name))
			}
			if _, err := validQuantity(list.path+"."+name, q); err != nil {
				return err
			}
		}
	}
	if n := len(r.Status.Addresses); n > 32 {
		return invalid("status.addresses", "%d addresses (at most 32)", n)
	}
	for i, a := range r.Status.Addresses {
		if err := shortText(fmt.Sprintf("status.addresses[%d]", i), a.Type+a.Address, 256); err != nil {
			return err
		}
	}
	ni := r.Status.NodeInfo
	for _, f := range []struct{ name, value string }{{"machineID", ni.MachineID}, {"kernelVersion", ni.KernelVersion},
		{"osImage", ni.OSImage}, {"containerRuntimeVersion", ni.ContainerRuntimeVersion}, {"kubeletVersion", ni.KubeletVersion},
		{"operatingSystem", ni.OperatingSystem}, {"architecture", ni.Architecture}} {
		if err := shortText("status.nodeInfo."+f.name, f.value, 256); err != nil {
			return err
		}
	}
	if n := len(r.Status.Conditions); n > 16 {
		return invalid("status.conditions", "%d conditions (at most 16)", n)
	}
	for i, c := range r.Status.Conditions {
		path := fmt.Sprintf("status.conditions[%d]", i)
		if err := shortText(path, c.Type+c.Status+c.Reason, 256); err != nil {
			return err
		}
		if err := shortText(path+".message", c.Message, maxReportString); err != nil {
			return err
		}
	}
	if n := len(r.Status.Images); n > MaxImagesPerReport {
		return invalid("status.images", "%d images (at most %d)", n, MaxImagesPerReport)
	}
	for i, img := range r.Status.Images {
		if len(img.Names) > 16 {
			return invalid(fmt.Sprintf("status.images[%d].names", i), "%d names (at most 16)", len(img.Names))
		}
		for _, n := range img.Names {
			if len(n) > maxReportString {
				return invalid(fmt.Sprintf("status.images[%d].names", i), "a name of %d characters", len(n))
			}
		}
	}
	if n := len(r.Pods); n > MaxPodsPerReport {
		return invalid("pods", "%d pods (at most %d)", n, MaxPodsPerReport)
	}
	for i := range r.Pods {
		p := &r.Pods[i]
		path := fmt.Sprintf("pods[%d]", i)
		if n := len(p.Status.ContainerStatuses); n > 256 {
			return invalid(path+".status.containerStatuses", "%d containers (at most 256)", n)
		}
		if n := len(p.Status.Conditions); n > 32 {
			return invalid(path+".status.conditions", "%d conditions (at most 32)", n)
		}
		if len(p.Status.Message) > maxReportString || len(p.Status.Reason) > maxReportString {
			return invalid(path+".status.message", "longer than %d characters", maxReportString)
		}
		for _, f := range []struct{ name, value string }{{"namespace", p.Namespace}, {"name", p.Name}, {"uid", p.UID},
			{"status.podIP", p.Status.PodIP}, {"status.hostIP", p.Status.HostIP}} {
			if err := shortText(path+"."+f.name, f.value, 256); err != nil {
				return err
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if err := shortText(path+".status.containerStatuses", cs.Name+cs.Image+cs.ImageID+cs.ContainerID, 2048); err != nil {
				return err
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			for _, st := range []ContainerState{cs.State, cs.LastState} {
				if w := st.Waiting; w != nil && len(w.Message)+len(w.Reason) > maxReportString {
					return invalid(path+".status.containerStatuses", "container %q: waiting message longer than %d characters", cs.Name, maxReportString)
				}
				if t := st.Terminated; t != nil && len(t.Message)+len(t.Reason) > maxReportString {
					return invalid(path+".status.containerStatuses", "container %q: terminated message longer than %d characters", cs.Name, maxReportString)
				}
			}
		}
	}
	return nil
}

// shortText refuses a string longer than max or holding control
// characters: a node's words end up in admins' terminals.
func shortText(path, s string, max int) error {
	if len(s) > max {
		return invalid(path, "%d characters (at most %d)", len(s), max)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return invalid(path, "holds a control character (%U)", r)
		}
	}
	return nil
}

// ValidateEvents checks one message of events from an agent.
func ValidateEvents(events []PodEvent) error {
	if len(events) > MaxEventsPerMessage {
		return invalid("events", "%d events in one message (at most %d)", len(events), MaxEventsPerMessage)
	}
	for i, e := range events {
		for _, f := range []struct {
			name  string
			value string
			max   int
		}{{"message", e.Message, maxReportString}, {"reason", e.Reason, 256}, {"pod", e.Pod, 253}, {"namespace", e.Namespace, 63},
			{"container", e.Container, 63}, {"uid", e.UID, 64}, {"type", e.Type, 32}} {
			if len(f.value) > f.max {
				return invalid(fmt.Sprintf("events[%d].%s", i, f.name), "%d characters (at most %d)", len(f.value), f.max)
			}
		}
	}
	return nil
}
