// Package mqtt carries the master<->agent protocol over MQTT: the embedded
// broker (mochi-mqtt) with per-node authentication and ACLs, the master's
// side of the protocol (core.Bus) over the embedded broker or any external
// one, and the agent's client (paho). Payloads are JSON of core types.
//
// Topics, all under edge/node/<node>/:
//
//	desired   master -> agent, retained, QoS 1: the node's full pod set
//	cmd       master -> agent, QoS 1: requests (container logs)
//	report    agent -> master, QoS 1: full node and pod status snapshot
//	online    agent -> master, retained, QoS 1: "online", or "offline" as last will
//	reply/<id> agent -> master, QoS 1: answers to cmd requests
//	events    agent -> master, QoS 1: what happened to pods, in order
//
// and edge/master/epoch (master -> agents, retained): a new value means the
// master restarted and wants a fresh report from everyone; and
// edge/cluster/network (master -> agents, retained): every node's pod subnet
// and every service with its endpoints, the same for all nodes.
package mqtt

import "strings"

const (
	topicPrefix  = "edge/node/"
	topicEpoch   = "edge/master/epoch"
	topicNetwork = "edge/cluster/network"
)

func topicDesired(node string) string { return topicPrefix + node + "/desired" }
func topicCmd(node string) string     { return topicPrefix + node + "/cmd" }
func topicReport(node string) string  { return topicPrefix + node + "/report" }
func topicOnline(node string) string  { return topicPrefix + node + "/online" }
func topicEvents(node string) string  { return topicPrefix + node + "/events" }
func topicReply(node, id string) string {
	return topicPrefix + node + "/reply/" + id
}

// parseNodeTopic splits "edge/node/<node>/<rest>".
func parseNodeTopic(topic string) (node, rest string, ok bool) {
	s, ok := strings.CutPrefix(topic, topicPrefix)
	if !ok {
		return "", "", false
	}
	node, rest, ok = strings.Cut(s, "/")
	return node, rest, ok && node != ""
}

// ClientID is the MQTT client id of a node's agent.
func ClientID(node string) string { return "edge-agent-" + node }

// Payloads of the online topic.
const (
	Online  = "online"
	Offline = "offline"
)

// command is a message on the cmd topic.
type command struct {
	Type string `json:"type"` // logs, cancel, ping
	ID   string `json:"id"`
	Logs any    `json:"logs,omitempty"`
}

// chunk is a message on a reply topic.
type chunk struct {
	Seq   int    `json:"seq"`
	Data  []byte `json:"data,omitempty"`
	EOF   bool   `json:"eof,omitempty"`
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}
