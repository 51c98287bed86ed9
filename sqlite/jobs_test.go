package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

// A CronJob starts its Job on SQLite, the Job runs its pod to completion,
// with every write going through the database.
func TestControllers_CronJobRunsAJob(t *testing.T) {
	c := newCluster(t)
	c.AddNode("n1", nil, "2", "1Gi")
	c.Apply(`apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "*/10 * * * *"
  timeZone: Europe/Berlin
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: c, image: demo:1}]
          restartPolicy: Never
`)
	c.Sync()
	c.Advance(10 * time.Minute) // the clock starts at 00:00 UTC
	c.Sync()
	jobs, err := core.ListAs[*core.Job](context.Background(), c.Store, core.KindJob, "default")
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs %v, %v", jobs, err)
	}
	c.AgentWith("n1", func(p *core.Pod) *core.PodStatus {
		return &core.PodStatus{Phase: core.PodSucceeded, ContainerStatuses: []core.ContainerStatus{{Name: "c",
			State: core.ContainerState{Terminated: &core.ContainerStateTerminated{ExitCode: 0, FinishedAt: core.NewTime(c.Now())}}}}}
	})
	c.Sync()
	j := c.Get(core.Key{Kind: core.KindJob, Namespace: "default", Name: jobs[0].Metadata.Name}).(*core.Job)
	if c := j.Status.Condition(core.JobComplete); c == nil || c.Status != core.ConditionTrue || j.Status.Succeeded != 1 {
		t.Fatalf("job status %+v", j.Status)
	}
	cj := c.Get(core.Key{Kind: core.KindCronJob, Namespace: "default", Name: "tick"}).(*core.CronJob)
	if st := cj.Status; st.LastScheduleTime == nil || st.LastSuccessfulTime == nil || len(st.Active) != 0 {
		t.Fatalf("cronjob status %+v", st)
	}
}
