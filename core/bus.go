package core

import (
	"context"
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
