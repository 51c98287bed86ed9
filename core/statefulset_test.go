package core_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/coretest"
)

func statefulSetYAML(replicas int, extra string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: %d
  serviceName: db
  selector: {matchLabels: {app: db}}
%s  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: c
        image: demo:1
        volumeMounts: [{name: data, mountPath: /var/lib/db}]
`, replicas, extra)
}

func stsPods(c *coretest.Cluster) map[string]*core.Pod {
	out := map[string]*core.Pod{}
	for _, p := range c.Active() {
		out[p.Metadata.Name] = p
	}
	return out
}

// Pods start one at a time, each once the one before is ready, with a
// stable name, DNS identity and claim; a restarted pod comes back with the
// same name on the node of its volume.
func TestStatefulSet_OrderedStartStableIdentity(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	volumeNode(c, "n2", "10Gi")
	c.Apply(statefulSetYAML(3, ""))
	c.Sync()
	pods := stsPods(c)
	if len(pods) != 1 || pods["db-0"] == nil {
		t.Fatalf("first pass: %v, want db-0 only", coretest.Names(c.Pods()))
	}
	p0 := pods["db-0"]
	if p0.Spec.Hostname != "db-0" || p0.Spec.Subdomain != "db" || p0.Metadata.Labels[core.LabelStatefulSetPodName] != "db-0" ||
		p0.Metadata.Labels[core.LabelPodIndex] != "0" || len(p0.Spec.Volumes) != 1 || p0.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "data-db-0" {
		t.Fatalf("db-0: %+v %+v", p0.Metadata.Labels, p0.Spec)
	}
	cl := getClaim(c, "data-db-0")
	if cl.Metadata.Labels["app"] != "db" || !cl.Bound() {
		t.Fatalf("claim data-db-0: %+v %+v", cl.Metadata.Labels, cl.Status)
	}
	c.Sync()
	if n := len(stsPods(c)); n != 1 {
		t.Fatalf("db-1 was made before db-0 was ready (%d pods)", n)
	}
	c.Agent(p0.Spec.NodeName)
	c.Sync()
	if pods = stsPods(c); pods["db-1"] == nil || pods["db-2"] != nil {
		t.Fatalf("after db-0 ready: %v", coretest.Names(c.Pods()))
	}
	for i := 0; i < 4; i++ {
		c.Agent("n1")
		c.Agent("n2")
		c.Sync()
	}
	pods = stsPods(c)
	if len(pods) != 3 {
		t.Fatalf("pods %v", coretest.Names(c.Pods()))
	}
	sts := c.Get(core.Key{Kind: core.KindStatefulSet, Namespace: "default", Name: "db"}).(*core.StatefulSet)
	if st := sts.Status; st.Replicas != 3 || st.ReadyReplicas != 3 || st.UpdatedReplicas != 3 || st.CurrentRevision != st.UpdateRevision {
		t.Fatalf("status %+v", st)
	}
	// db-1 deleted: it comes back under its name, where its data is.
	node1 := pods["db-1"].Spec.NodeName
	c.Delete(core.Key{Kind: core.KindPod, Namespace: "default", Name: "db-1"})
	c.Sync()
	c.Agent(node1) // the agent confirms the stop: the record goes
	c.Sync()
	c.Sync()
	if p := stsPods(c)["db-1"]; p == nil || p.Spec.NodeName != node1 {
		t.Fatalf("db-1 after deletion: %+v (was on %s)", p, node1)
	}
}

// Scale down removes the highest ordinal first, one at a time; claims stay
// (Retain) and a scaled-up pod takes its old claim again. A template change
// rolls from the highest ordinal down.
func TestStatefulSet_ScaleAndRollingUpdate(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	c.Apply(statefulSetYAML(3, ""))
	for i := 0; i < 5; i++ {
		c.Sync()
		c.Agent("n1")
	}
	c.Sync()
	if n := len(stsPods(c)); n != 3 {
		t.Fatalf("%d pods", n)
	}
	c.Apply(statefulSetYAML(1, ""))
	c.Sync()
	if pods := stsPods(c); pods["db-2"] != nil || pods["db-1"] == nil {
		t.Fatalf("first scale-down step: %v", coretest.Names(c.Pods()))
	}
	for i := 0; i < 4; i++ {
		c.Agent("n1")
		c.Sync()
	}
	if pods := stsPods(c); len(pods) != 1 || pods["db-0"] == nil {
		t.Fatalf("after scale-down: %v", coretest.Names(c.Pods()))
	}
	for _, name := range []string{"data-db-0", "data-db-1", "data-db-2"} {
		if cl := getClaim(c, name); !cl.Bound() {
			t.Fatalf("%s after scale-down: %+v", name, cl.Status)
		}
	}
	oldVolume := getClaim(c, "data-db-1").Spec.VolumeName
	c.Apply(statefulSetYAML(2, ""))
	for i := 0; i < 3; i++ {
		c.Sync()
		c.Agent("n1")
	}
	if getClaim(c, "data-db-1").Spec.VolumeName != oldVolume {
		t.Fatal("a scaled-up pod got a new volume instead of its old claim's")
	}
	// A new image: db-1 goes first, then db-0.
	c.Apply(strings.Replace(statefulSetYAML(2, ""), "demo:1", "demo:2", 1))
	c.Sync()
	var terminating []string
	for _, p := range c.Pods() {
		if p.Terminating() {
			terminating = append(terminating, p.Metadata.Name)
		}
	}
	if len(terminating) != 1 || terminating[0] != "db-1" {
		t.Fatalf("rolling update first step stops %v, want [db-1]", terminating)
	}
	for i := 0; i < 8; i++ {
		c.Agent("n1")
		c.Sync()
	}
	for _, p := range c.Pods() {
		if p.Spec.Containers[0].Image != "demo:2" {
			t.Fatalf("%s still runs %s", p.Metadata.Name, p.Spec.Containers[0].Image)
		}
	}
}

// whenDeleted: Delete removes the claims with the StatefulSet (once their
// pods are gone); the default keeps them.
func TestStatefulSet_ClaimRetention(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	c.Apply(statefulSetYAML(1, "  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete}\n"))
	c.Sync()
	c.Agent("n1")
	c.Sync()
	if !getClaim(c, "data-db-0").Bound() {
		t.Fatal("claim not bound")
	}
	c.Delete(core.Key{Kind: core.KindStatefulSet, Namespace: "default", Name: "db"})
	for i := 0; i < 4; i++ {
		c.Sync()
		c.Agent("n1")
	}
	if _, err := c.Store.Get(ctx, core.Key{Kind: core.KindPersistentVolumeClaim, Namespace: "default", Name: "data-db-0"}); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("claim of a deleted StatefulSet with whenDeleted: Delete: %v", err)
	}
}

func TestStatefulSet_Validation(t *testing.T) {
	for _, tt := range []struct{ doc, msg string }{
		{strings.Replace(statefulSetYAML(1, ""), "mountPath: /var/lib/db", "mountPath: /x}, {name: nope, mountPath: /y", 1), `volume "nope" is not defined`},
		{strings.Replace(statefulSetYAML(1, ""), "accessModes: [ReadWriteOnce]\n", "", 1), "spec.volumeClaimTemplates[0].spec.accessModes: at least one"},
		{statefulSetYAML(1, "  podManagementPolicy: Random\n"), `spec.podManagementPolicy: "Random"`},
		{statefulSetYAML(1, "  updateStrategy: {type: Sometimes}\n"), `spec.updateStrategy.type: "Sometimes"`},
		{statefulSetYAML(1, "  persistentVolumeClaimRetentionPolicy: {whenScaled: Keep}\n"), `whenScaled: "Keep"`},
		{strings.Replace(statefulSetYAML(1, ""), "name: db}", "name: "+strings.Repeat("a", 62)+"}", 1), "must fit 63 characters"},
		{strings.Replace(statefulSetYAML(1, ""), "    metadata: {labels: {app: db}}\n    spec:\n", "    metadata: {labels: {app: db}}\n    spec:\n      restartPolicy: Never\n", 1), "only Always"},
	} {
		_, err := core.DecodeManifests([]core.ManifestFile{{Name: "s.yaml", Data: []byte(tt.doc)}})
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("error %v, want %q", err, tt.msg)
		}
	}
}
