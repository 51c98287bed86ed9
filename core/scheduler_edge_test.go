package core

import (
	"strings"
	"testing"
)

// Edge cases of the scheduler beyond scheduler_test.go's table.

func TestUsage(t *testing.T) {
	owned := func(name, node string, phase PodPhase, terminating bool) *Pod {
		p := podSpec(nil, "100m", "10Mi")
		p.Metadata.Name, p.Spec.NodeName, p.Status.Phase = name, node, phase
		if terminating {
			p.Metadata.DeletionTimestamp = &Time{}
		}
		return p
	}
	bare := podSpec(nil, "", "")
	bare.Metadata.OwnerReferences = nil
	bare.Spec.NodeName = "a"
	bare.Spec.Containers[0].Resources = ResourceRequirements{Limits: ResourceList{"cpu": "1", "memory": "1Mi"}}
	u := Usage([]*Pod{
		owned("run", "a", PodRunning, false),
		owned("stopping", "a", PodRunning, true), // still holds its resources
		owned("done", "a", PodSucceeded, false),  // does not
		owned("failed", "a", PodFailed, false),
		owned("pending", "", PodPending, false),
		bare, // limits count as requests
	})
	a := u["a"]
	if len(u) != 1 || a.Pods != 3 || a.MilliCPU != 1200 || a.Memory != 21<<20 || a.Owners["owner"] != 1 || len(a.Owners) != 1 {
		t.Fatalf("usage %+v", a)
	}
}

func TestScheduleEdges(t *testing.T) {
	capacityOnly := func(n *Node) {
		n.Status.Capacity, n.Status.Allocatable = n.Status.Allocatable, nil
	}
	noResources := func(n *Node) { n.Status.Allocatable = nil }
	tiny := func(n *Node) { n.Status.Allocatable = ResourceList{"cpu": "100m", "memory": "64Mi"} }
	fullImage := func(n *Node) { n.Status.Images = []NodeImage{{Names: []string{"app:v1"}}} }
	for _, tt := range []struct {
		name  string
		pod   *Pod
		nodes []*Node
		want  string
	}{
		{"ties go to the first name", podSpec(nil, "", ""), []*Node{node("c"), node("b"), node("d")}, "b"},
		{"capacity when allocatable is unknown", podSpec(nil, "1", "512Mi"), []*Node{node("a", capacityOnly)}, "a"},
		{"no requests fit a node that reports no resources", podSpec(nil, "", ""), []*Node{node("a", noResources)}, "a"},
		{"requests do not fit a node that reports no resources", podSpec(nil, "10m", ""), []*Node{node("a", noResources)},
			"0/1 nodes available: 1 insufficient cpu"},
		{"both resources short on one node", podSpec(nil, "1", "1Gi"), []*Node{node("a", tiny)},
			"0/1 nodes available: 1 insufficient cpu, 1 insufficient memory"},
		{"equal counts sort by reason", podSpec(map[string]string{"zone": "x"}, "", ""), []*Node{node("a", notReady), node("b", cordoned), node("c")},
			"0/3 nodes available: 1 didn't match node selector, 1 not ready, 1 unschedulable (cordoned)"},
		{"short and long image names match", podSpec(nil, "", ""), []*Node{node("a"), node("b", fullImage)}, "b"},
		{"a node whose Ready is False", podSpec(nil, "", ""), []*Node{node("a", func(n *Node) { n.Status.Conditions[0].Status = ConditionFalse })},
			"0/1 nodes available: 1 not ready"},
		{"a node that never reported", podSpec(nil, "", ""), []*Node{node("a", func(n *Node) { n.Status.Conditions = nil })},
			"0/1 nodes available: 1 not ready"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, why := Schedule(tt.pod, tt.nodes, map[string]*NodeUsage{})
			if got == "" {
				got = why
			} else if why != "" {
				t.Fatalf("placed on %s with an explanation %q", got, why)
			}
			if got != tt.want {
				t.Fatalf("Schedule = %q, want %q", got, tt.want)
			}
		})
	}
}

