package core

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Taints, tolerations and affinity: where a pod may and would rather go.

const (
	TaintNoSchedule       = "NoSchedule"
	TaintPreferNoSchedule = "PreferNoSchedule"
	TaintNoExecute        = "NoExecute"
)

type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
	// TimeAdded is when a NoExecute taint was put on the node.
	TimeAdded *Time `json:"timeAdded,omitempty"`
}

// The taints Kubernetes puts on a node that stops answering; a pod's
// NoExecute toleration of them (with tolerationSeconds) is how long its
// node may be lost before the pod is replaced elsewhere.
const (
	TaintNodeUnreachable = "node.kubernetes.io/unreachable"
	TaintNodeNotReady    = "node.kubernetes.io/not-ready"
)

func (t Taint) String() string {
	s := t.Key
	if t.Value != "" {
		s += "=" + t.Value
	}
	return s + ":" + t.Effect
}

// ParseTaint reads kubectl's KEY[=VALUE]:EFFECT.
func ParseTaint(s string) (Taint, error) {
	kv, effect, ok := strings.Cut(s, ":")
	k, v, _ := strings.Cut(kv, "=")
	t := Taint{Key: k, Value: v, Effect: effect}
	if !ok || k == "" {
		return t, Errorf(EINVALID, "taint %q: want KEY[=VALUE]:EFFECT (NoSchedule, PreferNoSchedule or NoExecute)", s)
	}
	return t, validateTaint("taint", t)
}

func validateTaint(p string, t Taint) error {
	if err := validateLabels(p, map[string]string{t.Key: t.Value}); err != nil {
		return err
	}
	switch t.Effect {
	case TaintNoSchedule, TaintPreferNoSchedule, TaintNoExecute:
		return nil
	}
	return invalid(p+".effect", "%q: must be NoSchedule, PreferNoSchedule or NoExecute", t.Effect)
}

type Toleration struct {
	Key               string `json:"key,omitempty"`
	Operator          string `json:"operator,omitempty"` // Equal (default) or Exists
	Value             string `json:"value,omitempty"`
	Effect            string `json:"effect,omitempty"` // empty: every effect
	TolerationSeconds *int64 `json:"tolerationSeconds,omitempty"`
}

// Tolerates reports whether the toleration matches taint t.
func (tol Toleration) Tolerates(t Taint) bool {
	if tol.Effect != "" && tol.Effect != t.Effect {
		return false
	}
	if tol.Key == "" { // with Exists: every taint
		return tol.Operator == "Exists"
	}
	if tol.Key != t.Key {
		return false
	}
	return tol.Operator == "Exists" || tol.Value == t.Value
}

// untolerated returns the first taint of n with one of effects that the
// pod does not tolerate. A NoExecute taint tolerated only for a while
// (tolerationSeconds) counts as not tolerated: a pod placed there would be
// evicted again, and the next one placed there too.
func untolerated(n *Node, tols []Toleration, effects ...string) *Taint {
	for i, t := range n.Spec.Taints {
		if !slices.Contains(effects, t.Effect) {
			continue
		}
		ok := false
		for _, tol := range tols {
			ok = ok || (tol.Tolerates(t) && (t.Effect != TaintNoExecute || tol.TolerationSeconds == nil))
		}
		if !ok {
			return &n.Spec.Taints[i]
		}
	}
	return nil
}

type Affinity struct {
	NodeAffinity    *NodeAffinity    `json:"nodeAffinity,omitempty"`
	PodAntiAffinity *PodAntiAffinity `json:"podAntiAffinity,omitempty"`
}

type NodeAffinity struct {
	Required  *NodeSelector             `json:"requiredDuringSchedulingIgnoredDuringExecution,omitempty"`
	Preferred []PreferredSchedulingTerm `json:"preferredDuringSchedulingIgnoredDuringExecution,omitempty"`
}

type NodeSelector struct {
	NodeSelectorTerms []NodeSelectorTerm `json:"nodeSelectorTerms"`
}

type NodeSelectorTerm struct {
	MatchExpressions []NodeSelectorRequirement `json:"matchExpressions,omitempty"`
}

type NodeSelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

type PreferredSchedulingTerm struct {
	Weight     int32            `json:"weight"`
	Preference NodeSelectorTerm `json:"preference"`
}

// PodAntiAffinity keeps pods apart: by hostname (one per node) only.
type PodAntiAffinity struct {
	Required  []PodAffinityTerm         `json:"requiredDuringSchedulingIgnoredDuringExecution,omitempty"`
	Preferred []WeightedPodAffinityTerm `json:"preferredDuringSchedulingIgnoredDuringExecution,omitempty"`
}

type PodAffinityTerm struct {
	LabelSelector *LabelSelector `json:"labelSelector,omitempty"`
	TopologyKey   string         `json:"topologyKey"`
}

type WeightedPodAffinityTerm struct {
	Weight          int32           `json:"weight"`
	PodAffinityTerm PodAffinityTerm `json:"podAffinityTerm"`
}

// Matches reports whether a node's labels satisfy every requirement.
func (t NodeSelectorTerm) Matches(labels map[string]string) bool {
	for _, r := range t.MatchExpressions {
		if !matchRequirement(r.Operator, r.Key, r.Values, labels) {
			return false
		}
	}
	return true
}

