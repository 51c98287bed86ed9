package core

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// The Job and CronJob controllers: planned on the pass's snapshot like the
// Deployment's, written one Job or CronJob per transaction.
//
// A Job's finished pods are its record: they are kept (their logs with
// them) until the Job goes, and status.succeeded and status.failed are the
// most of them ever seen, so a finished pod deleted by hand or by a drain
// before the Job finished may be run again (at least once, as Kubernetes
// promises). Once the Job is Complete or Failed its counts are final. A pod
// whose node is lost is replaced like a Deployment's, and not counted as a
// failure: it did not fail, its node went away.

// Pod failure backoff, as Kubernetes': the pod replacing a failed one
// waits 10s, doubled for each further failure, at most 10 minutes.
const (
	jobBackoffBase = 10 * time.Second
	jobBackoffMax  = 10 * time.Minute
)

// JobEnv is what a Job's plan needs to know of the cluster.
type JobEnv struct {
	Now time.Time
	// NewName returns a fresh pod name ("<job>-xxxxx").
	NewName func() string
	// Lost marks pods on unreachable nodes: replaced, not counted.
	Lost func(*Pod) bool
}

// JobPlan is what the Job controller wants for one Job.
type JobPlan struct {
	Plan
	Status JobStatus
	// Expired: the Job finished ttlSecondsAfterFinished ago; it goes.
	Expired bool
}

