package core

import (
	"fmt"
	"time"
)

// batch/v1 kinds: Jobs run pods to completion, CronJobs make Jobs on a
// schedule.
const (
	KindJob     Kind = "Job"
	KindCronJob Kind = "CronJob"
)

// Labels the Job controller puts on its pods, as Kubernetes does (both the
// legacy and the prefixed names), unless the Job's selector is manual.
const (
	LabelJobName             = "job-name"
	LabelControllerUID       = "controller-uid"
	LabelBatchJobName        = "batch.kubernetes.io/job-name"
	LabelBatchControllerUID  = "batch.kubernetes.io/controller-uid"
	AnnotationCronScheduled  = "batch.kubernetes.io/cronjob-scheduled-timestamp"
	CompletionModeNonIndexed = "NonIndexed"
	CompletionModeIndexed    = "Indexed"
)

// Job runs pods until a number of them succeed.
type Job struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     JobSpec    `json:"spec"`
	Status   JobStatus  `json:"status,omitempty"`
}

func (j *Job) GetTypeMeta() *TypeMeta { return &j.TypeMeta }
func (j *Job) GetMeta() *ObjectMeta   { return &j.Metadata }

type JobSpec struct {
	// Parallelism bounds the pods running at once (default 1).
	Parallelism *int32 `json:"parallelism,omitempty"`
	// Completions is how many pods must succeed (default 1 when
	// parallelism is unset too). Unset with parallelism set, the Job is a
	// work queue: it completes once one pod succeeded and none runs.
	Completions *int32 `json:"completions,omitempty"`
	// ActiveDeadlineSeconds bounds the Job's running time from its start.
	ActiveDeadlineSeconds *int64 `json:"activeDeadlineSeconds,omitempty"`
	// BackoffLimit is how many failures (failed pods, and restarts of
	// OnFailure pods) the Job survives (default 6).
	BackoffLimit *int32 `json:"backoffLimit,omitempty"`
	// Selector and ManualSelector are accepted as Kubernetes writes them:
	// the controller finds its pods by owner reference, and without a
	// manual selector labels them job-name and controller-uid.
	Selector       *LabelSelector  `json:"selector,omitempty"`
	ManualSelector *bool           `json:"manualSelector,omitempty"`
	Template       PodTemplateSpec `json:"template"`
	// TTLSecondsAfterFinished deletes the Job, and its pods, that long
	// after it completed or failed.
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
	// CompletionMode NonIndexed only.
	CompletionMode string `json:"completionMode,omitempty"`
	// Suspend stops the Job's pods and creates none until it is false.
	Suspend *bool `json:"suspend,omitempty"`
	// PodReplacementPolicy TerminatingOrFailed (default) replaces a pod as
	// soon as it is terminating; Failed once it is gone.
	PodReplacementPolicy string `json:"podReplacementPolicy,omitempty"`
}

const (
	PodReplacementTerminatingOrFailed = "TerminatingOrFailed"
	PodReplacementFailed              = "Failed"
)

type JobStatus struct {
	Conditions     []JobCondition `json:"conditions,omitempty"`
	StartTime      *Time          `json:"startTime,omitempty"`
	CompletionTime *Time          `json:"completionTime,omitempty"`
	Active         int32          `json:"active,omitempty"`
	Succeeded      int32          `json:"succeeded,omitempty"`
	Failed         int32          `json:"failed,omitempty"`
	Ready          *int32         `json:"ready,omitempty"`
	Terminating    *int32         `json:"terminating,omitempty"`
	// UncountedTerminatedPods is accepted in exported manifests and always
	// empty here: finished pods are kept, and counted, until the Job goes.
	UncountedTerminatedPods *UncountedTerminatedPods `json:"uncountedTerminatedPods,omitempty"`
}

type UncountedTerminatedPods struct {
	Succeeded []string `json:"succeeded,omitempty"`
	Failed    []string `json:"failed,omitempty"`
}

