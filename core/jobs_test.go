package core_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/coretest"
)

// Scenario tests of the Job and CronJob controllers on the memory store,
// with agents simulated by reports and a fake clock.

// jobYAML is a Job "name" of demo:1 pods with restartPolicy policy; spec
// lines (two-space indented) go before its template.
func jobYAML(name, policy, spec string) string {
	return fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: %s}
spec:
%s  template:
    spec:
      containers:
      - name: c
        image: demo:1
        resources: {limits: {memory: 32Mi, cpu: 100m}}
      restartPolicy: %s
`, name, spec, policy)
}

// cronYAML is a CronJob "name" on schedule whose Jobs run a demo:1 pod
// (restartPolicy Never, backoffLimit 0); spec lines go before its template.
func cronYAML(name, schedule, spec string) string {
	return fmt.Sprintf(`apiVersion: batch/v1
kind: CronJob
metadata: {name: %s}
spec:
  schedule: %q
%s  jobTemplate:
    spec:
      backoffLimit: 0
      template:
        spec:
          containers: [{name: c, image: demo:1}]
          restartPolicy: Never
`, name, schedule, spec)
}

// finished is the status of a pod whose container exited with code at now.
func finished(code int32, now time.Time) *core.PodStatus {
	phase, reason := core.PodSucceeded, "Completed"
	if code != 0 {
		phase, reason = core.PodFailed, "Error"
	}
	return &core.PodStatus{Phase: phase, ContainerStatuses: []core.ContainerStatus{{Name: "c",
		State: core.ContainerState{Terminated: &core.ContainerStateTerminated{ExitCode: code, Reason: reason, FinishedAt: core.NewTime(now)}}}}}
}

// outcomes reports the pods named in exits as exited with that code, the
// others as running.
func outcomes(c *coretest.Cluster, exits map[string]int32) func(*core.Pod) *core.PodStatus {
	return func(p *core.Pod) *core.PodStatus {
		if code, ok := exits[p.Metadata.Name]; ok {
			return finished(code, c.Now())
		}
		return coretest.Running(p)
	}
}

func getJob(c *coretest.Cluster, name string) *core.Job {
	c.T.Helper()
	return c.Get(core.Key{Kind: core.KindJob, Namespace: "default", Name: name}).(*core.Job)
}

func getCronJob(c *coretest.Cluster, name string) *core.CronJob {
	c.T.Helper()
	return c.Get(core.Key{Kind: core.KindCronJob, Namespace: "default", Name: name}).(*core.CronJob)
}

func jobs(c *coretest.Cluster) []*core.Job {
	c.T.Helper()
	js, err := core.ListAs[*core.Job](ctx, c.Store, core.KindJob, "")
	if err != nil {
		c.T.Fatal(err)
	}
	return js
}

func jobNames(js []*core.Job) []string {
	var out []string
	for _, j := range js {
		out = append(out, j.Metadata.Name)
	}
	sort.Strings(out)
	return out
}

// running returns the pods that run or wait to (not finished, not
// terminating).
func running(c *coretest.Cluster) []*core.Pod {
	var out []*core.Pod
	for _, p := range c.Pods() {
		if !p.Terminal() && !p.Terminating() {
			out = append(out, p)
		}
	}
	return out
}

func condition(j *core.Job, typ string) *core.JobCondition {
	c := j.Status.Condition(typ)
	if c == nil || c.Status != core.ConditionTrue {
		return nil
	}
	return c
}

func TestJob_CompletesWithinParallelism(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(jobYAML("calc", "Never", "  completions: 3\n  parallelism: 2\n"))
	c.Sync()
	exits := map[string]int32{}
	for round := 0; condition(getJob(c, "calc"), core.JobComplete) == nil; round++ {
		if round > 10 {
			t.Fatalf("not complete after 10 rounds: %+v", getJob(c, "calc").Status)
		}
		run := running(c)
		if len(run) > 2 {
			t.Fatalf("round %d: %d pods run at once, parallelism is 2: %v", round, len(run), coretest.Names(run))
		}
		if len(run) == 0 {
			t.Fatalf("round %d: no pod runs: %+v", round, getJob(c, "calc").Status)
		}
		if st := getJob(c, "calc").Status; int(st.Active) != len(run) {
			t.Fatalf("round %d: status.active %d, %d pods run", round, st.Active, len(run))
		}
		c.AgentWith("n1", outcomes(c, exits))
		c.Sync()
		exits[run[0].Metadata.Name] = 0 // one finishes each round
		c.Advance(time.Second)
		c.AgentWith("n1", outcomes(c, exits))
		c.Sync()
	}
	j := getJob(c, "calc")
	if st := j.Status; st.Succeeded != 3 || st.Failed != 0 || st.Active != 0 || st.CompletionTime == nil || st.StartTime == nil {
		t.Fatalf("status %+v", st)
	}
	if cond := condition(j, core.JobComplete); cond.Reason != "CompletionsReached" {
		t.Fatalf("condition %+v", cond)
	}
	pods := c.Pods()
	if len(pods) != 3 || len(exits) != 3 {
		t.Fatalf("%d pods (%v), %d finished; want 3 run, 3 kept", len(pods), coretest.Names(pods), len(exits))
	}
	for _, p := range pods {
		o := p.Owner()
		l := p.Metadata.Labels
		if p.Status.Phase != core.PodSucceeded || o == nil || o.Kind != core.KindJob || o.UID != j.Metadata.UID ||
			!strings.HasPrefix(p.Metadata.Name, "calc-") || l["job-name"] != "calc" || l["batch.kubernetes.io/job-name"] != "calc" ||
			l["controller-uid"] != j.Metadata.UID || l["batch.kubernetes.io/controller-uid"] != j.Metadata.UID {
			t.Fatalf("pod %s: phase %s, owner %+v, labels %v", p.Metadata.Name, p.Status.Phase, o, l)
		}
		if _, ok := l[core.LabelTemplateHash]; ok {
			t.Fatalf("a Job's pod has a template hash label: %v", l)
		}
	}
	// Finished pods stay for their logs, and a finished Job is left alone:
	// it writes nothing more, even when its pods' node speaks of them again
	// (after a reboot an agent may say a succeeded pod failed).
	c.Advance(time.Hour)
	w := c.Writes()
	c.AgentWith("n1", func(p *core.Pod) *core.PodStatus { return finished(137, c.Now()) })
	c.Sync()
	if w != c.Writes() || len(c.Pods()) != 3 || getJob(c, "calc").Status.Succeeded != 3 {
		t.Fatalf("%d writes after the Job finished; %d pods left; status %+v", c.Writes()-w, len(c.Pods()), getJob(c, "calc").Status)
	}
	for _, p := range c.Pods() {
		if p.Status.Phase != core.PodSucceeded {
			t.Fatalf("pod %s: a report turned a finished pod to %s", p.Metadata.Name, p.Status.Phase)
		}
	}
	// Deleting the Job deletes its pods.
	c.Delete(core.Key{Kind: core.KindJob, Namespace: "default", Name: "calc"})
	c.Sync()
	if n := len(c.Pods()); n != 0 {
		t.Fatalf("%d pods left after the Job was deleted", n)
	}
}

// A work queue (parallelism without completions) completes once one pod
// succeeded and the others finished; none starts after the first success.
func TestJob_WorkQueue(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(jobYAML("queue", "Never", "  parallelism: 3\n"))
	c.Sync()
	run := running(c)
	if len(run) != 3 {
		t.Fatalf("%d pods, want 3", len(run))
	}
	exits := map[string]int32{run[0].Metadata.Name: 0}
	c.AgentWith("n1", outcomes(c, exits))
	c.Sync()
	if n := len(running(c)); n != 2 || condition(getJob(c, "queue"), core.JobComplete) != nil {
		t.Fatalf("%d running after the first success, want the other 2 left running; status %+v", n, getJob(c, "queue").Status)
	}
	exits[run[1].Metadata.Name], exits[run[2].Metadata.Name] = 0, 0
	c.AgentWith("n1", outcomes(c, exits))
	c.Sync()
	if j := getJob(c, "queue"); condition(j, core.JobComplete) == nil || j.Status.Succeeded != 3 || len(c.Pods()) != 3 {
		t.Fatalf("status %+v, %d pods", j.Status, len(c.Pods()))
	}
}

func TestJob_BackoffLimitExceeded(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(jobYAML("flaky", "Never", "  completions: 4\n  parallelism: 2\n  backoffLimit: 1\n"))
	c.Sync()
	run := running(c)
	if len(run) != 2 {
		t.Fatalf("%d pods, want 2", len(run))
	}
	a, b := run[0].Metadata.Name, run[1].Metadata.Name
	exits := map[string]int32{a: 1}
	c.AgentWith("n1", outcomes(c, exits))
	c.Sync()
	// One failure is within the limit; its replacement waits out the
	// backoff (10s after the failure).
	j := getJob(c, "flaky")
	if j.Status.Failed != 1 || j.Finished() != nil || len(running(c)) != 1 {
		t.Fatalf("after one failure: status %+v, running %v", j.Status, coretest.Names(running(c)))
	}
	c.Advance(9 * time.Second)
	c.Sync()
	if n := len(running(c)); n != 1 {
		t.Fatalf("%d running 9s after the failure; the replacement should wait 10s", n)
	}
	c.Advance(2 * time.Second)
	c.Sync()
	run = running(c)
	if len(run) != 2 {
		t.Fatalf("%d running 11s after the failure, want the replacement", len(run))
	}
	var replacement string
	for _, p := range run {
		if p.Metadata.Name != b {
			replacement = p.Metadata.Name
		}
	}
	exits[replacement] = 2
	c.AgentWith("n1", outcomes(c, exits))
	c.Sync()
	j = getJob(c, "flaky")
	cond := condition(j, core.JobFailed)
	if cond == nil || cond.Reason != "BackoffLimitExceeded" || j.Status.Failed != 2 || j.Status.Active != 0 || j.Status.CompletionTime != nil {
		t.Fatalf("after 2 failures with backoffLimit 1: %+v", j.Status)
	}
	// The running pod is stopped; the failed ones are kept for their logs.
	for _, p := range c.Pods() {
		switch {
		case p.Metadata.Name == b && !p.Terminating():
			t.Fatalf("the running pod %s was not terminated", b)
		case p.Metadata.Name != b && (p.Terminating() || p.Status.Phase != core.PodFailed):
			t.Fatalf("failed pod %s: terminating %v, phase %s", p.Metadata.Name, p.Terminating(), p.Status.Phase)
		}
	}
	if n := len(c.Pods()); n != 3 {
		t.Fatalf("%d pods, want 3", n)
	}
	for _, p := range c.Bus.Desired("n1").Pods {
		if p.Metadata.Name == b {
			t.Fatalf("the stopped pod %s is still in its node's desired state", b)
		}
	}
}

// Restarts in place of an OnFailure pod count against the backoff limit.
func TestJob_OnFailureRestartsCount(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(jobYAML("retry", "OnFailure", "  backoffLimit: 3\n"))
	c.Sync()
	restarts := int32(0)
	crashing := func(p *core.Pod) *core.PodStatus {
		st := coretest.Running(p)
		st.ContainerStatuses[0].RestartCount = restarts
		return st
	}
	for restarts = 1; restarts < 3; restarts++ {
		c.AgentWith("n1", crashing)
		c.Sync()
		if j := getJob(c, "retry"); j.Finished() != nil || j.Status.Active != 1 {
			t.Fatalf("%d restarts, limit 3: %+v", restarts, j.Status)
		}
	}
	c.AgentWith("n1", crashing)
	c.Sync()
	j := getJob(c, "retry")
	if cond := condition(j, core.JobFailed); cond == nil || cond.Reason != "BackoffLimitExceeded" {
		t.Fatalf("3 restarts, limit 3: %+v", j.Status)
	}
	if p := c.Pods()[0]; !p.Terminating() {
		t.Fatal("the pod was not terminated")
	}
}

func TestJob_ActiveDeadline(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(jobYAML("slow", "Never", "  activeDeadlineSeconds: 30\n"))
	c.Sync()
	c.Agent("n1")
	c.Advance(29 * time.Second)
	c.Sync()
	if j := getJob(c, "slow"); j.Finished() != nil || j.Status.Active != 1 || j.Status.Ready == nil || *j.Status.Ready != 1 {
		t.Fatalf("after 29s of 30: %+v", j.Status)
	}
	c.Advance(time.Second)
	c.Sync()
	j := getJob(c, "slow")
	if cond := condition(j, core.JobFailed); cond == nil || cond.Reason != "DeadlineExceeded" || j.Status.Active != 0 {
		t.Fatalf("after 30s of 30: %+v", j.Status)
	}
	if p := c.Pods(); len(p) != 1 || !p[0].Terminating() {
		t.Fatalf("pods %v, want the one terminating", coretest.Names(p))
	}
}

func TestJob_TTLAfterFinished(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(jobYAML("once", "Never", "  ttlSecondsAfterFinished: 60\n"))
	c.Sync()
	c.AgentWith("n1", func(p *core.Pod) *core.PodStatus { return finished(0, c.Now()) })
	c.Sync()
	if j := getJob(c, "once"); condition(j, core.JobComplete) == nil {
		t.Fatalf("not complete: %+v", j.Status)
	}
	c.Advance(59 * time.Second)
	c.Sync()
	if len(jobs(c)) != 1 || len(c.Pods()) != 1 {
		t.Fatalf("59s after finishing, ttl 60: %d jobs, %d pods", len(jobs(c)), len(c.Pods()))
	}
	c.Advance(time.Second)
	c.Sync()
	if len(jobs(c)) != 0 || len(c.Pods()) != 0 {
		t.Fatalf("60s after finishing, ttl 60: jobs %v, pods %v", jobNames(jobs(c)), coretest.Names(c.Pods()))
	}
}

func TestJob_Suspend(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(jobYAML("later", "Never", "  suspend: true\n  activeDeadlineSeconds: 10\n"))
	c.Sync()
	j := getJob(c, "later")
	if len(c.Pods()) != 0 || condition(j, core.JobSuspended) == nil || j.Status.StartTime != nil {
		t.Fatalf("suspended: %d pods, %+v", len(c.Pods()), j.Status)
	}
	c.Advance(time.Minute) // the deadline counts from the resume
	c.Apply(jobYAML("later", "Never", "  suspend: false\n  activeDeadlineSeconds: 10\n"))
	c.Sync()
	j = getJob(c, "later")
	if len(running(c)) != 1 || j.Finished() != nil || j.Status.Condition(core.JobSuspended).Status != core.ConditionFalse {
		t.Fatalf("resumed: %d running, %+v", len(running(c)), j.Status)
	}
	c.Apply(jobYAML("later", "Never", "  suspend: true\n  activeDeadlineSeconds: 10\n"))
	c.Sync()
	if p := c.Pods(); len(p) != 1 || !p[0].Terminating() || getJob(c, "later").Status.Active != 0 {
		t.Fatalf("suspended again: pods %v", coretest.Names(p))
	}
}

// A Job's pod on a node that stopped answering is replaced elsewhere, and
// not counted as a failure.
func TestJob_NodeLost(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(jobYAML("far", "Never", "  backoffLimit: 0\n"))
	c.Sync()
	c.Agent("n1")
	c.AddNode("n2", nil, "4", "4Gi")
	c.Online("n1", false)
	c.Advance(10 * time.Second)
	c.Sync()
	run := running(c)
	j := getJob(c, "far")
	if len(run) != 1 || run[0].Spec.NodeName != "n2" || j.Finished() != nil || j.Status.Failed != 0 {
		t.Fatalf("after n1 was lost: running %v, status %+v", coretest.Names(run), j.Status)
	}
	c.AgentWith("n2", func(p *core.Pod) *core.PodStatus { return finished(0, c.Now()) })
	c.Sync()
	if j := getJob(c, "far"); condition(j, core.JobComplete) == nil {
		t.Fatalf("status %+v", j.Status)
	}
}

// A cluster whose Job runs and whose CronJob is not due writes nothing.
func TestJob_IdleWritesNothing(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(jobYAML("long", "Never", "  activeDeadlineSeconds: 3600\n  ttlSecondsAfterFinished: 3600\n"))
	c.Apply(cronYAML("nightly", "0 3 * * *", ""))
	c.Settle("n1")
	w := c.Writes()
	for i := 0; i < 10; i++ {
		c.Advance(time.Second)
		c.Agent("n1")
		c.Sync()
	}
	if n := c.Writes() - w; n != 0 {
		t.Fatalf("%d writes while idle", n)
	}
}

// at returns 2026-01-01 (the cluster's start day) at hh:mm UTC.
func at(hh, mm int) time.Time { return time.Date(2026, 1, 1, hh, mm, 0, 0, time.UTC) }

// advanceTo moves the clock to t.
func advanceTo(c *coretest.Cluster, t time.Time) {
	c.T.Helper()
	if d := t.Sub(c.Now()); d < 0 {
		c.T.Fatalf("the clock is past %s", t)
	} else {
		c.Advance(d)
	}
}

func cronJobName(name string, scheduled time.Time) string {
	return fmt.Sprintf("%s-%d", name, scheduled.Unix()/60)
}

func TestCronJob_SchedulesInItsTimeZone(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	// 09:30 in New York is 14:30 UTC in January; in Tokyo (the master's
	// zone here, for a CronJob without timeZone) 00:30 UTC.
	c.Ctl.Location = mustZone(t, "Asia/Tokyo")
	c.Apply(cronYAML("ny", "30 9 * * *", "  timeZone: America/New_York\n"))
	c.Apply(cronYAML("local", "30 9 * * *", ""))
	c.Sync()
	advanceTo(c, at(0, 29))
	c.Sync()
	if js := jobs(c); len(js) != 0 {
		t.Fatalf("jobs at 00:29 UTC: %v", jobNames(js))
	}
	advanceTo(c, at(0, 30))
	c.Sync()
	if got, want := jobNames(jobs(c)), []string{cronJobName("local", at(0, 30))}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("jobs at 00:30 UTC: %v, want %v", got, want)
	}
	advanceTo(c, at(14, 29).Add(59*time.Second))
	c.Sync()
	if n := len(jobs(c)); n != 1 {
		t.Fatalf("%d jobs at 14:29:59 UTC, want 1", n)
	}
	advanceTo(c, at(14, 30))
	c.Sync()
	name := cronJobName("ny", at(14, 30))
	j := getJob(c, name)
	cj := getCronJob(c, "ny")
	if o := j.Owner(); o == nil || o.Kind != core.KindCronJob || o.UID != cj.Metadata.UID ||
		j.Metadata.Annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"] != "2026-01-01T14:30:00Z" {
		t.Fatalf("job %s: owner %+v, annotations %v", name, o, j.Metadata.Annotations)
	}
	if st := cj.Status; st.LastScheduleTime == nil || !st.LastScheduleTime.Equal(at(14, 30)) || len(st.Active) != 1 || st.Active[0].Name != name ||
		st.Active[0].UID != j.Metadata.UID || st.Active[0].Kind != core.KindJob {
		t.Fatalf("cronjob status %+v", st)
	}
	// Its Job runs; once it succeeds the CronJob says so.
	c.Sync()
	c.AgentWith("n1", func(p *core.Pod) *core.PodStatus { return finished(0, c.Now()) })
	c.Advance(5 * time.Second)
	c.Sync()
	if st := getCronJob(c, "ny").Status; len(st.Active) != 0 || st.LastSuccessfulTime == nil || st.LastSuccessfulTime.Before(at(14, 30)) {
		t.Fatalf("after its Job succeeded: %+v", st)
	}
	// The next day, again at 09:30 New York time.
	advanceTo(c, at(14, 30).Add(24*time.Hour-time.Second))
	c.Sync()
	if n := len(jobs(c)); n != 3 { // 1 of ny, 2 of local (00:30 UTC)
		t.Fatalf("%d jobs a second before the next run, want 3", n)
	}
	advanceTo(c, at(14, 30).Add(24*time.Hour))
	c.Sync()
	if n := len(jobs(c)); n != 4 {
		t.Fatalf("%d jobs at the next run, want 4", n)
	}
}

func TestCronJob_ForbidSkipsWhileAJobRuns(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(cronYAML("tick", "* * * * *", "  concurrencyPolicy: Forbid\n"))
	c.Sync()
	advanceTo(c, at(0, 1))
	c.Sync()
	c.Agent("n1")
	first := cronJobName("tick", at(0, 1))
	advanceTo(c, at(0, 2).Add(10*time.Second))
	c.Sync()
	c.Agent("n1")
	if got := jobNames(jobs(c)); len(got) != 1 || got[0] != first {
		t.Fatalf("jobs while the first runs: %v, want only %s", got, first)
	}
	events, _ := core.ListAs[*core.EventObj](ctx, c.Store, core.KindEvent, "default")
	if len(events) != 1 || events[0].Reason != "JobAlreadyActive" || events[0].InvolvedObject.Kind != core.KindCronJob {
		t.Fatalf("events %+v", events)
	}
	// Once it is done, the run it held back starts (late, as in Kubernetes).
	c.AgentWith("n1", func(p *core.Pod) *core.PodStatus { return finished(0, c.Now()) })
	c.Sync()
	if got := jobNames(jobs(c)); len(got) != 2 || got[1] != cronJobName("tick", at(0, 2)) {
		t.Fatalf("jobs after the first finished: %v", got)
	}
	// Deleting the CronJob deletes its Jobs and their pods, and its events.
	c.Delete(core.Key{Kind: core.KindCronJob, Namespace: "default", Name: "tick"})
	c.Sync()
	c.Agent("n1") // it stopped the running pod
	c.Sync()
	events, _ = core.ListAs[*core.EventObj](ctx, c.Store, core.KindEvent, "default")
	if len(jobs(c)) != 0 || len(c.Pods()) != 0 || len(events) != 0 {
		t.Fatalf("after the CronJob was deleted: jobs %v, pods %v, %d events", jobNames(jobs(c)), coretest.Names(c.Pods()), len(events))
	}
}

func TestCronJob_ReplaceStopsTheRunningJob(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(cronYAML("tick", "* * * * *", "  concurrencyPolicy: Replace\n"))
	c.Sync()
	advanceTo(c, at(0, 1))
	c.Sync()
	c.Agent("n1")
	old := c.Pods()
	if len(old) != 1 {
		t.Fatalf("%d pods", len(old))
	}
	advanceTo(c, at(0, 2))
	c.Sync()
	if got := jobNames(jobs(c)); len(got) != 1 || got[0] != cronJobName("tick", at(0, 2)) {
		t.Fatalf("jobs %v, want only the 00:02 one", got)
	}
	for _, p := range c.Pods() {
		if p.Metadata.UID == old[0].Metadata.UID && !p.Terminating() {
			t.Fatalf("the replaced Job's pod %s runs on", p.Metadata.Name)
		}
	}
	if run := running(c); len(run) != 1 || run[0].Metadata.UID == old[0].Metadata.UID {
		t.Fatalf("running %v", coretest.Names(run))
	}
}

func TestCronJob_AllowRunsConcurrently(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(cronYAML("tick", "* * * * *", ""))
	c.Sync()
	for m := 1; m <= 3; m++ {
		advanceTo(c, at(0, m))
		c.Sync()
		c.Agent("n1")
	}
	if n, r := len(jobs(c)), len(running(c)); n != 3 || r != 3 {
		t.Fatalf("%d jobs, %d running pods; want 3 and 3", n, r)
	}
	if st := getCronJob(c, "tick").Status; len(st.Active) != 3 {
		t.Fatalf("status %+v", st)
	}
}

// The master was down past a run: with startingDeadlineSeconds it is
// skipped if older than that, with a warning event.
func TestCronJob_StartingDeadlineSkipsAnOldRun(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(cronYAML("hourly", "0 * * * *", "  startingDeadlineSeconds: 120\n"))
	c.Sync()
	advanceTo(c, at(1, 5)) // no pass since 00:00
	c.Sync()
	if js := jobs(c); len(js) != 0 {
		t.Fatalf("a run 5 minutes late with a 2 minute deadline started: %v", jobNames(js))
	}
	events, _ := core.ListAs[*core.EventObj](ctx, c.Store, core.KindEvent, "default")
	if len(events) != 1 || events[0].Reason != "MissSchedule" || events[0].Type != core.EventWarning {
		t.Fatalf("events %+v", events)
	}
	if st := getCronJob(c, "hourly").Status; st.LastScheduleTime != nil {
		t.Fatalf("status %+v", st)
	}
	// Within the deadline, a late run starts.
	advanceTo(c, at(2, 1))
	c.Sync()
	if got := jobNames(jobs(c)); len(got) != 1 || got[0] != cronJobName("hourly", at(2, 0)) {
		t.Fatalf("jobs %v, want the 02:00 one", got)
	}
}

// Runs missed while the master was down make one Job, for the latest.
func TestCronJob_CatchUpMakesOneJob(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(cronYAML("often", "*/5 * * * *", ""))
	c.Sync()
	advanceTo(c, at(3, 2)) // 36 runs missed
	c.Sync()
	if got := jobNames(jobs(c)); len(got) != 1 || got[0] != cronJobName("often", at(3, 0)) {
		t.Fatalf("jobs %v, want only the 03:00 one", got)
	}
	if st := getCronJob(c, "often").Status; !st.LastScheduleTime.Equal(at(3, 0)) {
		t.Fatalf("status %+v", st)
	}
	// A controller restarted mid-pass (new Controllers, same store) does
	// not run it again.
	c.Ctl = c.NewControllers()
	c.Sync()
	if n := len(jobs(c)); n != 1 {
		t.Fatalf("%d jobs after a restart", n)
	}
}

func TestCronJob_HistoryLimits(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(cronYAML("tick", "* * * * *", "  successfulJobsHistoryLimit: 2\n  failedJobsHistoryLimit: 1\n"))
	c.Sync()
	code := int32(0)
	for m := 1; m <= 8; m++ {
		if m > 4 {
			code = 1
		}
		advanceTo(c, at(0, m))
		c.Sync()
		c.AgentWith("n1", func(p *core.Pod) *core.PodStatus { return finished(code, c.Now()) })
		c.Advance(5 * time.Second)
		c.Sync()
	}
	want := []string{cronJobName("tick", at(0, 3)), cronJobName("tick", at(0, 4)), cronJobName("tick", at(0, 8))}
	if got := jobNames(jobs(c)); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("jobs %v, want %v (the last 2 succeeded, the last failed)", got, want)
	}
	if condition(getJob(c, want[2]), core.JobFailed) == nil || condition(getJob(c, want[0]), core.JobComplete) == nil {
		t.Fatal("conditions")
	}
	c.Sync()
	if n := len(c.Pods()); n != 3 {
		t.Fatalf("%d pods (%v), want the 3 kept Jobs' own", n, coretest.Names(c.Pods()))
	}
}

func TestCronJob_Suspended(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(cronYAML("tick", "* * * * *", "  suspend: true\n"))
	c.Sync()
	advanceTo(c, at(0, 5))
	c.Sync()
	if n := len(jobs(c)); n != 0 {
		t.Fatalf("%d jobs while suspended", n)
	}
	c.Apply(cronYAML("tick", "* * * * *", "  suspend: false\n"))
	c.Sync()
	if got := jobNames(jobs(c)); len(got) != 1 || got[0] != cronJobName("tick", at(0, 5)) {
		t.Fatalf("jobs after resuming: %v", got)
	}
}

// A finished pod holds no resources: the next pod of its Job fits where it
// ran, though it is kept.
func TestJob_FinishedPodsFreeTheirNode(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "1", "1Gi")
	c.Apply(strings.Replace(jobYAML("big", "Never", "  completions: 2\n"), "cpu: 100m", "cpu: 1", 1))
	c.Sync()
	first := running(c)
	if len(first) != 1 || first[0].Spec.NodeName != "n1" {
		t.Fatalf("first pod: %v", coretest.Names(first))
	}
	c.AgentWith("n1", outcomes(c, map[string]int32{first[0].Metadata.Name: 0}))
	c.Sync()
	second := running(c)
	if len(second) != 1 || second[0].Spec.NodeName != "n1" || len(c.Pods()) != 2 {
		t.Fatalf("second pod: %v of %v", coretest.Names(second), coretest.Names(c.Pods()))
	}
}

// A master whose clock was ahead and is set back (a Pi without a real-time
// clock) keeps running its CronJobs, and runs no minute twice.
func TestCronJob_ClockSetBack(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "4", "4Gi")
	c.Apply(cronYAML("tick", "* * * * *", ""))
	c.Sync()
	advanceTo(c, at(0, 5))
	c.Sync()
	c.Advance(-3 * time.Minute)
	c.Sync()
	for m := 3; m <= 6; m++ {
		advanceTo(c, at(0, m))
		c.Sync()
	}
	var want []string
	for m := 2; m <= 6; m++ {
		want = append(want, cronJobName("tick", at(0, m)))
	}
	if got := jobNames(jobs(c)); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("jobs %v, want %v", got, want)
	}
}
