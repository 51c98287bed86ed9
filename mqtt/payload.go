package mqtt

import (
	"encoding/json"

	"github.com/edgeorch/edge/core"
)

// Decoders for every payload that crosses the broker. Each refuses what
// the sender could not legitimately have sent; none trusts a name inside a
// payload over the topic the broker's ACL vouched for.

// Bounds on payloads before they are decoded. A payload of 4 MiB of "{},"
// decodes into 1.4 million structs (hundreds of MB) before any validation
// can count them, so size and the number of JSON objects and arrays are
// checked on the bytes first.
const (
	maxReportBytes  = 1 << 20
	maxReportValues = 50000 // a report of 1000 pods has about 10,000
	maxEventsBytes  = 1 << 20
	maxEventsValues = 4 * core.MaxEventsPerMessage
	maxDepth        = 32
)

// checkShape refuses a payload larger than maxBytes, or holding more than
// maxValues JSON objects and arrays, or nested deeper than maxDepth. It
// scans the bytes once and allocates nothing.
func checkShape(what string, b []byte, maxBytes, maxValues int) error {
	if len(b) > maxBytes {
		return core.Errorf(core.EINVALID, "%s of %d bytes (at most %d)", what, len(b), maxBytes)
	}
	values, depth, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case inString:
			if escaped {
				escaped = false
			} else if c == '\\' {
				escaped = true
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			values++
			depth++
			if values > maxValues {
				return core.Errorf(core.EINVALID, "%s with more than %d objects and arrays", what, maxValues)
			}
			if depth > maxDepth {
				return core.Errorf(core.EINVALID, "%s nested deeper than %d", what, maxDepth)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// decodeReport decodes a report that arrived on node's topic.
func decodeReport(node string, payload []byte) (*core.NodeReport, error) {
	if err := checkShape("report", payload, maxReportBytes, maxReportValues); err != nil {
		return nil, err
	}
	var rep core.NodeReport
	if err := json.Unmarshal(payload, &rep); err != nil {
		return nil, core.Errorf(core.EINVALID, "report: %v", err)
	}
	if rep.Node == "" {
		rep.Node = node
	}
	if err := rep.Validate(node); err != nil {
		return nil, err
	}
	return &rep, nil
}

// decodeEvents decodes one message of pod events.
func decodeEvents(payload []byte) ([]core.PodEvent, error) {
	if err := checkShape("events", payload, maxEventsBytes, maxEventsValues); err != nil {
		return nil, err
	}
	var events []core.PodEvent
	if err := json.Unmarshal(payload, &events); err != nil {
		return nil, core.Errorf(core.EINVALID, "events: %v", err)
	}
	if err := core.ValidateEvents(events); err != nil {
		return nil, err
	}
	return events, nil
}

// decodeDesired decodes the desired state published for node.
func decodeDesired(node string, payload []byte) (*core.DesiredState, error) {
	var ds core.DesiredState
	if err := json.Unmarshal(payload, &ds); err != nil {
		return nil, core.Errorf(core.EINVALID, "desired state: %v", err)
	}
	if ds.Node != "" && ds.Node != node {
		return nil, core.Errorf(core.EINVALID, "desired state for node %q on node %q's topic", ds.Node, node)
	}
	for i, p := range ds.Pods {
		if p == nil {
			return nil, core.Errorf(core.EINVALID, "desired state: pods[%d] is null", i)
		}
	}
	return &ds, nil
}

func decodeNetwork(payload []byte) (*core.NetworkState, error) {
	var ns core.NetworkState
	if err := json.Unmarshal(payload, &ns); err != nil {
		return nil, core.Errorf(core.EINVALID, "network state: %v", err)
	}
	// An empty or truncated state would tear down every route and rule of
	// the node: keep the last good one instead.
	if err := ns.Validate(); err != nil {
		return nil, err
	}
	return &ns, nil
}

// agentCommand is a command as the agent decodes it.
type agentCommand struct {
	Type string          `json:"type"`
	ID   string          `json:"id"`
	Logs core.LogRequest `json:"logs"`
}

// decodeCommand decodes a message on a node's cmd topic.
func decodeCommand(payload []byte) (*agentCommand, error) {
	if err := checkShape("command", payload, 64<<10, 8); err != nil {
		return nil, err
	}
	var cmd agentCommand
	if err := json.Unmarshal(payload, &cmd); err != nil {
		return nil, core.Errorf(core.EINVALID, "command: %v", err)
	}
	switch cmd.Type {
	case "logs", "cancel", "ping":
	default:
		return nil, core.Errorf(core.EINVALID, "unknown command %q", cmd.Type)
	}
	if cmd.ID == "" || len(cmd.ID) > 64 {
		return nil, core.Errorf(core.EINVALID, "command id of %d characters", len(cmd.ID))
	}
	return &cmd, nil
}

// maxChunkData bounds the log bytes of one reply (agents send 32 KiB).
const maxChunkData = 64 << 10

// decodeChunk decodes one reply to a log request.
func decodeChunk(payload []byte) (*chunk, error) {
	if err := checkShape("reply", payload, 2*maxChunkData, 4); err != nil {
		return nil, err
	}
	var c chunk
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, core.Errorf(core.EINVALID, "reply: %v", err)
	}
	if c.Seq < 0 {
		return nil, core.Errorf(core.EINVALID, "reply with sequence %d", c.Seq)
	}
	if len(c.Data) > maxChunkData {
		return nil, core.Errorf(core.EINVALID, "reply: data of %d bytes (at most %d)", len(c.Data), maxChunkData)
	}
	if len(c.Error) > 4096 {
		return nil, core.Errorf(core.EINVALID, "reply: error of %d characters (at most 4096)", len(c.Error))
	}
	return &c, nil
}