// A Scheduler counts what it placed: a full node takes no more, and a pod
// without an owner does not spread but goes to the least allocated node.
func TestSchedulerTracksPlacements(t *testing.T) {
	nodes := []*Node{node("a"), node("b")}
	sc := &Scheduler{Nodes: NewNodeInfos(nodes), Usage: map[string]*NodeUsage{}}
	var placed []string
	for i := 0; i < 5; i++ {
		p := podSpec(nil, "", "400Mi")
		p.Metadata.OwnerReferences = nil
		n, why := sc.Schedule(p)
		if n == "" {
			placed = append(placed, why)
			break
		}
		placed = append(placed, n)
	}
	// 1Gi each: two 400Mi pods per node, then none.
	want := "a b a b 0/2 nodes available: 2 insufficient memory"
	if got := strings.Join(placed, " "); got != want {
		t.Fatalf("placements %q, want %q", got, want)
	}
	if u := sc.Usage["a"]; u.Pods != 2 || u.Memory != 800<<20 || len(u.Owners) != 0 {
		t.Fatalf("usage of a %+v", u)
	}
}

// Two pods wanting the same host port (or, with hostNetwork, the same
// container port) do not share a node.
func TestSchedule_HostPorts(t *testing.T) {
	nodes := []*Node{node("n1"), node("n2")}
	pod := func(name string, hostNet bool, port ContainerPort) *Pod {
		return &Pod{Metadata: ObjectMeta{Name: name, Namespace: "default"},
			Spec: PodSpec{HostNetwork: hostNet, Containers: []Container{{Name: "c", Ports: []ContainerPort{port}}}}}
	}
	sc := &Scheduler{Nodes: NewNodeInfos(nodes), Usage: map[string]*NodeUsage{}}
	a, _ := sc.Schedule(pod("a", false, ContainerPort{ContainerPort: 53, HostPort: 53, Protocol: "UDP"}))
	b, _ := sc.Schedule(pod("b", true, ContainerPort{ContainerPort: 53, Protocol: "UDP"}))
	if a == "" || b == "" || a == b {
		t.Fatalf("two pods on port 53/UDP: %q and %q", a, b)
	}
	c, _ := sc.Schedule(pod("c", false, ContainerPort{ContainerPort: 53, HostPort: 53, Protocol: "TCP"}))
	if c == "" {
		t.Fatal("53/TCP is free on both nodes")
	}
	if n, why := sc.Schedule(pod("d", false, ContainerPort{ContainerPort: 53, HostPort: 53, Protocol: "UDP"})); n != "" || !strings.Contains(why, "didn't have free ports") {
		t.Fatalf("a third 53/UDP: %q %q", n, why)
	}
}

