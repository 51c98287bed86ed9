package core

import (
	"fmt"
	"testing"
)

func benchNodes(n int) []*Node {
	nodes := make([]*Node, n)
	for i := range nodes {
		res := ResourceList{"cpu": "4", "memory": "4Gi"}
		nodes[i] = &Node{Metadata: ObjectMeta{Name: fmt.Sprintf("n%04d", i), Labels: map[string]string{LabelArch: "arm64"}},
			Status: NodeStatus{Allocatable: res, Conditions: []NodeCondition{{Type: "Ready", Status: ConditionTrue}}}}
	}
	return nodes
}

// BenchmarkSchedule places one pod among 1,000 nodes.
func BenchmarkSchedule1000Nodes(b *testing.B) {
	nodes := benchNodes(1000)
	pod := &Pod{Metadata: ObjectMeta{OwnerReferences: []OwnerReference{{UID: "d", Controller: true}}},
		Spec: PodSpec{NodeSelector: map[string]string{LabelArch: "arm64"},
			Containers: []Container{{Resources: ResourceRequirements{Requests: ResourceList{"cpu": "10m", "memory": "8Mi"}}}}}}
	usage := map[string]*NodeUsage{}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if n, why := Schedule(pod, nodes, usage); n == "" {
			b.Fatal(why)
		}
	}
}

func BenchmarkDecodeManifest(b *testing.B) {
	doc := []byte(deployYAML)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeManifests([]ManifestFile{{Name: "a.yaml", Data: doc}}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkQuantity(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if v, _ := Quantity("250m").MilliValue(); v != 250 {
			b.Fatal(v)
		}
	}
}
