package core_test

import (
	"context"
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
)

const jobManifest = `apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  template:
    spec:
      containers:
      - name: c
        image: demo:1
        command: ["sh", "-c", "echo done"]
      restartPolicy: Never
`

const cronManifest = `apiVersion: batch/v1
kind: CronJob
metadata: {name: hello}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: c, image: demo:1}]
          restartPolicy: OnFailure
`

func TestDecodeJob_Defaults(t *testing.T) {
	obj, err := core.DecodeManifest([]byte(jobManifest))
	if err != nil {
		t.Fatal(err)
	}
	j := obj.(*core.Job)
	s := j.Spec
	if *s.Completions != 1 || *s.Parallelism != 1 || *s.BackoffLimit != 6 || s.CompletionMode != "NonIndexed" || *s.Suspend ||
		s.PodReplacementPolicy != "TerminatingOrFailed" || s.Template.Spec.RestartPolicy != core.RestartNever || j.Metadata.Namespace != "default" {
		t.Fatalf("defaults: %+v", s)
	}
	if c := s.Template.Spec.Containers[0]; c.ImagePullPolicy != core.PullIfNotPresent {
		t.Fatalf("pod template not defaulted: %+v", c)
	}
	// Parallelism alone makes a work queue: completions stays unset.
	obj, err = core.DecodeManifest([]byte(strings.Replace(jobManifest, "spec:\n  template:", "spec:\n  parallelism: 3\n  template:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if s := obj.(*core.Job).Spec; s.Completions != nil || *s.Parallelism != 3 {
		t.Fatalf("work queue: completions %v parallelism %v", s.Completions, *s.Parallelism)
	}
	obj, err = core.DecodeManifest([]byte(cronManifest))
	if err != nil {
		t.Fatal(err)
	}
	cj := obj.(*core.CronJob)
	if cs := cj.Spec; cs.ConcurrencyPolicy != "Allow" || *cs.Suspend || *cs.SuccessfulJobsHistoryLimit != 3 || *cs.FailedJobsHistoryLimit != 1 ||
		cs.TimeZone != nil || *cs.JobTemplate.Spec.Completions != 1 || *cs.JobTemplate.Spec.BackoffLimit != 6 {
		t.Fatalf("cronjob defaults: %+v", cs)
	}
	if core.KindJob.APIVersion() != "batch/v1" || core.KindCronJob.APIVersion() != "batch/v1" ||
		core.KindJob.Plural() != "jobs" || core.KindCronJob.Plural() != "cronjobs" || !core.KindJob.Namespaced() {
		t.Fatal("kind metadata")
	}
	for s, want := range map[string]core.Kind{"jobs": core.KindJob, "job": core.KindJob, "Job": core.KindJob,
		"cronjobs": core.KindCronJob, "cronjob": core.KindCronJob, "cj": core.KindCronJob} {
		if k, err := core.ParseKind(s); err != nil || k != want {
			t.Errorf("ParseKind(%q) = %v, %v", s, k, err)
		}
	}
	if got := (core.ApplyResult{Kind: core.KindJob, Name: "pi", Action: "created"}).String(); got != "job.batch/pi created" {
		t.Errorf("apply result %q", got)
	}
	if got := (core.ApplyResult{Kind: core.KindDeployment, Name: "web", Action: "created"}).String(); got != "deployment.apps/web created" {
		t.Errorf("apply result %q", got)
	}
}

func TestDecodeJob_Errors(t *testing.T) {
	job := func(old, new string) string {
		if !strings.Contains(jobManifest, old) {
			t.Fatalf("%q not in the Job manifest", old)
		}
		return strings.Replace(jobManifest, old, new, 1)
	}
	cron := func(old, new string) string {
		if !strings.Contains(cronManifest, old) {
			t.Fatalf("%q not in the CronJob manifest", old)
		}
		return strings.Replace(cronManifest, old, new, 1)
	}
	spec := "spec:\n  template:"
	for _, tt := range []struct{ name, doc, want string }{
		{"restartPolicy Always", job("restartPolicy: Never", "restartPolicy: Always"),
			`Job "pi": spec.template.spec.restartPolicy: "Always" is not allowed for a Job's pods: must be OnFailure or Never`},
		{"restartPolicy missing", job("      restartPolicy: Never\n", ""),
			`Job "pi": spec.template.spec.restartPolicy: required for a Job's pods: OnFailure or Never`},
		{"restartPolicy unknown", job("restartPolicy: Never", "restartPolicy: Sometimes"),
			`spec.template.spec.restartPolicy: "Sometimes" is not allowed for a Job's pods: must be OnFailure or Never`},
		{"Indexed", job(spec, "spec:\n  completionMode: Indexed\n  template:"), `Job "pi": spec.completionMode: Indexed is not supported: only NonIndexed`},
		{"completion mode", job(spec, "spec:\n  completionMode: Sorted\n  template:"), `spec.completionMode: "Sorted": must be NonIndexed`},
		{"negative completions", job(spec, "spec:\n  completions: -1\n  template:"), `Job "pi": spec.completions: must be >= 0, got -1`},
		{"negative parallelism", job(spec, "spec:\n  parallelism: -2\n  template:"), `spec.parallelism: must be >= 0, got -2`},
		{"huge parallelism", job(spec, "spec:\n  parallelism: 20000\n  template:"), `spec.parallelism: 20000 is more than this cluster allows for one workload (at most 10000)`},
		{"negative backoffLimit", job(spec, "spec:\n  backoffLimit: -1\n  template:"), `spec.backoffLimit: must be >= 0, got -1`},
		{"negative deadline", job(spec, "spec:\n  activeDeadlineSeconds: -5\n  template:"), `spec.activeDeadlineSeconds: must be >= 0, got -5`},
		{"negative ttl", job(spec, "spec:\n  ttlSecondsAfterFinished: -1\n  template:"), `spec.ttlSecondsAfterFinished: must be >= 0, got -1`},
		{"replacement policy", job(spec, "spec:\n  podReplacementPolicy: Never\n  template:"), `spec.podReplacementPolicy: "Never": must be TerminatingOrFailed or Failed`},
		{"selector mismatch", job(spec, "spec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: db}}"),
			`Job "pi": spec.template.metadata.labels: must match spec.selector app=web`},
		{"manual selector without one", job(spec, "spec:\n  manualSelector: true\n  template:"), `spec.selector: required when manualSelector is true`},
		{"unsupported field", job(spec, "spec:\n  podFailurePolicy: {rules: []}\n  template:"), `Job "pi": unknown field "spec.podFailurePolicy"`},
		{"bad pod spec", job("image: demo:1", "image: ''"), `spec.template.spec.containers[0].image: required`},
		{"long name", job("name: pi", "name: "+strings.Repeat("a", 64)), `metadata.name: "` + strings.Repeat("a", 64) + `" is 64 characters: a Job's name is its pods' job-name label (at most 63)`},
		{"unknown apiVersion", strings.Replace(cronManifest, "batch/v1", "batch/v2alpha1", 1), `CronJob "hello": apiVersion "batch/v2alpha1" is not supported for CronJob (use batch/v1)`},
		{"schedule missing", cron(`  schedule: "*/5 * * * *"`+"\n", ""), `CronJob "hello": spec.schedule: required`},
		{"schedule out of range", cron(`"*/5 * * * *"`, `"61 * * * *"`), `CronJob "hello": spec.schedule: "61 * * * *": minute field: 61 is out of range 0-59`},
		{"schedule fields", cron(`"*/5 * * * *"`, `"*/5 * * *"`), `spec.schedule: "*/5 * * *": expected 5 fields`},
		{"schedule TZ", cron(`"*/5 * * * *"`, `"CRON_TZ=UTC 0 * * * *"`), `spec.schedule: "CRON_TZ=UTC 0 * * * *": a time zone in the schedule is not supported; set spec.timeZone instead`},
		{"unknown zone", cron(`  schedule:`, "  timeZone: Mars/Olympus_Mons\n  schedule:"), `CronJob "hello": spec.timeZone: "Mars/Olympus_Mons" is not a known IANA time zone`},
		{"Local zone", cron(`  schedule:`, "  timeZone: Local\n  schedule:"), `spec.timeZone: "Local" is not a time zone`},
		{"empty zone", cron(`  schedule:`, "  timeZone: ''\n  schedule:"), `spec.timeZone: "" is not a time zone`},
		{"concurrency", cron(`  schedule:`, "  concurrencyPolicy: Sometimes\n  schedule:"), `spec.concurrencyPolicy: "Sometimes": must be Allow, Forbid or Replace`},
		{"deadline", cron(`  schedule:`, "  startingDeadlineSeconds: -1\n  schedule:"), `spec.startingDeadlineSeconds: must be >= 0, got -1`},
		{"history", cron(`  schedule:`, "  successfulJobsHistoryLimit: -1\n  schedule:"), `spec.successfulJobsHistoryLimit: must be >= 0, got -1`},
		{"failed history", cron(`  schedule:`, "  failedJobsHistoryLimit: -3\n  schedule:"), `spec.failedJobsHistoryLimit: must be >= 0, got -3`},
		{"template restartPolicy", cron("restartPolicy: OnFailure", "restartPolicy: Always"),
			`CronJob "hello": spec.jobTemplate.spec.template.spec.restartPolicy: "Always" is not allowed for a Job's pods: must be OnFailure or Never`},
		{"template Indexed", cron("    spec:\n      template:", "    spec:\n      completionMode: Indexed\n      template:"), `spec.jobTemplate.spec.completionMode: Indexed is not supported`},
		{"template labels", cron("  jobTemplate:\n", "  jobTemplate:\n    metadata: {labels: {'a b': c}}\n"), `spec.jobTemplate.metadata.labels: key "a b" is not a valid label name`},
		{"template unknown field", cron("image: demo:1", "image: demo:1, imagePolicy: x"), `unknown field "spec.jobTemplate.spec.template.spec.containers[0].imagePolicy"`},
		{"long cron name", cron("name: hello", "name: "+strings.Repeat("h", 53)), `metadata.name: "` + strings.Repeat("h", 53) + `" is 53 characters: a CronJob's name, with the suffix its Jobs get, must fit a label (at most 52)`},
	} {
		_, err := core.DecodeManifest([]byte(tt.doc))
		if err == nil || !strings.Contains(core.ErrorMessage(err), tt.want) || core.ErrorCode(err) != core.EINVALID {
			t.Errorf("%s: got %v\nwant an EINVALID error containing %s", tt.name, err, tt.want)
		}
	}
}

// A Job's template, completions and selector are fixed once it runs, as in
// Kubernetes; parallelism may change.
func TestApplyJob_Immutable(t *testing.T) {
	c := newCluster(t)
	base := strings.Replace(jobManifest, "spec:\n  template:", "spec:\n  completions: 3\n  template:", 1)
	c.Apply(base)
	objs, err := core.DecodeManifests([]core.ManifestFile{{Name: "job.yaml", Data: []byte(strings.Replace(base, "echo done", "echo other", 1))}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = core.Apply(context.Background(), c.Store, objs, c.Now(), c.Ctl.Network)
	if want := `job "pi": spec.template: a Job's pod template cannot change; delete the Job and apply again`; err == nil || core.ErrorMessage(err) != want {
		t.Fatalf("changing the template: %v, want %q", err, want)
	}
	if res := c.Apply(strings.Replace(base, "spec:\n  completions: 3", "spec:\n  completions: 3\n  parallelism: 2", 1)); res[0].Action != "configured" {
		t.Fatalf("changing parallelism: %+v", res)
	}
	if res := c.Apply(base); res[0].Action != "configured" {
		t.Fatalf("again: %+v", res)
	}
	// Parallelism alone would make it a work queue: completions changes.
	objs, _ = core.DecodeManifests([]core.ManifestFile{{Name: "job.yaml", Data: []byte(strings.Replace(jobManifest, "spec:\n  template:", "spec:\n  parallelism: 2\n  template:", 1))}})
	if _, err := core.Apply(context.Background(), c.Store, objs, c.Now(), c.Ctl.Network); err == nil || !strings.Contains(core.ErrorMessage(err), "spec.completions: cannot change") {
		t.Fatalf("changing completions: %v", err)
	}
	// Status in a manifest is the server's, not the user's.
	res := c.Apply(strings.Replace(cronManifest, "spec:\n  schedule", "status: {lastScheduleTime: '2020-01-01T00:00:00Z'}\nspec:\n  schedule", 1))
	if res[0].Action != "created" || c.Get(core.Key{Kind: core.KindCronJob, Namespace: "default", Name: "hello"}).(*core.CronJob).Status.LastScheduleTime != nil {
		t.Fatalf("a manifest's status was kept: %+v", res)
	}
}