// PlanJob decides which of a Job's pods to create and delete, and the
// Job's status. pods are the pods the Job owns (any state).
func PlanJob(j *Job, pods []*Pod, env JobEnv) JobPlan {
	now := env.Now
	var out JobPlan
	st := j.Status
	st.Conditions = append([]JobCondition(nil), j.Status.Conditions...)
	var active []*Pod
	var succeeded, failed, terminating, replacing int32
	var restarts int32
	var lastFailure time.Time
	for _, p := range pods {
		switch {
		case p.Terminal():
			if p.Status.Phase == PodSucceeded {
				succeeded++
			} else {
				failed++
				if t := finishedAt(p); t.After(lastFailure) {
					lastFailure = t
				}
			}
		case p.Terminating():
			terminating++
			replacing++
		case env.Lost != nil && env.Lost(p):
			replacing++
		default:
			active = append(active, p)
			restarts += p.Restarts()
		}
	}
	finish := func() JobPlan {
		out.Delete = append(out.Delete, active...)
		st.Active = 0
		st.Ready = int32p(0)
		st.Terminating = int32p(terminating + int32(len(active)))
		out.Status = st
		return out
	}
	if c := j.Finished(); c != nil {
		// Final: only pods still running (a Job marked finished by a pass
		// that could not stop them all) are stopped.
		if ttl := j.Spec.TTLSecondsAfterFinished; ttl != nil {
			at := c.LastTransitionTime
			if c.Type == JobComplete && st.CompletionTime != nil {
				at = st.CompletionTime
			}
			out.Expired = at != nil && !now.Before(at.Add(time.Duration(*ttl)*time.Second))
		}
		return finish()
	}
	st.Succeeded = max(st.Succeeded, succeeded)
	st.Failed = max(st.Failed, failed)
	if j.Spec.Suspend != nil && *j.Spec.Suspend {
		// The deadline starts again on resume, as in Kubernetes.
		st.StartTime = nil
		st.setCondition(JobSuspended, ConditionTrue, "JobSuspended", "Job suspended", now)
		return finish()
	}
	if c := st.Condition(JobSuspended); c != nil && c.Status == ConditionTrue {
		st.setCondition(JobSuspended, ConditionFalse, "JobResumed", "Job resumed", now)
	}
	if st.StartTime == nil {
		st.StartTime = NewTime(now)
	}
	completions, fixed := j.WantCompletions()
	if (fixed && int(st.Succeeded) >= completions) || (!fixed && st.Succeeded > 0 && len(active) == 0) {
		st.setCondition(JobComplete, ConditionTrue, ReasonCompletionsReached, "Reached expected number of succeeded pods", now)
		st.CompletionTime = NewTime(now)
		return finish()
	}
	limit := int32(6)
	if j.Spec.BackoffLimit != nil {
		limit = *j.Spec.BackoffLimit
	}
	// Restarts in place of OnFailure pods count against the limit too.
	onFailure := j.Spec.Template.Spec.RestartPolicy == RestartOnFailure && restarts > 0 && restarts >= max(limit, 1)
	switch {
	case st.Failed > limit || onFailure:
		st.setCondition(JobFailed, ConditionTrue, ReasonBackoffLimitExceeded, "Job has reached the specified backoff limit", now)
		return finish()
	case j.Spec.ActiveDeadlineSeconds != nil && !now.Before(st.StartTime.Add(time.Duration(*j.Spec.ActiveDeadlineSeconds)*time.Second)):
		st.setCondition(JobFailed, ConditionTrue, ReasonDeadlineExceeded, "Job was active longer than specified deadline", now)
		return finish()
	}

	want := 1
	if j.Spec.Parallelism != nil {
		want = int(*j.Spec.Parallelism)
	}
	if fixed {
		want = min(want, completions-int(st.Succeeded))
	} else if st.Succeeded > 0 {
		want = min(want, len(active)) // a work queue: once one succeeded, no new pods
	}
	have := len(active)
	if j.Spec.PodReplacementPolicy == PodReplacementFailed {
		have += int(replacing) // replaced once gone
	}
	switch {
	case len(active) > want:
		deletionOrder(active)
		out.Delete = active[:len(active)-want]
		active = active[len(active)-want:]
		terminating += int32(len(out.Delete))
	case have < want && !now.Before(lastFailure.Add(failureBackoff(st.Failed))):
		manual := j.Spec.ManualSelector != nil && *j.Spec.ManualSelector
		for i := have; i < want; i++ {
			p := NewPodFromTemplate(j, &j.Spec.Template, "", env.NewName())
			delete(p.Metadata.Labels, LabelTemplateHash)
			if !manual {
				p.Metadata.Labels[LabelControllerUID] = j.Metadata.UID
				p.Metadata.Labels[LabelBatchControllerUID] = j.Metadata.UID
				p.Metadata.Labels[LabelJobName] = j.Metadata.Name
				p.Metadata.Labels[LabelBatchJobName] = j.Metadata.Name
			}
			out.Create = append(out.Create, p)
		}
	}
	ready := int32(0)
	for _, p := range active {
		if p.Ready() {
			ready++
		}
	}
	st.Active = int32(len(active) + len(out.Create))
	st.Ready = int32p(ready)
	st.Terminating = int32p(terminating)
	out.Status = st
	return out
}

// failureBackoff is how long after the last failure a replacement waits.
func failureBackoff(failed int32) time.Duration {
	if failed <= 0 {
		return 0
	}
	d := jobBackoffBase
	for i := int32(1); i < failed && d < jobBackoffMax; i++ {
		d *= 2
	}
	return min(d, jobBackoffMax)
}

// finishedAt returns when the last container of a finished pod stopped
// (zero if unknown).
func finishedAt(p *Pod) time.Time {
	var t time.Time
	for _, c := range p.Status.ContainerStatuses {
		if term := c.State.Terminated; term != nil && term.FinishedAt != nil && term.FinishedAt.After(t) {
			t = term.FinishedAt.Time
		}
	}
	return t
}

func int32p(v int32) *int32 { return &v }

// CronEnv is what a CronJob's plan needs.
type CronEnv struct {
	Now      time.Time
	Schedule *CronSchedule
	// Location is the zone the schedule is read in.
	Location *time.Location
}

// CronPlan is what the CronJob controller wants for one CronJob.
type CronPlan struct {
	// Create is the Job to start now, if any. Its reference is added to
	// Status.Active once it exists.
	Create *Job
	// Delete lists Jobs to delete: replaced, or beyond the history limits.
	Delete []*Job
	Status CronJobStatus
	// Event is something to tell the user (a run skipped), if anything.
	Event *EventObj
}

