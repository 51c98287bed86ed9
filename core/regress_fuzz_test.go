package core

// Regressions a review found: each test sets up the scenario that used to
// go wrong (its comment says how) and checks it no longer does.

import "testing"

func TestRegress_CronStepOverflow(t *testing.T) {
	doc := "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: \"1/9223372036854775807 * * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{name: c, image: x}]\n"
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("DecodeManifests panicked: %v", r)
		}
	}()
	_, err := DecodeManifests([]ManifestFile{{Name: "f.yaml", Data: []byte(doc)}})
	t.Logf("err: %v", err)
}