func TestSchedule_TaintsAffinity(t *testing.T) {
	tainted := func(n *Node) { n.Spec.Taints = []Taint{{Key: "dedicated", Value: "gpu", Effect: TaintNoSchedule}} }
	soft := func(n *Node) { n.Spec.Taints = []Taint{{Key: "slow", Effect: TaintPreferNoSchedule}} }
	ram := func(v string) func(*Node) { return func(n *Node) { n.Metadata.Labels["ram-gb"] = v } }
	place := func(nodes []*Node, pod *Pod) (string, string) {
		return (&Scheduler{Nodes: NewNodeInfos(nodes), Usage: map[string]*NodeUsage{}}).Schedule(pod)
	}
	p := podSpec(nil, "", "")
	if n, why := place([]*Node{node("a", tainted)}, p); n != "" || !strings.Contains(why, "had untolerated taint {dedicated: gpu}") {
		t.Fatalf("a tainted node took an intolerant pod: %q %q", n, why)
	}
	p.Spec.Tolerations = []Toleration{{Key: "dedicated", Operator: "Equal", Value: "gpu", Effect: TaintNoSchedule}}
	if n, _ := place([]*Node{node("a", tainted)}, p); n != "a" {
		t.Fatal("a tolerating pod was refused")
	}
	p.Spec.Tolerations = []Toleration{{Operator: "Exists"}} // tolerates everything
	if n, _ := place([]*Node{node("a", tainted)}, p); n != "a" {
		t.Fatal("operator Exists without a key tolerates every taint")
	}
	// PreferNoSchedule: another node first, the tainted one if it must.
	q := podSpec(nil, "", "")
	if n, _ := place([]*Node{node("a", soft), node("b")}, q); n != "b" {
		t.Fatalf("PreferNoSchedule node chosen: %q", n)
	}
	// Node affinity: required Gt, preferred weights.
	q.Spec.Affinity = &Affinity{NodeAffinity: &NodeAffinity{
		Required:  &NodeSelector{NodeSelectorTerms: []NodeSelectorTerm{{MatchExpressions: []NodeSelectorRequirement{{Key: "ram-gb", Operator: "Gt", Values: []string{"2"}}}}}},
		Preferred: []PreferredSchedulingTerm{{Weight: 50, Preference: NodeSelectorTerm{MatchExpressions: []NodeSelectorRequirement{{Key: "ram-gb", Operator: "In", Values: []string{"8"}}}}}}}}
	if n, _ := place([]*Node{node("a", ram("2")), node("b", ram("4")), node("c", ram("8"))}, q); n != "c" {
		t.Fatalf("affinity placed on %q, want c (8 GB preferred)", n)
	}
	if n, why := place([]*Node{node("a", ram("1"))}, q); n != "" || !strings.Contains(why, "node affinity") {
		t.Fatalf("required affinity ignored: %q %q", n, why)
	}
	// Anti-affinity by hostname: one per node.
	one := func() *Pod {
		p := podSpec(nil, "", "")
		p.Metadata.Labels = map[string]string{"app": "db"}
		p.Spec.Affinity = &Affinity{PodAntiAffinity: &PodAntiAffinity{Required: []PodAffinityTerm{{
			LabelSelector: &LabelSelector{MatchLabels: map[string]string{"app": "db"}}, TopologyKey: LabelHostname}}}}
		return p
	}
	sc := &Scheduler{Nodes: NewNodeInfos([]*Node{node("a"), node("b")}), Usage: map[string]*NodeUsage{}}
	n1, _ := sc.Schedule(one())
	n2, _ := sc.Schedule(one())
	n3, why := sc.Schedule(one())
	if n1 == "" || n2 == "" || n1 == n2 || n3 != "" || !strings.Contains(why, "anti-affinity") {
		t.Fatalf("anti-affinity: %q %q %q (%s)", n1, n2, n3, why)
	}
}

func TestValidate_TolerationsAffinity(t *testing.T) {
	for _, tt := range []struct {
		spec PodSpec
		want string
	}{
		{PodSpec{Tolerations: []Toleration{{Operator: "Equal", Value: "x"}}}, "tolerations[0].key: required"},
		{PodSpec{Tolerations: []Toleration{{Key: "k", Operator: "Maybe"}}}, `"Maybe": must be Equal or Exists`},
		{PodSpec{Affinity: &Affinity{NodeAffinity: &NodeAffinity{Required: &NodeSelector{NodeSelectorTerms: []NodeSelectorTerm{{MatchExpressions: []NodeSelectorRequirement{{Key: "k", Operator: "Near"}}}}}}}}, `"Near": must be In, NotIn`},
		{PodSpec{Affinity: &Affinity{PodAntiAffinity: &PodAntiAffinity{Required: []PodAffinityTerm{{LabelSelector: &LabelSelector{MatchLabels: map[string]string{"a": "b"}}, TopologyKey: "topology.kubernetes.io/zone"}}}}}, "only kubernetes.io/hostname"},
	} {
		spec := tt.spec
		spec.Containers = []Container{{Name: "c", Image: "x"}}
		spec.RestartPolicy = RestartAlways
		if err := validatePodSpec("spec", &spec); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.spec, err, tt.want)
		}
	}
	if _, err := ParseTaint("dedicated=gpu:NoSchedule"); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseTaint("dedicated=gpu:Sometimes"); err == nil {
		t.Fatal("a bad effect accepted")
	}
}