// PlanCronJob decides whether a CronJob starts a Job now, which of its
// Jobs go, and its status. jobs are the Jobs it owns.
//
// A run is due when the schedule's latest time at or before now is after
// the last one run (or the CronJob's creation). Runs missed while the
// master was down make one Job, for the latest of them, as in Kubernetes;
// with startingDeadlineSeconds, not even that one if it is older than the
// deadline. With concurrencyPolicy Forbid a due run waits while a Job is
// active (and runs late once none is, within the deadline).
func PlanCronJob(cj *CronJob, jobs []*Job, env CronEnv) CronPlan {
	now := env.Now
	var out CronPlan
	st := CronJobStatus{LastScheduleTime: cj.Status.LastScheduleTime, LastSuccessfulTime: cj.Status.LastSuccessfulTime}
	var active, succeeded, failed []*Job
	for _, j := range jobs {
		switch c := j.Finished(); {
		case c == nil:
			active = append(active, j)
		case c.Type == JobComplete:
			succeeded = append(succeeded, j)
			if t := j.Status.CompletionTime; t != nil && (st.LastSuccessfulTime == nil || t.After(st.LastSuccessfulTime.Time)) {
				st.LastSuccessfulTime = t
			}
		default:
			failed = append(failed, j)
		}
	}
	out.Delete = append(out.Delete, beyondHistory(succeeded, cj.Spec.SuccessfulJobsHistoryLimit, 3)...)
	out.Delete = append(out.Delete, beyondHistory(failed, cj.Spec.FailedJobsHistoryLimit, 1)...)

	// A Pi without a real-time clock may have run ahead and been set back:
	// times ahead of the clock are ignored (a run's Job is named for its
	// minute, so none runs twice).
	var earliest time.Time
	for _, t := range []*Time{cj.Metadata.CreationTimestamp, cj.Status.LastScheduleTime} {
		if t != nil && !t.After(now) && t.After(earliest) {
			earliest = t.Time
		}
	}
	if earliest.IsZero() {
		earliest = now
	}
	loc := env.Location
	if loc == nil {
		loc = time.UTC
	}
	due := env.Schedule.Prev(now.In(loc))
	suspended := cj.Spec.Suspend != nil && *cj.Spec.Suspend
	if !due.IsZero() && due.After(earliest) && !suspended {
		d := cj.Spec.StartingDeadlineSeconds
		switch {
		case d != nil && now.Sub(due) > time.Duration(*d)*time.Second:
			out.Event = cronEvent(cj, due, EventWarning, "MissSchedule",
				fmt.Sprintf("Missed scheduled time to start a job: %s (more than startingDeadlineSeconds=%d ago)", due.Format(time.RFC1123Z), *d))
		case cj.Spec.ConcurrencyPolicy == ConcurrencyForbid && len(active) > 0:
			out.Event = cronEvent(cj, due, EventNormal, "JobAlreadyActive",
				fmt.Sprintf("Not starting job for %s because prior execution is running and concurrency policy is Forbid", due.Format(time.RFC1123Z)))
		default:
			if cj.Spec.ConcurrencyPolicy == ConcurrencyReplace {
				out.Delete = append(out.Delete, active...)
				active = nil
			}
			out.Create = NewJobFromCronJob(cj, due)
			st.LastScheduleTime = NewTime(due)
		}
	}
	for _, j := range active {
		st.Active = append(st.Active, jobRef(j))
	}
	out.Status = st
	return out
}

// beyondHistory returns the oldest of finished jobs beyond limit (nil:
// def), oldest start first.
func beyondHistory(jobs []*Job, limit *int32, def int) []*Job {
	n := def
	if limit != nil {
		n = int(*limit)
	}
	if len(jobs) <= n {
		return nil
	}
	started := func(j *Job) time.Time {
		if j.Status.StartTime != nil {
			return j.Status.StartTime.Time
		}
		if j.Metadata.CreationTimestamp != nil {
			return j.Metadata.CreationTimestamp.Time
		}
		return time.Time{}
	}
	sorted := append([]*Job(nil), jobs...)
	sort.SliceStable(sorted, func(a, b int) bool {
		ta, tb := started(sorted[a]), started(sorted[b])
		if !ta.Equal(tb) {
			return ta.Before(tb)
		}
		return sorted[a].Metadata.Name < sorted[b].Metadata.Name
	})
	return sorted[:len(sorted)-n]
}

