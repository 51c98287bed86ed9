package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

const jobsManifest = `apiVersion: batch/v1
kind: Job
metadata: {name: twice}
spec:
  completions: 2
  template:
    spec:
      containers:
      - name: main
        image: edge.local/demo:latest
        command: ["sh", "-c", "echo done"]
      restartPolicy: Never
---
apiVersion: batch/v1
kind: Job
metadata: {name: broken}
spec:
  backoffLimit: 1
  template:
    spec:
      containers:
      - name: main
        image: edge.local/demo:latest
        command: ["sh", "-c", "echo failing; exit 1"]
      restartPolicy: Never
`

// jobJSON fetches a Job through `edgectl get job NAME -o json`.
func (c *cluster) jobJSON(name string) *core.Job {
	c.t.Helper()
	out := c.mustEdgectl("get", "job", name, "-o", "json")
	var j core.Job
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		c.t.Fatalf("edgectl get job %s -o json: %v\n%s", name, err, out)
	}
	return &j
}

// waitJob waits until the Job has a true condition of type typ.
func (c *cluster) waitJob(name, typ string, timeout time.Duration) *core.Job {
	c.t.Helper()
	var j *core.Job
	waitFor(c.t, timeout, fmt.Sprintf("job %s %s", name, typ), func() error {
		j = c.jobJSON(name)
		if cond := j.Status.Condition(typ); cond != nil && cond.Status == core.ConditionTrue {
			return nil
		}
		var pods []string
		for _, p := range c.podsJSON("job-name=" + name) {
			pods = append(pods, p.Metadata.Name+": "+p.Status.Phase)
		}
		return fmt.Errorf("status %+v; pods %v", j.Status, pods)
	})
	return j
}

// Jobs on the real runtime: one runs two pods to completion and their
// logs stay readable; one whose container fails ends Failed once past its
// backoff limit.
func TestJobs(t *testing.T) {
	needRoot(t)
	c := newCluster(t)
	out := c.apply(jobsManifest)
	if !strings.Contains(out, "job.batch/twice created") {
		t.Fatalf("apply: %s", out)
	}

	j := c.waitJob("twice", core.JobComplete, 90*time.Second)
	if st := j.Status; st.Succeeded != 2 || st.Failed != 0 || st.Active != 0 || st.CompletionTime == nil {
		t.Fatalf("twice: status %+v", st)
	}
	pods := c.podsJSON("job-name=twice")
	if len(pods) != 2 {
		t.Fatalf("twice: %d pods, want 2", len(pods))
	}
	for _, p := range pods {
		if p.Status.Phase != "Succeeded" || !strings.HasPrefix(p.Metadata.Name, "twice-") || p.Metadata.Labels["controller-uid"] != j.Metadata.UID {
			t.Fatalf("twice: pod %s phase %s labels %v", p.Metadata.Name, p.Status.Phase, p.Metadata.Labels)
		}
		if logs := c.mustEdgectl("logs", p.Metadata.Name); strings.TrimSpace(logs) != "done" {
			t.Fatalf("logs of %s: %q, want \"done\"", p.Metadata.Name, logs)
		}
	}
	if table := c.mustEdgectl("get", "jobs"); !strings.Contains(table, "COMPLETIONS") || !strings.Contains(table, "2/2") {
		t.Fatalf("get jobs:\n%s", table)
	}

	// The first failure's replacement waits 10s (the pod failure backoff).
	j = c.waitJob("broken", core.JobFailed, 90*time.Second)
	if cond := j.Status.Condition(core.JobFailed); cond.Reason != core.ReasonBackoffLimitExceeded || j.Status.Failed != 2 || j.Status.Succeeded != 0 {
		t.Fatalf("broken: status %+v", j.Status)
	}
	pods = c.podsJSON("job-name=broken")
	if len(pods) != 2 {
		t.Fatalf("broken: %d pods, want 2 (backoffLimit 1)", len(pods))
	}
	for _, p := range pods {
		if p.Status.Phase != "Failed" {
			t.Fatalf("broken: pod %s phase %s", p.Metadata.Name, p.Status.Phase)
		}
	}
	if logs := c.mustEdgectl("logs", pods[0].Metadata.Name); !strings.Contains(logs, "failing") {
		t.Fatalf("logs of %s: %q", pods[0].Metadata.Name, logs)
	}

	// Deleting a Job deletes its pods.
	c.mustEdgectl("delete", "job", "twice")
	c.mustEdgectl("delete", "job", "broken")
	waitFor(t, 60*time.Second, "the Jobs' pods gone", func() error {
		if n := len(c.podsJSON("")); n != 0 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
}