// Job condition types and reasons, as Kubernetes names them.
const (
	JobComplete  = "Complete"
	JobFailed    = "Failed"
	JobSuspended = "Suspended"

	ReasonBackoffLimitExceeded = "BackoffLimitExceeded"
	ReasonDeadlineExceeded     = "DeadlineExceeded"
	ReasonCompletionsReached   = "CompletionsReached"
)

type JobCondition struct {
	Type               string `json:"type"`
	Status             string `json:"status"`
	LastProbeTime      *Time  `json:"lastProbeTime,omitempty"`
	LastTransitionTime *Time  `json:"lastTransitionTime,omitempty"`
	Reason             string `json:"reason,omitempty"`
	Message            string `json:"message,omitempty"`
}

// Condition returns the condition of type typ, or nil.
func (s *JobStatus) Condition(typ string) *JobCondition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == typ {
			return &s.Conditions[i]
		}
	}
	return nil
}

// setCondition sets a condition, keeping its times if its status stays.
func (s *JobStatus) setCondition(typ, status, reason, msg string, now time.Time) {
	c := JobCondition{Type: typ, Status: status, Reason: reason, Message: msg, LastProbeTime: NewTime(now), LastTransitionTime: NewTime(now)}
	if old := s.Condition(typ); old != nil {
		if old.Status == status {
			c.LastProbeTime, c.LastTransitionTime = old.LastProbeTime, old.LastTransitionTime
		}
		*old = c
		return
	}
	s.Conditions = append(s.Conditions, c)
}

// Finished returns the Job's Complete or Failed condition if it is true.
func (j *Job) Finished() *JobCondition {
	for i := range j.Status.Conditions {
		c := &j.Status.Conditions[i]
		if (c.Type == JobComplete || c.Type == JobFailed) && c.Status == ConditionTrue {
			return c
		}
	}
	return nil
}

// Succeeded reports whether the Job completed.
func (j *Job) Succeeded() bool {
	c := j.Finished()
	return c != nil && c.Type == JobComplete
}

// WantCompletions returns spec.completions and whether it is set.
func (j *Job) WantCompletions() (int, bool) {
	if j.Spec.Completions == nil {
		return 0, false
	}
	return int(*j.Spec.Completions), true
}

// CronJob makes a Job on a schedule.
type CronJob struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta    `json:"metadata"`
	Spec     CronJobSpec   `json:"spec"`
	Status   CronJobStatus `json:"status,omitempty"`
}

func (c *CronJob) GetTypeMeta() *TypeMeta { return &c.TypeMeta }
func (c *CronJob) GetMeta() *ObjectMeta   { return &c.Metadata }

const (
	ConcurrencyAllow   = "Allow"
	ConcurrencyForbid  = "Forbid"
	ConcurrencyReplace = "Replace"
)

type CronJobSpec struct {
	Schedule string `json:"schedule"`
	// TimeZone is an IANA zone name; unset, the master's local zone.
	TimeZone *string `json:"timeZone,omitempty"`
	// StartingDeadlineSeconds: a run missed by more than this is skipped.
	StartingDeadlineSeconds *int64 `json:"startingDeadlineSeconds,omitempty"`
	// ConcurrencyPolicy Allow, Forbid (skip a run while one is active) or
	// Replace (stop the active Job for the new one).
	ConcurrencyPolicy          string          `json:"concurrencyPolicy,omitempty"`
	Suspend                    *bool           `json:"suspend,omitempty"`
	JobTemplate                JobTemplateSpec `json:"jobTemplate"`
	SuccessfulJobsHistoryLimit *int32          `json:"successfulJobsHistoryLimit,omitempty"`
	FailedJobsHistoryLimit     *int32          `json:"failedJobsHistoryLimit,omitempty"`
}

// JobTemplateSpec describes the Jobs a CronJob makes.
type JobTemplateSpec struct {
	Metadata ObjectMeta `json:"metadata,omitempty"`
	Spec     JobSpec    `json:"spec"`
}

type CronJobStatus struct {
	Active             []ObjectReference `json:"active,omitempty"`
	LastScheduleTime   *Time             `json:"lastScheduleTime,omitempty"`
	LastSuccessfulTime *Time             `json:"lastSuccessfulTime,omitempty"`
}

