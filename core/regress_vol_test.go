package core_test

// Regressions a review found: each test sets up the scenario that used to
// go wrong (its comment says how) and checks it no longer does.

import (
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/coretest"
)

// A claim deleted while in use, whose pod is then replaced: the replacement
// is pending ("being deleted") and, counted as a user, keeps the claim
// terminating for ever (Kubernetes counts only scheduled pods).
func TestRegress_PendingPodPinsTerminatingClaim(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	c.Apply(claimYAML("data", "1Gi", ""))
	c.Apply(deployment("db", 1, withClaim("data")))
	c.Sync()
	c.Agent("n1")
	c.Sync()
	claimKey := core.Key{Kind: core.KindPersistentVolumeClaim, Namespace: "default", Name: "data"}
	c.Delete(claimKey)
	c.Sync()
	old := c.Active()[0]
	c.Delete(core.Key{Kind: core.KindPod, Namespace: "default", Name: old.Metadata.Name})
	for i := 0; i < 10; i++ {
		c.Sync()
		c.Agent("n1")
	}
	if _, err := c.Store.Get(ctx, claimKey); err == nil {
		t.Errorf("claim still there (terminating) after its only running pod went: a pending pod protects it for ever")
	}
}

// A DaemonSet (placed past the scheduler) using one claim: every node is
// sent the same provisioned path, and each makes its own empty directory.
func TestRegress_DaemonSetClaimOnEveryNode(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	volumeNode(c, "n2", "10Gi")
	c.Apply(claimYAML("shared", "1Gi", ""))
	c.Apply(`apiVersion: apps/v1
kind: DaemonSet
metadata: {name: d}
spec:
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      containers: [{name: c, image: demo:1, volumeMounts: [{name: data, mountPath: /data}]}]
` + withClaim("shared"))
	c.Sync()
	c.Sync()
	v1, v2 := c.Bus.Desired("n1").Volumes, c.Bus.Desired("n2").Volumes
	if len(v1) == 1 && len(v2) == 1 {
		t.Errorf("both nodes were sent the claim's volume (%s and %s): only one holds it", v1[0].Path, v2[0].Path)
	}
}

// ReadWriteOncePod: two pending pods of one claim placed in one pass both
// run.
func TestRegress_ReadWriteOncePodSamePass(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	c.Apply(strings.Replace(claimYAML("solo", "1Gi", ""), "ReadWriteOnce", "ReadWriteOncePod", 1))
	c.Apply(deployment("db", 2, withClaim("solo")))
	c.Sync()
	n := 0
	for _, p := range c.Active() {
		if p.Spec.NodeName != "" {
			n++
		}
	}
	if n > 1 {
		t.Errorf("%d pods of a ReadWriteOncePod claim scheduled", n)
	}
}

// A claim with storageClassName "" (Kubernetes: never provisioned, binds
// only a PV made by hand) is provisioned when its pod comes before the PV.
func TestRegress_EmptyClassProvisioned(t *testing.T) {
	c := newCluster(t)
	volumeNode(c, "n1", "10Gi")
	c.Apply(claimYAML("media", "1Gi", "  storageClassName: \"\"\n"))
	c.Apply(deployment("db", 1, withClaim("media")))
	c.Sync()
	cl := getClaim(c, "media")
	if cl.Bound() {
		v, _ := getVolume(c, cl.Spec.VolumeName)
		t.Errorf("class \"\" claim provisioned: %s at %s", cl.Spec.VolumeName, v.Path())
	}
	_ = coretest.Names
}