// NewJobFromCronJob makes the Job a CronJob runs for its scheduled time,
// named "<cronjob>-<minutes since 1970>" as in Kubernetes: a pass that is
// retried never makes two.
func NewJobFromCronJob(cj *CronJob, scheduled time.Time) *Job {
	t := &cj.Spec.JobTemplate
	j := &Job{
		TypeMeta: TypeMeta{APIVersion: KindJob.APIVersion(), Kind: KindJob},
		Metadata: ObjectMeta{
			Name:        fmt.Sprintf("%s-%d", cj.Metadata.Name, scheduled.Unix()/60),
			Namespace:   cj.Metadata.Namespace,
			Labels:      map[string]string{},
			Annotations: map[string]string{AnnotationCronScheduled: scheduled.UTC().Format(time.RFC3339)},
			OwnerReferences: []OwnerReference{{APIVersion: KindCronJob.APIVersion(), Kind: KindCronJob,
				Name: cj.Metadata.Name, UID: cj.Metadata.UID, Controller: true}},
		},
		// Shared with the CronJob: stored objects are never changed in place.
		Spec: t.Spec,
	}
	for k, v := range t.Metadata.Labels {
		j.Metadata.Labels[k] = v
	}
	for k, v := range t.Metadata.Annotations {
		j.Metadata.Annotations[k] = v
	}
	return j
}

func jobRef(j *Job) ObjectReference {
	return ObjectReference{APIVersion: KindJob.APIVersion(), Kind: KindJob, Namespace: j.Metadata.Namespace, Name: j.Metadata.Name, UID: j.Metadata.UID}
}

// cronEvent is an event about a CronJob's scheduled run; its name is
// derived from the run, so it is recorded once however many passes see it.
func cronEvent(cj *CronJob, due time.Time, typ, reason, msg string) *EventObj {
	t := NewTime(due)
	return &EventObj{
		TypeMeta: TypeMeta{APIVersion: "v1", Kind: KindEvent},
		Metadata: ObjectMeta{Name: fmt.Sprintf("%s.%x.%s", cj.Metadata.Name, due.Unix(), strings.ToLower(reason)), Namespace: cj.Metadata.Namespace},
		InvolvedObject: ObjectReference{APIVersion: KindCronJob.APIVersion(), Kind: KindCronJob, Namespace: cj.Metadata.Namespace,
			Name: cj.Metadata.Name, UID: cj.Metadata.UID},
		Reason: reason, Message: msg, Type: typ, Count: 1, FirstTimestamp: t, LastTimestamp: t,
		Source: EventSource{Component: "cronjob-controller"},
	}
}

// cronEntry is a CronJob's parsed schedule and zone, kept between passes:
// loading a zone reads the zoneinfo database.
type cronEntry struct {
	sched *CronSchedule
	loc   *time.Location
	err   error
	used  bool
}

func (c *Controllers) cronFor(cj *CronJob) (*CronSchedule, *time.Location, error) {
	if c.crons == nil {
		c.crons = map[string]*cronEntry{}
	}
	tz := ""
	if cj.Spec.TimeZone != nil {
		tz = *cj.Spec.TimeZone
	}
	key := cj.Spec.Schedule + "\x00" + tz
	e := c.crons[key]
	if e == nil {
		e = &cronEntry{loc: c.Location}
		if e.loc == nil {
			e.loc = time.Local
		}
		if e.sched, e.err = ParseCron(cj.Spec.Schedule); e.err == nil && tz != "" {
			e.loc, e.err = CronLocation(tz)
		}
		if e.err != nil {
			c.Log.Error("cronjob cannot be scheduled", "cronjob", cj.Metadata.Namespace+"/"+cj.Metadata.Name, "err", e.err)
		}
		c.crons[key] = e
	}
	e.used = true
	return e.sched, e.loc, e.err
}

