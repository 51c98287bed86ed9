package core_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/core"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func template(image string) core.PodTemplateSpec {
	return core.PodTemplateSpec{
		Metadata: core.ObjectMeta{Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"a": "b"}},
		Spec:     core.PodSpec{Containers: []core.Container{{Name: "c", Image: image}}},
	}
}

var (
	oldTemplate = template("demo:0")
	oldHash     = core.TemplateHash(&oldTemplate)
)

func ios(s string) *core.IntOrString {
	v := core.IntOrStr(s)
	if !strings.HasSuffix(s, "%") {
		n, err := strconv.Atoi(s)
		if err != nil {
			panic(err)
		}
		v = core.IntOrInt(int32(n))
	}
	return &v
}

// newDeployment returns a deployment of replicas pods of demo:1. strategy
// is "Recreate" or "surge/unavailable" ("1/0", "25%/25%", "" for none).
func newDeployment(replicas int32, strategy string) *core.Deployment {
	d := &core.Deployment{
		TypeMeta: core.TypeMeta{APIVersion: "apps/v1", Kind: core.KindDeployment},
		Metadata: core.ObjectMeta{Name: "web", Namespace: "default", UID: "web-uid", Generation: 3},
		Spec: core.DeploymentSpec{Replicas: &replicas, Selector: &core.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: template("demo:1")},
	}
	switch {
	case strategy == core.StrategyRecreate:
		d.Spec.Strategy.Type = core.StrategyRecreate
	case strategy != "":
		surge, unavail, _ := strings.Cut(strategy, "/")
		d.Spec.Strategy = core.DeploymentStrategy{Type: core.StrategyRollingUpdate,
			RollingUpdate: &core.RollingUpdateStrategy{MaxSurge: ios(surge), MaxUnavailable: ios(unavail)}}
	}
	return d
}

// podState describes a pod in a plan test: "name:state[:age]" where state
// is ready, notready, pending (unscheduled), failed, succeeded or
// terminating, and age (seconds after t0, default 0) orders creation.
type podState string

func makePod(owner core.Object, tmpl *core.PodTemplateSpec, spec podState, node string) *core.Pod {
	parts := strings.Split(string(spec), ":")
	p := core.NewPodFromTemplate(owner, tmpl, core.TemplateHash(tmpl), parts[0])
	p.Metadata.UID = parts[0] + "-uid"
	age := 0
	if len(parts) > 2 {
		fmt.Sscanf(parts[2], "%d", &age)
	}
	p.Metadata.CreationTimestamp = core.NewTime(t0.Add(time.Duration(age) * time.Second))
	p.Spec.NodeName = node
	running := core.PodStatus{Phase: core.PodRunning, ContainerStatuses: []core.ContainerStatus{{Name: "c", Ready: true}}}
	switch parts[1] {
	case "ready":
		p.Status = running
	case "notready":
		p.Status = running
		p.Status.ContainerStatuses = []core.ContainerStatus{{Name: "c", Ready: false}}
	case "pending":
		p.Spec.NodeName = ""
	case "failed":
		p.Status.Phase = core.PodFailed
	case "succeeded":
		p.Status.Phase = core.PodSucceeded
	case "terminating":
		p.Status = running
		p.Metadata.DeletionTimestamp = core.NewTime(t0)
	default:
		panic("unknown pod state " + parts[1])
	}
	return p
}

func podNames(pods []*core.Pod) string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Metadata.Name)
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

