package core_test

import (
	"strings"
	"testing"
)

// A DoNotSchedule spread over hostnames keeps replicas within maxSkew of
// each other, beyond the scheduler's own spreading, even with a matching
// pod of another workload on a node; a label key some nodes lack keeps
// the pod off them.
func TestSpread_DoNotSchedule(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", map[string]string{"zone": "a"}, "8", "8Gi")
	c.AddNode("n2", map[string]string{"zone": "a"}, "8", "8Gi")
	c.AddNode("n3", map[string]string{"zone": "b"}, "8", "8Gi")
	c.AddNode("n4", nil, "8", "8Gi") // no zone label
	c.Apply(deployment("web", 4, `      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: zone
        whenUnsatisfiable: DoNotSchedule
        labelSelector: {matchExpressions: [{key: app, operator: In, values: [web]}]}
`))
	c.Sync()
	zones := map[string]int{}
	for _, p := range c.Active() {
		switch p.Spec.NodeName {
		case "n1", "n2":
			zones["a"]++
		case "n3":
			zones["b"]++
		default:
			t.Fatalf("pod on %q: a node without the zone label is in no domain", p.Spec.NodeName)
		}
	}
	if zones["a"] != 2 || zones["b"] != 2 {
		t.Fatalf("zones %v, want 2/2", zones)
	}
	// Two more: skew allows 3/3 at most, never 4/2.
	c.Apply(deployment("web", 6, `      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: zone
        whenUnsatisfiable: DoNotSchedule
        labelSelector: {matchExpressions: [{key: app, operator: In, values: [web]}]}
`))
	c.Sync()
	zones = map[string]int{}
	for _, p := range c.Active() {
		if p.Spec.NodeName == "n3" {
			zones["b"]++
		} else if p.Spec.NodeName != "" {
			zones["a"]++
		}
	}
	if zones["a"] != 3 || zones["b"] != 3 {
		t.Fatalf("zones %v, want 3/3", zones)
	}
}

// A DaemonSet's update replaces maxUnavailable nodes' pods at a time;
// OnDelete replaces none until they are deleted.
func TestDaemonSet_UpdateStrategy(t *testing.T) {
	for _, tt := range []struct {
		strategy string
		stopping int
	}{
		{"", 1},
		{"  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 2}}\n", 2},
		{"  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 50%}}\n", 2},
		{"  updateStrategy: {type: OnDelete}\n", 0},
	} {
		c := newCluster(t)
		for _, n := range []string{"n1", "n2", "n3", "n4"} {
			c.AddNode(n, nil, "4", "4Gi")
		}
		ds := strings.Replace(logsDaemons, "  selector:", tt.strategy+"  selector:", 1)
		c.Apply(ds)
		c.Sync()
		for _, n := range []string{"n1", "n2", "n3", "n4"} {
			c.Agent(n)
		}
		c.Sync()
		c.Apply(strings.Replace(ds, "demo:1", "demo:2", 1))
		c.Sync()
		stopping := 0
		for _, p := range c.Pods() {
			if p.Terminating() {
				stopping++
			}
		}
		if stopping != tt.stopping {
			t.Errorf("%q: %d pods stopping at once, want %d", tt.strategy, stopping, tt.stopping)
		}
	}
}