// syncCronJobs starts the Jobs of CronJobs that are due, prunes their
// history, and deletes Jobs whose CronJob is gone.
func (c *Controllers) syncCronJobs(ctx context.Context, s *snapshot, now time.Time) error {
	if len(s.cronjobs) == 0 {
		c.crons = nil
		if len(s.jobs) == 0 {
			return nil
		}
	}
	crons := make(map[string]bool, len(s.cronjobs))
	for _, cj := range s.cronjobs {
		crons[cj.Metadata.UID] = true
	}
	byOwner := map[string][]*Job{}
	var orphans []*Job
	for _, j := range s.jobs {
		if o := j.Owner(); o != nil && o.Kind == KindCronJob {
			if !crons[o.UID] {
				orphans = append(orphans, j)
			}
			byOwner[o.UID] = append(byOwner[o.UID], j)
		}
	}
	for _, e := range c.crons {
		e.used = false
	}
	for _, cj := range s.cronjobs {
		sched, loc, err := c.cronFor(cj)
		if err != nil {
			continue // refused at apply; a zone database lost since is logged once
		}
		plan := PlanCronJob(cj, byOwner[cj.Metadata.UID], CronEnv{Now: now, Schedule: sched, Location: loc})
		if plan.Event != nil {
			if err := c.recordEvent(ctx, plan.Event); err != nil {
				return err
			}
		}
		if plan.Create == nil && len(plan.Delete) == 0 && JSONEqual(plan.Status, cj.Status) {
			continue
		}
		if err := c.writeCronJob(ctx, cj, plan); err != nil {
			return err
		}
	}
	for k, e := range c.crons {
		if !e.used {
			delete(c.crons, k)
		}
	}
	for _, j := range orphans {
		if err := c.deleteJob(ctx, j); err != nil {
			return err
		}
	}
	return nil
}

// writeCronJob applies a CronJob's plan and status in one transaction,
// unless the CronJob changed since the snapshot.
func (c *Controllers) writeCronJob(ctx context.Context, cj *CronJob, plan CronPlan) error {
	var clash string
	err := c.Store.Update(ctx, func(tx Tx) error {
		clash = ""
		obj, err := tx.Get(KeyOf(cj))
		if ErrorCode(err) == ENOTFOUND {
			return nil
		} else if err != nil {
			return err
		}
		cur := obj.(*CronJob)
		if cur.Metadata.ResourceVersion != cj.Metadata.ResourceVersion {
			return nil
		}
		for _, j := range plan.Delete {
			if err := deleteJobTx(tx, j); err != nil {
				return err
			}
		}
		st := plan.Status
		st.Active = append([]ObjectReference(nil), st.Active...)
		if j := plan.Create; j != nil {
			err := tx.Create(j)
			if ErrorCode(err) == ECONFLICT {
				// Made by an earlier pass whose status write was lost, or a
				// Job of someone else's by that name.
				obj, gerr := tx.Get(KeyOf(j))
				if gerr != nil {
					return gerr
				}
				j, err = obj.(*Job), nil
				if o := j.Owner(); o == nil || o.UID != cur.Metadata.UID {
					clash = j.Metadata.Name
					st.LastScheduleTime = cur.Status.LastScheduleTime
					j = nil
				}
			}
			if err != nil {
				return err
			}
			if j != nil && j.Finished() == nil && !hasRef(st.Active, j.Metadata.Name) {
				st.Active = append(st.Active, jobRef(j))
				sort.Slice(st.Active, func(a, b int) bool { return st.Active[a].Name < st.Active[b].Name })
			}
		}
		if JSONEqual(st, cur.Status) {
			return nil
		}
		next := Clone(cur)
		next.Status = st
		return tx.Put(next)
	})
	if ErrorCode(err) == ECONFLICT {
		return nil // raced with another writer: the next pass sees it
	}
	if err == nil && clash != "" {
		due := plan.Create.Metadata.Annotations[AnnotationCronScheduled]
		t, _ := time.Parse(time.RFC3339, due)
		return c.recordEvent(ctx, cronEvent(cj, t, EventWarning, "FailedCreate",
			fmt.Sprintf("Job %q exists and is not this CronJob's: the run of %s is not started (delete or rename that Job)", clash, due)))
	}
	return err
}