func TestPlanDeployment(t *testing.T) {
	for _, tt := range []struct {
		name      string
		replicas  int32
		strategy  string
		old, cur  []podState // pods of the previous and of the current template
		lost      string     // names of pods on lost nodes
		cannot    string     // names of pods that cannot stop yet (CanStop false)
		create    int
		delete    string // names, sorted
		replicas_ int32  // status.replicas
		ready     int32  // status.readyReplicas
		updated   *int32 // status.updatedReplicas if not every active current pod
	}{
		{name: "scale up from zero", replicas: 3, create: 3},
		{name: "steady", replicas: 3, cur: []podState{"a:ready", "b:ready", "c:ready"}, replicas_: 3, ready: 3},
		{name: "replicas default to one", replicas: -1, create: 1},
		{name: "scale down: unscheduled, then not ready, then youngest", replicas: 1,
			cur:    []podState{"a:ready:1", "b:ready:3", "c:notready:5", "d:pending:0", "e:ready:2"},
			delete: "b c d e", replicas_: 5, ready: 3},
		{name: "scale down: same age goes by name", replicas: 1, cur: []podState{"x:ready", "y:ready"}, delete: "y", replicas_: 2, ready: 2},
		{name: "rolling 1/0 starts with a surge pod", replicas: 3, strategy: "1/0",
			old: []podState{"a:ready", "b:ready", "c:ready"}, create: 1, replicas_: 3, ready: 3},
		{name: "rolling 1/0 stops an old pod once a new one is ready", replicas: 3, strategy: "1/0",
			old: []podState{"a:ready:1", "b:ready:2", "c:ready:3"}, cur: []podState{"n:ready"}, delete: "c", replicas_: 4, ready: 4},
		{name: "rolling 1/0 waits while the new pod is not ready", replicas: 3, strategy: "1/0",
			old: []podState{"a:ready", "b:ready", "c:ready"}, cur: []podState{"n:notready"}, replicas_: 4, ready: 3},
		{name: "rolling 0/1 stops before it starts", replicas: 3, strategy: "0/1",
			old: []podState{"a:ready:1", "b:ready:2", "c:ready:3"}, delete: "c", replicas_: 3, ready: 3},
		{name: "rolling 0/1 then starts the replacement", replicas: 3, strategy: "0/1",
			old: []podState{"a:ready", "b:ready"}, create: 1, replicas_: 2, ready: 2},
		{name: "rolling 0/0 is treated as 0/1", replicas: 3, strategy: "0/0",
			old: []podState{"a:ready:1", "b:ready:2", "c:ready:3"}, delete: "c", replicas_: 3, ready: 3},
		{name: "rolling 2/2", replicas: 4, strategy: "2/2",
			old: []podState{"a:ready:1", "b:ready:2", "c:ready:3", "d:ready:4"}, create: 2, delete: "c d", replicas_: 4, ready: 4},
		{name: "rolling 25%/25% of 4 is 1/1", replicas: 4, strategy: "25%/25%",
			old: []podState{"a:ready:1", "b:ready:2", "c:ready:3", "d:ready:4"}, create: 1, delete: "d", replicas_: 4, ready: 4},
		{name: "rolling 25%/25% of 10 rounds surge up to 3 and unavailable down to 2", replicas: 10, strategy: "25%/25%",
			old:    []podState{"a:ready:1", "b:ready:2", "c:ready:3", "d:ready:4", "e:ready:5", "f:ready:6", "g:ready:7", "h:ready:8", "i:ready:9", "j:ready:10"},
			create: 3, delete: "i j", replicas_: 10, ready: 10},
		{name: "rolling defaults to 1/0 without rollingUpdate", replicas: 2,
			old: []podState{"a:ready", "b:ready"}, create: 1, replicas_: 2, ready: 2},
		{name: "old pods that are not ready go at once", replicas: 3, strategy: "1/0",
			old: []podState{"a:ready", "b:ready", "c:notready"}, create: 1, delete: "c", replicas_: 3, ready: 2},
		{name: "a ready old pod waits while its node cannot stop it", replicas: 3, strategy: "0/1",
			old: []podState{"a:ready:1", "b:ready:2", "c:ready:3"}, cannot: "a b c", replicas_: 3, ready: 3},
		{name: "the next old pod stops when the youngest cannot", replicas: 3, strategy: "0/1",
			old: []podState{"a:ready:1", "b:ready:2", "c:ready:3"}, cannot: "c", delete: "b", replicas_: 3, ready: 3},
		{name: "an old pod that is not ready stops even if its node has no image", replicas: 3, strategy: "0/1",
			old: []podState{"a:ready", "b:ready", "c:notready"}, cannot: "a b c", delete: "c", replicas_: 3, ready: 2},
		{name: "too many current pods during a rollout", replicas: 2,
			old: []podState{"o:ready"}, cur: []podState{"a:ready:1", "b:ready:2", "c:ready:3"}, delete: "c o", replicas_: 3, ready: 3, updated: ptr(int32(2))},
		{name: "lost pods are neither counted nor stopped", replicas: 3,
			cur: []podState{"a:ready", "b:ready", "c:ready"}, lost: "c", create: 1, replicas_: 2, ready: 2},
		{name: "lost old pods do not hold a rollout", replicas: 2, strategy: "0/1",
			old: []podState{"a:ready", "b:ready"}, lost: "a b", create: 2, replicas_: 0},
		{name: "terminal pods are replaced", replicas: 3,
			cur: []podState{"a:ready", "b:failed", "c:succeeded"}, create: 2, delete: "b c", replicas_: 1, ready: 1},
		{name: "terminating pods are neither counted nor replaced twice", replicas: 2,
			cur: []podState{"a:ready", "b:ready", "c:terminating"}, replicas_: 2, ready: 2},
		{name: "recreate stops every old pod at once", replicas: 2, strategy: core.StrategyRecreate,
			old: []podState{"a:ready", "b:notready"}, delete: "a b", replicas_: 2, ready: 1},
		{name: "recreate stops current pods started too early", replicas: 2, strategy: core.StrategyRecreate,
			old: []podState{"a:ready"}, cur: []podState{"n:notready"}, delete: "a n", replicas_: 2, ready: 1},
		{name: "recreate waits for old pods to be gone", replicas: 2, strategy: core.StrategyRecreate,
			old: []podState{"a:terminating", "b:terminating"}, replicas_: 0},
		{name: "recreate starts once they are", replicas: 2, strategy: core.StrategyRecreate, create: 2},
		{name: "recreate waits for a node to fetch the new image", replicas: 2, strategy: core.StrategyRecreate,
			old: []podState{"a:ready", "b:ready"}, cannot: "b", replicas_: 2, ready: 2},
		{name: "recreate does not wait for a pod that is not ready", replicas: 2, strategy: core.StrategyRecreate,
			old: []podState{"a:ready", "b:notready"}, cannot: "b", delete: "a b", replicas_: 2, ready: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newDeployment(tt.replicas, tt.strategy)
			if tt.replicas < 0 {
				d.Spec.Replicas = nil
			}
			hash := core.TemplateHash(&d.Spec.Template)
			var pods []*core.Pod
			for _, s := range tt.old {
				pods = append(pods, makePod(d, &oldTemplate, s, "n1"))
			}
			for _, s := range tt.cur {
				pods = append(pods, makePod(d, &d.Spec.Template, s, "n1"))
			}
			in, _ := json.Marshal(pods)
			lost, cannot := strings.Fields(tt.lost), strings.Fields(tt.cannot)
			var named []string
			plan, st := core.PlanDeployment(d, pods, core.PlanEnv{
				NewName: func(h string) string {
					if h != hash {
						t.Errorf("NewName(%q), want the template hash %q", h, hash)
					}
					named = append(named, fmt.Sprintf("new-%d", len(named)))
					return named[len(named)-1]
				},
				Lost:    func(p *core.Pod) bool { return contains(lost, p.Metadata.Name) },
				CanStop: func(p *core.Pod) bool { return !contains(cannot, p.Metadata.Name) },
				Now:     t0,
			})
			if len(plan.Create) != tt.create {
				t.Errorf("created %d pods, want %d", len(plan.Create), tt.create)
			}
			if got := podNames(plan.Delete); got != tt.delete {
				t.Errorf("deleted %q, want %q", got, tt.delete)
			}
			for i, p := range plan.Create {
				o := p.Owner()
				if p.Metadata.Name != named[i] || p.Metadata.Namespace != "default" || o == nil || o.UID != "web-uid" || o.Kind != core.KindDeployment ||
					p.Metadata.Labels[core.LabelTemplateHash] != hash || p.Metadata.Labels["app"] != "web" || p.Metadata.Annotations["a"] != "b" ||
					p.Spec.Containers[0].Image != "demo:1" || p.Status.Phase != core.PodPending || p.Spec.NodeName != "" {
					t.Errorf("created pod %+v", p)
				}
			}
			if st.Replicas != tt.replicas_ || st.ReadyReplicas != tt.ready || st.AvailableReplicas != tt.ready {
				t.Errorf("status replicas %d ready %d available %d, want %d and %d", st.Replicas, st.ReadyReplicas, st.AvailableReplicas, tt.replicas_, tt.ready)
			}
			updated := int32(0)
			for _, s := range tt.cur {
				if !strings.Contains(string(s), "terminating") && !strings.Contains(string(s), "failed") &&
					!strings.Contains(string(s), "succeeded") && !contains(lost, strings.Split(string(s), ":")[0]) {
					updated++
				}
			}
			if tt.updated != nil {
				updated = *tt.updated
			}
			if st.UpdatedReplicas != updated || st.ObservedGeneration != 3 || st.TemplateHash != hash {
				t.Errorf("status %+v, want %d updated, generation 3, hash %s", st, updated, hash)
			}
			if h := st.History; len(h) != 1 || h[0].Hash != hash || h[0].Revision != 1 || !h[0].Time.Equal(t0) {
				t.Errorf("history %+v", h)
			}
			if out, _ := json.Marshal(pods); string(out) != string(in) {
				t.Error("the plan changed its input")
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A nil CanStop and Lost let every pod stop and count.
func TestPlanDeployment_NilEnv(t *testing.T) {
	d := newDeployment(1, "0/1")
	pods := []*core.Pod{makePod(d, &oldTemplate, "a:ready", "n1")}
	plan, _ := core.PlanDeployment(d, pods, core.PlanEnv{NewName: func(string) string { return "x" }})
	if podNames(plan.Delete) != "a" || len(plan.Create) != 0 {
		t.Fatalf("plan %+v", plan)
	}
}

func TestPlanDeployment_History(t *testing.T) {
	limit := int32(2)
	for _, tt := range []struct {
		name    string
		history []string // template images, oldest first, revisions 1..n
		image   string
		limit   *int32
		want    string // "revision:image" oldest first
	}{
		{name: "first", image: "v1", want: "1:v1"},
		{name: "unchanged", history: []string{"v1", "v2"}, image: "v2", want: "1:v1 2:v2"},
		{name: "new template", history: []string{"v1", "v2"}, image: "v3", want: "1:v1 2:v2 3:v3"},
		{name: "back to an older one moves it last", history: []string{"v1", "v2", "v3"}, image: "v1", want: "2:v2 3:v3 4:v1"},
		{name: "trimmed to revisionHistoryLimit old ones", history: []string{"v1", "v2", "v3"}, image: "v4", limit: &limit, want: "2:v2 3:v3 4:v4"},
		{name: "ten old ones by default", history: []string{"v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11"}, image: "v12",
			want: "2:v2 3:v3 4:v4 5:v5 6:v6 7:v7 8:v8 9:v9 10:v10 11:v11 12:v12"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newDeployment(0, "")
			d.Spec.RevisionHistoryLimit = tt.limit
			for i, img := range tt.history {
				tmpl := template(img)
				d.Spec.Template = tmpl
				d.Status.History = append(d.Status.History, core.Revision{Revision: int64(i + 1), Hash: core.TemplateHash(&tmpl),
					Template: tmpl, Time: core.NewTime(t0.Add(time.Duration(i) * time.Hour))})
			}
			before, _ := json.Marshal(d.Status.History)
			d.Spec.Template = template(tt.image)
			now := t0.Add(100 * time.Hour)
			_, st := core.PlanDeployment(d, nil, core.PlanEnv{NewName: func(string) string { return "p" }, Now: now})
			var got []string
			for _, r := range st.History {
				got = append(got, fmt.Sprintf("%d:%s", r.Revision, r.Template.Spec.Containers[0].Image))
				if r.Hash != core.TemplateHash(&r.Template) {
					t.Errorf("revision %d: hash %s of another template", r.Revision, r.Hash)
				}
			}
			if strings.Join(got, " ") != tt.want {
				t.Fatalf("history %q, want %q", strings.Join(got, " "), tt.want)
			}
			last := st.History[len(st.History)-1]
			fresh := len(tt.history) == 0 || tt.history[len(tt.history)-1] != tt.image
			if fresh != last.Time.Equal(now) {
				t.Fatalf("last revision at %v (new revision: %v)", last.Time, fresh)
			}
			if after, _ := json.Marshal(d.Status.History); string(after) != string(before) {
				t.Fatal("the plan changed the deployment's history in place")
			}
		})
	}
}

func dsNode(name string, labels ...string) *core.Node {
	n := &core.Node{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindNode},
		Metadata: core.ObjectMeta{Name: name, Labels: map[string]string{}}, Spec: core.NodeSpec{PodCIDR: "10.42.9.0/24"}}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		n.Metadata.Labels[k] = v
	}
	return n
}

func newDaemonSet(selector map[string]string) *core.DaemonSet {
	return &core.DaemonSet{
		TypeMeta: core.TypeMeta{APIVersion: "apps/v1", Kind: core.KindDaemonSet},
		Metadata: core.ObjectMeta{Name: "logs", Namespace: "default", UID: "logs-uid", Generation: 2},
		Spec: core.DaemonSetSpec{Selector: &core.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: func() core.PodTemplateSpec { t := template("demo:1"); t.Spec.NodeSelector = selector; return t }()},
	}
}

func TestPlanDaemonSet(t *testing.T) {
	deleting := dsNode("n4")
	deleting.Metadata.DeletionTimestamp = core.NewTime(t0)
	nodes := []*core.Node{dsNode("n1", "zone=a"), dsNode("n2", "zone=b"), dsNode("n3", "zone=b"), deleting}
	type pod struct {
		spec  podState
		node  string
		stale bool // of the previous template
	}
	for _, tt := range []struct {
		name     string
		selector map[string]string
		pods     []pod
		create   string // nodes, sorted
		delete   string
		status   core.DaemonSetStatus // without ObservedGeneration
	}{
		{name: "one per node, none on a node being deleted", create: "n1 n2 n3",
			status: core.DaemonSetStatus{DesiredNumberScheduled: 3}},
		{name: "nodeSelector", selector: map[string]string{"zone": "b"}, create: "n2 n3",
			status: core.DaemonSetStatus{DesiredNumberScheduled: 2}},
		{name: "steady", pods: []pod{{"a:ready", "n1", false}, {"b:ready", "n2", false}, {"c:notready", "n3", false}},
			status: core.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, UpdatedNumberScheduled: 3, NumberReady: 2, NumberAvailable: 2}},
		{name: "pods leave nodes that no longer match", selector: map[string]string{"zone": "a"},
			pods:   []pod{{"a:ready", "n1", false}, {"b:ready", "n2", false}, {"x:ready", "n4", false}},
			delete: "b x", status: core.DaemonSetStatus{DesiredNumberScheduled: 1, CurrentNumberScheduled: 1, UpdatedNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1}},
		{name: "a duplicate goes, not ready first", selector: map[string]string{"zone": "a"},
			pods:   []pod{{"a:ready", "n1", false}, {"b:notready", "n1", false}},
			delete: "b", status: core.DaemonSetStatus{DesiredNumberScheduled: 1, CurrentNumberScheduled: 1, UpdatedNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1}},
		{name: "terminal pods are replaced", selector: map[string]string{"zone": "a"},
			pods:   []pod{{"a:failed", "n1", false}},
			create: "n1", delete: "a", status: core.DaemonSetStatus{DesiredNumberScheduled: 1}},
		{name: "no new pod while the old one stops", selector: map[string]string{"zone": "a"},
			pods:   []pod{{"a:terminating", "n1", true}},
			status: core.DaemonSetStatus{DesiredNumberScheduled: 1}},
		{name: "a rollout replaces one node first", selector: map[string]string{"zone": "b"},
			pods:   []pod{{"a:ready", "n2", true}, {"b:ready", "n3", true}},
			delete: "a", status: core.DaemonSetStatus{DesiredNumberScheduled: 2, CurrentNumberScheduled: 2, NumberReady: 2, NumberAvailable: 2}},
		{name: "and waits while it stops", selector: map[string]string{"zone": "b"},
			pods:   []pod{{"a:terminating", "n2", true}, {"b:ready", "n3", true}},
			status: core.DaemonSetStatus{DesiredNumberScheduled: 2, CurrentNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1}},
		{name: "and while its replacement is created", selector: map[string]string{"zone": "b"},
			pods:   []pod{{"b:ready", "n3", true}},
			create: "n2", status: core.DaemonSetStatus{DesiredNumberScheduled: 2, CurrentNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1}},
		{name: "and while its replacement is not ready", selector: map[string]string{"zone": "b"},
			pods:   []pod{{"a:notready", "n2", false}, {"b:ready", "n3", true}},
			status: core.DaemonSetStatus{DesiredNumberScheduled: 2, CurrentNumberScheduled: 2, UpdatedNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1}},
		{name: "then replaces the next", selector: map[string]string{"zone": "b"},
			pods:   []pod{{"a:ready", "n2", false}, {"b:ready", "n3", true}},
			delete: "b", status: core.DaemonSetStatus{DesiredNumberScheduled: 2, CurrentNumberScheduled: 2, UpdatedNumberScheduled: 1, NumberReady: 2, NumberAvailable: 2}},
		{name: "a stale pod beside a current one goes", selector: map[string]string{"zone": "a"},
			pods:   []pod{{"a:ready", "n1", false}, {"b:ready", "n1", true}},
			delete: "b", status: core.DaemonSetStatus{DesiredNumberScheduled: 1, CurrentNumberScheduled: 1, UpdatedNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ds := newDaemonSet(tt.selector)
			hash := core.TemplateHash(&ds.Spec.Template)
			var pods []*core.Pod
			for _, p := range tt.pods {
				tmpl := &ds.Spec.Template
				if p.stale {
					tmpl = &oldTemplate
				}
				pods = append(pods, makePod(ds, tmpl, p.spec, p.node))
			}
			plan, st := core.PlanDaemonSet(ds, nodes, pods, func(h string) string { return "new-" + h })
			var created []string
			for _, p := range plan.Create {
				created = append(created, p.Spec.NodeName)
				if o := p.Owner(); o == nil || o.Kind != core.KindDaemonSet || o.UID != "logs-uid" || p.Metadata.Name != "new-"+hash ||
					p.Metadata.Labels[core.LabelTemplateHash] != hash || p.Spec.Containers[0].Image != "demo:1" {
					t.Errorf("created pod %+v", p)
				}
			}
			sort.Strings(created)
			if got := strings.Join(created, " "); got != tt.create {
				t.Errorf("created on %q, want %q", got, tt.create)
			}
			if got := podNames(plan.Delete); got != tt.delete {
				t.Errorf("deleted %q, want %q", got, tt.delete)
			}
			want := tt.status
			want.ObservedGeneration = 2
			if st != want {
				t.Errorf("status %+v, want %+v", st, want)
			}
		})
	}
}

