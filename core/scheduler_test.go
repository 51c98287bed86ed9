package core

import "testing"

func node(name string, mods ...func(*Node)) *Node {
	n := &Node{Metadata: ObjectMeta{Name: name, Labels: map[string]string{LabelArch: "arm64", LabelOS: "linux", LabelHostname: name}},
		Status: NodeStatus{Allocatable: ResourceList{"cpu": "2", "memory": "1Gi"},
			Conditions: []NodeCondition{{Type: "Ready", Status: ConditionTrue}}}}
	for _, m := range mods {
		m(n)
	}
	return n
}

func notReady(n *Node) { n.Status.Conditions[0].Status = ConditionUnknown }
func cordoned(n *Node) { n.Spec.Unschedulable = true }
func amd64(n *Node)    { n.Metadata.Labels[LabelArch] = "amd64" }
func smallMem(n *Node) { n.Status.Allocatable["memory"] = "64Mi" }
func smallCPU(n *Node) { n.Status.Allocatable["cpu"] = "100m" }
func zoneX(n *Node)    { n.Metadata.Labels["zone"] = "x" }
func hasImage(n *Node) { n.Status.Images = []NodeImage{{Names: []string{"docker.io/library/app:v1"}}} }
func deletedN(n *Node) { n.Metadata.DeletionTimestamp = NewTime(n.Metadata.CreationTimestamp.Time) }
func created(n *Node)  { n.Metadata.CreationTimestamp = &Time{} }
func podSpec(sel map[string]string, cpu, mem string) *Pod {
	p := &Pod{Metadata: ObjectMeta{Name: "p", OwnerReferences: []OwnerReference{{UID: "owner", Controller: true}}},
		Spec: PodSpec{NodeSelector: sel, Containers: []Container{{Name: "c", Image: "app:v1",
			Resources: ResourceRequirements{Requests: ResourceList{}}}}}}
	if cpu != "" {
		p.Spec.Containers[0].Resources.Requests["cpu"] = Quantity(cpu)
	}
	if mem != "" {
		p.Spec.Containers[0].Resources.Requests["memory"] = Quantity(mem)
	}
	return p
}

func TestScheduleFilters(t *testing.T) {
	for _, tt := range []struct {
		name  string
		pod   *Pod
		nodes []*Node
		want  string // node, or the explanation when none fits
	}{
		{"fits", podSpec(nil, "100m", "64Mi"), []*Node{node("a")}, "a"},
		{"not ready", podSpec(nil, "", ""), []*Node{node("a", notReady), node("b")}, "b"},
		{"deleted node", podSpec(nil, "", ""), []*Node{node("a", created, deletedN), node("b")}, "b"},
		{"cordoned", podSpec(nil, "", ""), []*Node{node("a", cordoned), node("b")}, "b"},
		{"arch selector", podSpec(map[string]string{LabelArch: "amd64"}, "", ""), []*Node{node("a"), node("b", amd64)}, "b"},
		{"os selector", podSpec(map[string]string{LabelOS: "windows"}, "", ""), []*Node{node("a")},
			"0/1 nodes available: 1 didn't match node selector"},
		{"memory", podSpec(nil, "", "128Mi"), []*Node{node("a", smallMem), node("b")}, "b"},
		{"cpu", podSpec(nil, "500m", ""), []*Node{node("a", smallCPU), node("b")}, "b"},
		{"explanation", podSpec(map[string]string{"zone": "x"}, "", "512Mi"),
			[]*Node{node("a", smallMem, zoneX), node("b", smallMem, zoneX), node("c"), node("d", notReady), node("e", cordoned)},
			"0/5 nodes available: 2 insufficient memory, 1 didn't match node selector, 1 not ready, 1 unschedulable (cordoned)"},
		{"no nodes", podSpec(nil, "", ""), nil, "0/0 nodes available: no nodes have joined the cluster"},
		{"image locality", podSpec(nil, "", ""), []*Node{node("a"), node("b", hasImage)}, "b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, why := Schedule(tt.pod, tt.nodes, map[string]*NodeUsage{})
			if got == "" {
				got = why
			}
			if got != tt.want {
				t.Fatalf("Schedule = %q, want %q", got, tt.want)
			}
		})
	}
}

// Requests already placed count against allocatable.
func TestScheduleUsage(t *testing.T) {
	nodes := []*Node{node("a"), node("b")}
	usage := map[string]*NodeUsage{"a": {Memory: 1000 << 20, Owners: map[string]int{}}}
	if got, _ := Schedule(podSpec(nil, "", "100Mi"), nodes, usage); got != "b" {
		t.Fatalf("placed on %q, want b (a is full)", got)
	}
}

// Replicas of one workload spread before anything else; then the least
// allocated node wins.
func TestScheduleSpreadAndLeastAllocated(t *testing.T) {
	nodes := []*Node{node("a"), node("b"), node("c")}
	usage := map[string]*NodeUsage{}
	count := map[string]int{}
	for i := 0; i < 6; i++ {
		n, why := Schedule(podSpec(nil, "100m", "32Mi"), nodes, usage)
		if n == "" {
			t.Fatal(why)
		}
		count[n]++
	}
	if count["a"] != 2 || count["b"] != 2 || count["c"] != 2 {
		t.Fatalf("spread %v, want 2/2/2", count)
	}
	// Another workload goes to the least allocated node.
	usage["a"].MilliCPU += 1000
	usage["b"].MilliCPU += 500
	other := podSpec(nil, "100m", "32Mi")
	other.Metadata.OwnerReferences[0].UID = "other"
	if n, _ := Schedule(other, nodes, usage); n != "c" {
		t.Fatalf("placed on %q, want the least allocated c", n)
	}
}

// Spreading beats image locality: one node holding the image must not get
// every replica.
func TestScheduleSpreadBeatsImage(t *testing.T) {
	nodes := []*Node{node("a", hasImage), node("b")}
	usage := map[string]*NodeUsage{}
	count := map[string]int{}
	for i := 0; i < 4; i++ {
		n, _ := Schedule(podSpec(nil, "", ""), nodes, usage)
		count[n]++
	}
	if count["a"] != 2 || count["b"] != 2 {
		t.Fatalf("placement %v", count)
	}
}
