package core

import (
	"fmt"
	"slices"
	"strings"
)

// Security contexts: who a container runs as and what it may do, at the
// container level (SecurityContext) and for every container of a pod
// (PodSecurityContext; a container's own setting wins).

type SecurityContext struct {
	Privileged               *bool           `json:"privileged,omitempty"`
	RunAsUser                *int64          `json:"runAsUser,omitempty"`
	RunAsGroup               *int64          `json:"runAsGroup,omitempty"`
	RunAsNonRoot             *bool           `json:"runAsNonRoot,omitempty"`
	ReadOnlyRootFilesystem   *bool           `json:"readOnlyRootFilesystem,omitempty"`
	AllowPrivilegeEscalation *bool           `json:"allowPrivilegeEscalation,omitempty"`
	Capabilities             *Capabilities   `json:"capabilities,omitempty"`
	SeccompProfile           *SeccompProfile `json:"seccompProfile,omitempty"`
}

type PodSecurityContext struct {
	RunAsUser           *int64          `json:"runAsUser,omitempty"`
	RunAsGroup          *int64          `json:"runAsGroup,omitempty"`
	RunAsNonRoot        *bool           `json:"runAsNonRoot,omitempty"`
	FSGroup             *int64          `json:"fsGroup,omitempty"`
	FSGroupChangePolicy string          `json:"fsGroupChangePolicy,omitempty"`
	SupplementalGroups  []int64         `json:"supplementalGroups,omitempty"`
	SeccompProfile      *SeccompProfile `json:"seccompProfile,omitempty"`
}

type Capabilities struct {
	Add  []string `json:"add,omitempty"`
	Drop []string `json:"drop,omitempty"`
}

type SeccompProfile struct {
	Type             string  `json:"type"`
	LocalhostProfile *string `json:"localhostProfile,omitempty"`
}

// HostAlias adds lines to a pod's /etc/hosts.
type HostAlias struct {
	IP        string   `json:"ip"`
	Hostnames []string `json:"hostnames"`
}

// linuxCapabilities are the capability names a container may add or drop
// (without the CAP_ prefix, which manifests may carry).
var linuxCapabilities = []string{"AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
	"LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE", "NET_BROADCAST",
	"NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT",
	"SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME",
	"SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM"}

// CapabilityName returns a capability as the runtime spells it
// ("CAP_NET_ADMIN"), and whether it is one ("ALL" is, for drop).
func CapabilityName(c string) (string, bool) {
	n := strings.TrimPrefix(strings.ToUpper(c), "CAP_")
	if n == "ALL" {
		return "ALL", true
	}
	return "CAP_" + n, slices.Contains(linuxCapabilities, n)
}

func validateSeccomp(p string, s *SeccompProfile) error {
	if s == nil {
		return nil
	}
	switch s.Type {
	case "RuntimeDefault", "Unconfined":
		return nil
	case "Localhost":
		return invalid(p+".type", "Localhost profiles are not supported here (use RuntimeDefault or Unconfined)")
	}
	return invalid(p+".type", "%q: must be RuntimeDefault or Unconfined", s.Type)
}

func validateSecurityContext(p string, sc *SecurityContext) error {
	if sc == nil {
		return nil
	}
	for _, id := range []struct {
		name string
		v    *int64
	}{{"runAsUser", sc.RunAsUser}, {"runAsGroup", sc.RunAsGroup}} {
		if id.v != nil && (*id.v < 0 || *id.v > 1<<31-1) {
			return invalid(p+"."+id.name, "%d is not a user or group id", *id.v)
		}
	}
	if c := sc.Capabilities; c != nil {
		for field, list := range map[string][]string{"add": c.Add, "drop": c.Drop} {
			for i, name := range list {
				if n, ok := CapabilityName(name); !ok || (n == "ALL" && field == "add") {
					return invalid(fmt.Sprintf("%s.capabilities.%s[%d]", p, field, i), "%q is not a Linux capability (e.g. NET_ADMIN, SYS_TIME; ALL only in drop)", name)
				}
			}
		}
	}
	return validateSeccomp(p+".seccompProfile", sc.SeccompProfile)
}

func validatePodSecurity(p string, s *PodSpec) error {
	if sc := s.SecurityContext; sc != nil {
		for _, id := range []struct {
			name string
			v    *int64
		}{{"runAsUser", sc.RunAsUser}, {"runAsGroup", sc.RunAsGroup}, {"fsGroup", sc.FSGroup}} {
			if id.v != nil && (*id.v < 0 || *id.v > 1<<31-1) {
				return invalid(p+".securityContext."+id.name, "%d is not a user or group id", *id.v)
			}
		}
		if err := validateSeccomp(p+".securityContext.seccompProfile", sc.SeccompProfile); err != nil {
			return err
		}
	}
	for i, h := range s.HostAliases {
		hp := fmt.Sprintf("%s.hostAliases[%d]", p, i)
		if strings.Count(h.IP, ".") != 3 {
			return invalid(hp+".ip", "%q is not an IPv4 address", h.IP)
		}
		for j, n := range h.Hostnames {
			if err := validateDNSSubdomain(fmt.Sprintf("%s.hostnames[%d]", hp, j), n); err != nil {
				return err
			}
		}
	}
	return nil
}

// EffectiveSecurity merges the pod's security context under the
// container's: the container's settings win.
func EffectiveSecurity(pod *PodSpec, c *Container) SecurityContext {
	var out SecurityContext
	if ps := pod.SecurityContext; ps != nil {
		out.RunAsUser, out.RunAsGroup, out.RunAsNonRoot, out.SeccompProfile = ps.RunAsUser, ps.RunAsGroup, ps.RunAsNonRoot, ps.SeccompProfile
	}
	if cs := c.SecurityContext; cs != nil {
		out.Privileged, out.ReadOnlyRootFilesystem, out.AllowPrivilegeEscalation, out.Capabilities =
			cs.Privileged, cs.ReadOnlyRootFilesystem, cs.AllowPrivilegeEscalation, cs.Capabilities
		if cs.RunAsUser != nil {
			out.RunAsUser = cs.RunAsUser
		}
		if cs.RunAsGroup != nil {
			out.RunAsGroup = cs.RunAsGroup
		}
		if cs.RunAsNonRoot != nil {
			out.RunAsNonRoot = cs.RunAsNonRoot
		}
		if cs.SeccompProfile != nil {
			out.SeccompProfile = cs.SeccompProfile
		}
	}
	return out
}
