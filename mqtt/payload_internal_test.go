package mqtt

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
)

// A payload of empty objects decodes into one struct per three bytes: it is
// refused on its bytes, before anything is allocated for it.
func TestCheckShape(t *testing.T) {
	bomb := "[" + strings.Repeat("{},", 300000) + "{}]"
	if _, err := decodeEvents([]byte(bomb)); core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "objects and arrays") {
		t.Fatalf("events array bomb: %v", err)
	}
	reportBomb := `{"pods":[{"status":{"containerStatuses":[` + strings.Repeat("{},", 100000) + `{}]}}]}`
	if _, err := decodeReport("n1", []byte(reportBomb)); core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("report array bomb: %v", err)
	}
	if _, err := decodeReport("n1", []byte(strings.Repeat("[", 40)+strings.Repeat("]", 40))); err == nil || !strings.Contains(err.Error(), "nested") {
		t.Fatalf("deep nesting: %v", err)
	}
	// Braces inside strings are text, not values.
	if err := checkShape("x", []byte(`{"a":"{{{{[[[[\"{{"}`), 100, 1); err != nil {
		t.Fatalf("braces in a string counted: %v", err)
	}
	bombBytes := []byte(bomb)
	allocs := testing.AllocsPerRun(5, func() { checkShape("events", bombBytes, maxEventsBytes, maxEventsValues) })
	if allocs > 10 { // the error it returns, whatever the payload's size
		t.Fatalf("checkShape allocates %v times refusing a bomb", allocs)
	}
	// A real report of 1000 pods passes.
	rep := core.NodeReport{Node: "n1"}
	for i := 0; i < core.MaxPodsPerReport; i++ {
		rep.Pods = append(rep.Pods, core.PodReport{Namespace: "default", Name: fmt.Sprint("p", i), UID: fmt.Sprint(i),
			Status: core.PodStatus{Phase: core.PodRunning, Conditions: []core.PodCondition{{Type: "Ready", Status: "True"}, {Type: "ContainersReady", Status: "True"}},
				ContainerStatuses: []core.ContainerStatus{{Name: "c", Ready: true, State: core.ContainerState{Running: &core.ContainerStateRunning{}},
					LastState: core.ContainerState{Terminated: &core.ContainerStateTerminated{ExitCode: 1}}}}}})
	}
	b, _ := json.Marshal(rep)
	if _, err := decodeReport("n1", b); err != nil {
		t.Fatalf("a report of %d pods (%d bytes): %v", len(rep.Pods), len(b), err)
	}
}

// A network state that is empty or broken is refused: applying it would
// tear down every route and rule of the node.
func TestDecodeNetwork(t *testing.T) {
	for _, bad := range []string{`null`, `{}`, `{"hash":"h"}`, `{"hash":"h","clusterCIDR":"10.42.0.0/16","serviceCIDR":"x"}`, `[`} {
		if _, err := decodeNetwork([]byte(bad)); core.ErrorCode(err) != core.EINVALID {
			t.Errorf("%s: %v", bad, err)
		}
	}
	ns, err := decodeNetwork([]byte(`{"hash":"h","clusterCIDR":"10.42.0.0/16","serviceCIDR":"10.43.0.0/16","services":[]}`))
	if err != nil || ns.Hash != "h" {
		t.Fatalf("a good state: %v", err)
	}
}