// nodeAffinityFits reports whether node labels pass the pod's required
// node affinity (any term), and its preferred score.
func nodeAffinityFits(a *Affinity, labels map[string]string) (bool, int) {
	if a == nil || a.NodeAffinity == nil {
		return true, 0
	}
	na := a.NodeAffinity
	if na.Required != nil && len(na.Required.NodeSelectorTerms) > 0 {
		ok := false
		for _, t := range na.Required.NodeSelectorTerms {
			ok = ok || t.Matches(labels)
		}
		if !ok {
			return false, 0
		}
	}
	score := 0
	for _, p := range na.Preferred {
		if p.Preference.Matches(labels) {
			score += int(p.Weight)
		}
	}
	return true, score
}

func validateAffinity(p string, a *Affinity) error {
	if a == nil {
		return nil
	}
	term := func(tp string, t NodeSelectorTerm) error {
		for i, r := range t.MatchExpressions {
			rp := fmt.Sprintf("%s.matchExpressions[%d]", tp, i)
			switch r.Operator {
			case "In", "NotIn":
				if len(r.Values) == 0 {
					return invalid(rp+".values", "required for %s", r.Operator)
				}
			case "Exists", "DoesNotExist":
				if len(r.Values) > 0 {
					return invalid(rp+".values", "must be empty for %s", r.Operator)
				}
			case "Gt", "Lt":
				if len(r.Values) != 1 {
					return invalid(rp+".values", "one integer for %s", r.Operator)
				}
				if _, err := strconv.ParseInt(r.Values[0], 10, 64); err != nil {
					return invalid(rp+".values", "%q is not an integer", r.Values[0])
				}
			default:
				return invalid(rp+".operator", "%q: must be In, NotIn, Exists, DoesNotExist, Gt or Lt", r.Operator)
			}
		}
		return nil
	}
	if na := a.NodeAffinity; na != nil {
		if na.Required != nil {
			for i, t := range na.Required.NodeSelectorTerms {
				if err := term(fmt.Sprintf("%s.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[%d]", p, i), t); err != nil {
					return err
				}
			}
		}
		for i, pt := range na.Preferred {
			pp := fmt.Sprintf("%s.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[%d]", p, i)
			if pt.Weight < 1 || pt.Weight > 100 {
				return invalid(pp+".weight", "%d must be between 1 and 100", pt.Weight)
			}
			if err := term(pp+".preference", pt.Preference); err != nil {
				return err
			}
		}
	}
	if pa := a.PodAntiAffinity; pa != nil {
		terms := append([]PodAffinityTerm(nil), pa.Required...)
		for _, w := range pa.Preferred {
			terms = append(terms, w.PodAffinityTerm)
		}
		for i, t := range terms {
			if t.TopologyKey != LabelHostname {
				return invalid(fmt.Sprintf("%s.podAntiAffinity[%d].topologyKey", p, i), "%q: only %s (one per node) is supported", t.TopologyKey, LabelHostname)
			}
			if err := validateSelector(fmt.Sprintf("%s.podAntiAffinity[%d].labelSelector", p, i), t.LabelSelector, true); err != nil {
				return err
			}
		}
	}
	return nil
}

func validateTolerations(p string, tols []Toleration) error {
	for i, t := range tols {
		tp := fmt.Sprintf("%s[%d]", p, i)
		switch t.Operator {
		case "", "Equal":
			if t.Key == "" {
				return invalid(tp+".key", "required with operator Equal (use operator Exists to tolerate every taint)")
			}
		case "Exists":
			if t.Value != "" {
				return invalid(tp+".value", "must be empty with operator Exists")
			}
		default:
			return invalid(tp+".operator", "%q: must be Equal or Exists", t.Operator)
		}
		switch t.Effect {
		case "", TaintNoSchedule, TaintPreferNoSchedule, TaintNoExecute:
		default:
			return invalid(tp+".effect", "%q: must be NoSchedule, PreferNoSchedule or NoExecute", t.Effect)
		}
		if t.TolerationSeconds != nil && t.Effect != TaintNoExecute {
			return invalid(tp+".tolerationSeconds", "only for effect NoExecute")
		}
	}
	return nil
}

// antiAffinityBlocks reports whether an active pod already on node
// matches one of pod's required anti-affinity selectors (or the node's
// pod counts for the preferred ones, as a score).
func antiAffinity(pod *Pod, onNode []*Pod) (blocked bool, penalty int) {
	a := pod.Spec.Affinity
	if a == nil || a.PodAntiAffinity == nil {
		return false, 0
	}
	for _, other := range onNode {
		if other.Metadata.Namespace != pod.Metadata.Namespace || other.Terminating() || other.Terminal() {
			continue
		}
		for _, t := range a.PodAntiAffinity.Required {
			if t.LabelSelector.Matches(other.Metadata.Labels) {
				return true, 0
			}
		}
		for _, w := range a.PodAntiAffinity.Preferred {
			if w.PodAffinityTerm.LabelSelector.Matches(other.Metadata.Labels) {
				penalty += int(w.Weight)
			}
		}
	}
	return false, penalty
}