func hasRef(refs []ObjectReference, name string) bool {
	for _, r := range refs {
		if r.Name == name {
			return true
		}
	}
	return false
}

// deleteJobTx deletes j if it is still the Job the plan saw (same uid).
// Its pods go with the orphan collection of the next pass.
func deleteJobTx(tx Tx, j *Job) error {
	obj, err := tx.Get(KeyOf(j))
	if ErrorCode(err) == ENOTFOUND {
		return nil
	} else if err != nil {
		return err
	}
	if obj.GetMeta().UID != j.Metadata.UID {
		return nil
	}
	return tx.Delete(KeyOf(j))
}

func (c *Controllers) deleteJob(ctx context.Context, j *Job) error {
	return c.Store.Update(ctx, func(tx Tx) error { return deleteJobTx(tx, j) })
}

// recordEvent stores ev unless an event of its name exists, keeping at
// most MaxEventsPerPod about one object.
func (c *Controllers) recordEvent(ctx context.Context, ev *EventObj) error {
	if _, err := c.Store.Get(ctx, KeyOf(ev)); err == nil {
		return nil
	}
	created := false
	err := c.Store.Update(ctx, func(tx Tx) error {
		created = false
		if _, err := tx.Get(KeyOf(ev)); err == nil {
			return nil
		}
		if err := tx.Create(Clone(ev)); err != nil {
			return err
		}
		created = true
		return trimEvents(tx, ev.Metadata.Namespace, ev.InvolvedObject.UID)
	})
	if created {
		c.Log.Info(ev.Message, "reason", ev.Reason, strings.ToLower(string(ev.InvolvedObject.Kind)), ev.InvolvedObject.Namespace+"/"+ev.InvolvedObject.Name)
	}
	if ErrorCode(err) == ECONFLICT {
		return nil
	}
	return err
}

// syncJobs runs each Job's pods, and deletes the Jobs whose time to live
// after finishing is over. owners collects the Jobs' uids, whose pods the
// orphan collection must keep.
func (c *Controllers) syncJobs(ctx context.Context, s *snapshot, now time.Time, byOwner map[string][]*Pod, lost func(*Pod) bool, budget *int, owners map[string]bool) error {
	for _, j := range s.jobs {
		owners[j.Metadata.UID] = true
		name := j.Metadata.Name
		jp := PlanJob(j, byOwner[j.Metadata.UID], JobEnv{Now: now, Lost: lost, NewName: func() string { return c.NewName(name, "") }})
		if jp.Expired {
			if err := c.deleteJob(ctx, j); err != nil {
				return err
			}
			continue
		}
		planned := len(jp.Create)
		c.limitCreates(j.Metadata.UID, &jp.Plan, budget)
		jp.Status.Active -= int32(planned - len(jp.Create))
		if len(jp.Create) == 0 && len(jp.Delete) == 0 && JSONEqual(jp.Status, j.Status) {
			continue
		}
		st := jp.Status
		err := c.writeWorkload(ctx, j, jp.Plan, func(cur Object) (Object, bool) {
			if JSONEqual(st, cur.(*Job).Status) {
				return nil, false
			}
			next := Clone(cur.(*Job))
			next.Status = st
			return next, true
		}, now)
		if err != nil {
			return err
		}
	}
	return nil
}

// Owner returns the Job's controlling owner (its CronJob), if any.
func (j *Job) Owner() *OwnerReference {
	for i := range j.Metadata.OwnerReferences {
		if j.Metadata.OwnerReferences[i].Controller {
			return &j.Metadata.OwnerReferences[i]
		}
	}
	return nil
}