func TestDaemonSetNodes(t *testing.T) {
	deleting := dsNode("n3", "zone=a")
	deleting.Metadata.DeletionTimestamp = core.NewTime(t0)
	nodes := []*core.Node{dsNode("n1", "zone=a", "arch=arm64"), dsNode("n2", "zone=b"), deleting}
	for sel, want := range map[string]string{"": "n1 n2", "zone=a": "n1", "zone=a,arch=arm64": "n1", "zone=c": ""} {
		m, _ := core.ParseSelector(sel)
		var got []string
		for _, n := range core.DaemonSetNodes(newDaemonSet(m), nodes) {
			got = append(got, n.Metadata.Name)
		}
		if strings.Join(got, " ") != want {
			t.Errorf("selector %q: nodes %v, want %q", sel, got, want)
		}
	}
}

func TestOwnedBy(t *testing.T) {
	d := newDeployment(1, "")
	other := newDeployment(1, "")
	other.Metadata.UID = "other"
	mine := makePod(d, &d.Spec.Template, "a:ready", "n1")
	notController := makePod(d, &d.Spec.Template, "b:ready", "n1")
	notController.Metadata.OwnerReferences[0].Controller = false
	bare := makePod(d, &d.Spec.Template, "c:ready", "n1")
	bare.Metadata.OwnerReferences = nil
	theirs := makePod(other, &other.Spec.Template, "d:ready", "n1")
	if got := podNames(core.OwnedBy([]*core.Pod{mine, notController, bare, theirs}, "web-uid")); got != "a" {
		t.Fatalf("OwnedBy = %q, want a", got)
	}
}

// A node the cluster CIDR had no subnet left for gets no DaemonSet pod,
// unless the pod uses the node's network.
func TestDaemonSetNodes_NeedAPodSubnet(t *testing.T) {
	bare := dsNode("bare")
	bare.Spec.PodCIDR = ""
	nodes := []*core.Node{dsNode("n1"), bare}
	ds := newDaemonSet(nil)
	if got := core.DaemonSetNodes(ds, nodes); len(got) != 1 || got[0].Metadata.Name != "n1" {
		t.Fatalf("nodes %v", got)
	}
	ds.Spec.Template.Spec.HostNetwork = true
	if got := core.DaemonSetNodes(ds, nodes); len(got) != 2 {
		t.Fatalf("hostNetwork: nodes %v", got)
	}
}
