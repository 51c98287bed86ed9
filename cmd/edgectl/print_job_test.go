package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

func TestTables_JobAndCronJob(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	i32 := func(v int32) *int32 { return &v }
	yes := true
	tz := "Europe/Berlin"
	job := &core.Job{Metadata: core.ObjectMeta{Name: "pi", CreationTimestamp: core.NewTime(now.Add(-5 * time.Minute))},
		Spec: core.JobSpec{Completions: i32(3), Parallelism: i32(2)},
		Status: core.JobStatus{Succeeded: 2, StartTime: core.NewTime(now.Add(-5 * time.Minute)),
			CompletionTime: core.NewTime(now.Add(-4*time.Minute - 30*time.Second))}}
	queue := &core.Job{Metadata: core.ObjectMeta{Name: "queue", CreationTimestamp: core.NewTime(now.Add(-time.Minute))},
		Spec: core.JobSpec{Parallelism: i32(4)}, Status: core.JobStatus{StartTime: core.NewTime(now.Add(-40 * time.Second))}}
	cj := &core.CronJob{Metadata: core.ObjectMeta{Name: "backup", CreationTimestamp: core.NewTime(now.Add(-3 * time.Hour))},
		Spec:   core.CronJobSpec{Schedule: "15 2 * * 0", Suspend: &yes, TimeZone: &tz},
		Status: core.CronJobStatus{Active: []core.ObjectReference{{Name: "backup-1"}}, LastScheduleTime: core.NewTime(now.Add(-10 * time.Minute))}}
	for _, tc := range []struct {
		kind core.Kind
		objs []core.Object
		wide bool
		want string
	}{
		{core.KindJob, []core.Object{job, queue}, false, "NAME    COMPLETIONS   DURATION   AGE\npi      2/3           30s        5m\nqueue   0/1 of 4      40s        60s\n"},
		{core.KindCronJob, []core.Object{cj}, false, "NAME     SCHEDULE     SUSPEND   ACTIVE   LAST SCHEDULE   AGE\nbackup   15 2 * * 0   True      1        10m             3h\n"},
		{core.KindCronJob, []core.Object{cj}, true, "Europe/Berlin"},
	} {
		tb := newTable(tc.kind, tc.wide, false)
		for _, o := range tc.objs {
			tb.add(o, now)
		}
		var b bytes.Buffer
		tb.print(&b, true)
		if got := b.String(); (tc.wide && !strings.Contains(got, tc.want)) || (!tc.wide && got != tc.want) {
			t.Errorf("%s table:\n%s\nwant:\n%s", tc.kind, got, tc.want)
		}
	}
	var b bytes.Buffer
	describe(&b, job, nil, now)
	for _, want := range []string{"Completions:", "3", "Pods Statuses:", "0 Active / 2 Succeeded / 0 Failed"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("describe job lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	describe(&b, cj, []core.Object{&core.EventObj{InvolvedObject: core.ObjectReference{UID: "u1"}, Reason: "MissSchedule"}}, now)
	for _, want := range []string{"Schedule:", "15 2 * * 0", "Time Zone:", "Europe/Berlin", "Active Jobs:", "backup-1"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("describe cronjob lacks %q:\n%s", want, b.String())
		}
	}
}
