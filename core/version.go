package core

import (
	"fmt"
	"strconv"
	"strings"
)

// Version skew between the master and its agents, as Kubernetes rules it
// for the API server and kubelets: an agent may be up to one minor version
// older than its master, never newer. The protocol version is what they
// exchange (join, desired states, reports); a change an older peer would
// misread raises it.
const (
	// ProtocolVersion is this build's master-agent protocol.
	ProtocolVersion = 1
	// MinAgentProtocol is the oldest agent protocol a master serves. An
	// agent that sends none speaks protocol 1.
	MinAgentProtocol = 1
)

// semver is a parsed vMAJOR.MINOR.PATCH (any suffix ignored).
type semver struct{ major, minor int }

func parseSemver(v string) (semver, bool) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return semver{}, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return semver{}, false
	}
	return semver{major, minor}, true
}

// CheckAgentVersion says whether a master of masterVersion serves an agent
// of agentVersion speaking agentProtocol (0: none said, protocol 1), and
// if not, which side to upgrade. Versions that are not vX.Y.Z (a
// development build) are not compared; protocols always are.
func CheckAgentVersion(masterVersion, agentVersion string, agentProtocol int) error {
	if agentProtocol == 0 {
		agentProtocol = 1
	}
	switch {
	case agentProtocol > ProtocolVersion:
		return Errorf(EINVALID, "agent %s speaks protocol %d, this master (%s) only up to %d: upgrade the master first (agents must not be newer than their master)",
			agentVersion, agentProtocol, masterVersion, ProtocolVersion)
	case agentProtocol < MinAgentProtocol:
		return Errorf(EINVALID, "agent %s speaks protocol %d, this master (%s) needs at least %d: upgrade the agent",
			agentVersion, agentProtocol, masterVersion, MinAgentProtocol)
	}
	m, ok1 := parseSemver(masterVersion)
	a, ok2 := parseSemver(agentVersion)
	if !ok1 || !ok2 {
		return nil
	}
	switch {
	case a.major > m.major || (a.major == m.major && a.minor > m.minor):
		return Errorf(EINVALID, "agent %s is newer than its master %s: upgrade the master first (agents must not be newer than their master)", agentVersion, masterVersion)
	case a.major < m.major || m.minor-a.minor > 1:
		return Errorf(EINVALID, "agent %s is more than one minor version older than its master %s: upgrade the agent", agentVersion, masterVersion)
	}
	return nil
}

// ReasonVersionSkew marks a node whose agent the master does not serve.
const ReasonVersionSkew = "VersionSkew"

func versionSkewMessage(err error) string {
	return fmt.Sprintf("%s (its reports are ignored until then)", ErrorMessage(err))
}