// Bounds of names: a Job's name is its pods' job-name label (63), and a
// CronJob's Jobs add "-" and 11 digits of minutes to its name.
const (
	maxJobName     = 63
	maxCronJobName = 52
)

func validateJob(j *Job) error {
	if n := len(j.Metadata.Name); n > maxJobName {
		return invalid("metadata.name", "%q is %d characters: a Job's name is its pods' job-name label (at most %d)", j.Metadata.Name, n, maxJobName)
	}
	return validateJobSpec("spec", &j.Spec)
}

func validateJobSpec(path string, s *JobSpec) error {
	for _, f := range []struct {
		name string
		v    *int64
	}{
		{"parallelism", int32p64(s.Parallelism)}, {"completions", int32p64(s.Completions)},
		{"backoffLimit", int32p64(s.BackoffLimit)}, {"ttlSecondsAfterFinished", int32p64(s.TTLSecondsAfterFinished)},
		{"activeDeadlineSeconds", s.ActiveDeadlineSeconds},
	} {
		if f.v != nil && *f.v < 0 {
			return invalid(path+"."+f.name, "must be >= 0, got %d", *f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    *int32
	}{{"parallelism", s.Parallelism}, {"completions", s.Completions}} {
		if f.v != nil && *f.v > MaxReplicas {
			return invalid(path+"."+f.name, "%d is more than this cluster allows for one workload (at most %d)", *f.v, MaxReplicas)
		}
	}
	switch s.CompletionMode {
	case "", CompletionModeNonIndexed:
	case CompletionModeIndexed:
		return invalid(path+".completionMode", "Indexed is not supported: only NonIndexed (pods are interchangeable; give each its work through a queue)")
	default:
		return invalid(path+".completionMode", "%q: must be NonIndexed", s.CompletionMode)
	}
	switch s.PodReplacementPolicy {
	case "", PodReplacementTerminatingOrFailed, PodReplacementFailed:
	default:
		return invalid(path+".podReplacementPolicy", "%q: must be TerminatingOrFailed or Failed", s.PodReplacementPolicy)
	}
	if err := validateLabels(path+".template.metadata.labels", s.Template.Metadata.Labels); err != nil {
		return err
	}
	if sel := s.Selector; !sel.Empty() {
		if err := validateSelector(path+".selector", sel, false); err != nil {
			return err
		}
		if !sel.Matches(s.Template.Metadata.Labels) {
			return invalid(path+".template.metadata.labels", "must match %s.selector %s", path, sel)
		}
	}
	if s.ManualSelector != nil && *s.ManualSelector && s.Selector.Empty() {
		return invalid(path+".selector", "required when manualSelector is true")
	}
	switch rp := s.Template.Spec.RestartPolicy; rp {
	case RestartNever, RestartOnFailure:
	case "":
		return invalid(path+".template.spec.restartPolicy", "required for a Job's pods: OnFailure or Never")
	default:
		return invalid(path+".template.spec.restartPolicy", "%q is not allowed for a Job's pods: must be OnFailure or Never", rp)
	}
	return validatePodSpec(path+".template.spec", &s.Template.Spec)
}

func int32p64(v *int32) *int64 {
	if v == nil {
		return nil
	}
	x := int64(*v)
	return &x
}

func validateCronJob(c *CronJob) error {
	if n := len(c.Metadata.Name); n > maxCronJobName {
		return invalid("metadata.name", "%q is %d characters: a CronJob's name, with the suffix its Jobs get, must fit a label (at most %d)", c.Metadata.Name, n, maxCronJobName)
	}
	if c.Spec.Schedule == "" {
		return invalid("spec.schedule", "required (a cron schedule such as \"*/5 * * * *\" or @daily)")
	}
	if _, err := ParseCron(c.Spec.Schedule); err != nil {
		return invalid("spec.schedule", "%v", err)
	}
	if tz := c.Spec.TimeZone; tz != nil {
		if _, err := CronLocation(*tz); err != nil {
			return invalid("spec.timeZone", "%v", err)
		}
	}
	switch c.Spec.ConcurrencyPolicy {
	case ConcurrencyAllow, ConcurrencyForbid, ConcurrencyReplace:
	default:
		return invalid("spec.concurrencyPolicy", "%q: must be Allow, Forbid or Replace", c.Spec.ConcurrencyPolicy)
	}
	if d := c.Spec.StartingDeadlineSeconds; d != nil && *d < 0 {
		return invalid("spec.startingDeadlineSeconds", "must be >= 0, got %d", *d)
	}
	for _, f := range []struct {
		name string
		v    *int32
	}{{"successfulJobsHistoryLimit", c.Spec.SuccessfulJobsHistoryLimit}, {"failedJobsHistoryLimit", c.Spec.FailedJobsHistoryLimit}} {
		if f.v != nil && *f.v < 0 {
			return invalid("spec."+f.name, "must be >= 0, got %d", *f.v)
		}
	}
	if err := validateLabels("spec.jobTemplate.metadata.labels", c.Spec.JobTemplate.Metadata.Labels); err != nil {
		return err
	}
	return validateJobSpec("spec.jobTemplate.spec", &c.Spec.JobTemplate.Spec)
}

// CronLocation loads an IANA time zone for a CronJob; "Local" and "" are
// refused: a schedule must not change meaning with the master's machine.
func CronLocation(name string) (*time.Location, error) {
	if name == "" || name == "Local" || name == "local" {
		return nil, fmt.Errorf("%q is not a time zone: use an IANA name such as Europe/Berlin or UTC, or leave timeZone out for the master's zone", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not a known IANA time zone (such as Europe/Berlin, America/New_York or UTC)", name)
	}
	return loc, nil
}

func defaultJobSpec(s *JobSpec) {
	one := func() *int32 { v := int32(1); return &v }
	if s.Completions == nil && s.Parallelism == nil {
		s.Completions = one()
	}
	if s.Parallelism == nil {
		s.Parallelism = one()
	}
	if s.BackoffLimit == nil {
		v := int32(6)
		s.BackoffLimit = &v
	}
	if s.CompletionMode == "" {
		s.CompletionMode = CompletionModeNonIndexed
	}
	if s.Suspend == nil {
		f := false
		s.Suspend = &f
	}
	if s.PodReplacementPolicy == "" {
		s.PodReplacementPolicy = PodReplacementTerminatingOrFailed
	}
	// A Job's pods have no default restart policy (Kubernetes' Always is
	// refused for them): validation asks for one.
	rp := s.Template.Spec.RestartPolicy
	defaultPodSpec(&s.Template.Spec)
	s.Template.Spec.RestartPolicy = rp
}

func defaultCronJob(c *CronJob) {
	if c.Spec.ConcurrencyPolicy == "" {
		c.Spec.ConcurrencyPolicy = ConcurrencyAllow
	}
	if c.Spec.Suspend == nil {
		f := false
		c.Spec.Suspend = &f
	}
	if c.Spec.SuccessfulJobsHistoryLimit == nil {
		v := int32(3)
		c.Spec.SuccessfulJobsHistoryLimit = &v
	}
	if c.Spec.FailedJobsHistoryLimit == nil {
		v := int32(1)
		c.Spec.FailedJobsHistoryLimit = &v
	}
	defaultJobSpec(&c.Spec.JobTemplate.Spec)
}

// jobUpdateError refuses, as Kubernetes does, a change of what a running
// Job has started pods from: its template, completions, selector and mode.
// Parallelism, deadlines, backoff limit, TTL and suspend may change.
func jobUpdateError(old, next *Job) error {
	o, n := old.Spec, next.Spec
	switch {
	case !JSONEqual(o.Template, n.Template):
		return invalid("spec.template", "a Job's pod template cannot change; delete the Job and apply again")
	case !JSONEqual(o.Completions, n.Completions):
		return invalid("spec.completions", "cannot change; delete the Job and apply again")
	case !JSONEqual(o.Selector, n.Selector) || !JSONEqual(o.ManualSelector, n.ManualSelector):
		return invalid("spec.selector", "cannot change; delete the Job and apply again")
	case o.CompletionMode != n.CompletionMode:
		return invalid("spec.completionMode", "cannot change")
	}
	return nil
}
