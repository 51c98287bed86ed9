package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgeorch/edge/core"
)

// table prints kubectl-style columns.
type table struct {
	header []string
	rows   [][]string
	kind   core.Kind
	wide   bool
	ns     bool
}

func newTable(kind core.Kind, wide, allNS bool) *table {
	t := &table{kind: kind, wide: wide, ns: allNS}
	switch kind {
	case core.KindNode:
		t.header = []string{"NAME", "STATUS", "ROLES", "AGE", "VERSION"}
		if wide {
			t.header = append(t.header, "INTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "ARCH", "CONTAINER-RUNTIME")
		}
	case core.KindPod:
		t.header = []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}
		if wide {
			t.header = append(t.header, "IP", "NODE")
		}
	case core.KindDeployment:
		t.header = []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"}
		if wide {
			t.header = append(t.header, "CONTAINERS", "IMAGES", "SELECTOR")
		}
	case core.KindDaemonSet:
		t.header = []string{"NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"}
	case core.KindStatefulSet:
		t.header = []string{"NAME", "READY", "AGE"}
		if wide {
			t.header = append(t.header, "CONTAINERS", "IMAGES")
		}
	case core.KindJob:
		t.header = []string{"NAME", "COMPLETIONS", "DURATION", "AGE"}
		if wide {
			t.header = append(t.header, "CONTAINERS", "IMAGES")
		}
	case core.KindCronJob:
		t.header = []string{"NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"}
		if wide {
			t.header = append(t.header, "TIMEZONE", "CONTAINERS", "IMAGES")
		}
	case core.KindService:
		t.header = []string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"}
		if wide {
			t.header = append(t.header, "SELECTOR")
		}
	case core.KindEndpoints:
		t.header = []string{"NAME", "ENDPOINTS", "AGE"}
	case core.KindConfigMap:
		t.header = []string{"NAME", "DATA", "AGE"}
	case core.KindSecret:
		t.header = []string{"NAME", "TYPE", "DATA", "AGE"}
	case core.KindServiceAccount, core.KindRole, core.KindRoleBinding, core.KindClusterRole, core.KindClusterRoleBinding:
		t.header = []string{"NAME", "AGE"}
	case core.KindNamespace:
		t.header = []string{"NAME", "STATUS", "AGE"}
	case core.KindPersistentVolumeClaim:
		t.header = []string{"NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE"}
	case core.KindPersistentVolume:
		t.header = []string{"NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS", "AGE"}
		if wide {
			t.header = append(t.header, "PATH", "NODE")
		}
	case core.KindStorageClass:
		t.header = []string{"NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "AGE"}
	case core.KindEvent:
		t.header = []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"}
	}
	if allNS {
		t.header = append([]string{"NAMESPACE"}, t.header...)
	}
	return t
}

// statusCol is the column a watch marks "Deleted" in.
func (t *table) statusCol() int {
	i := 1
	if t.kind == core.KindPod {
		i = 2
	}
	if t.ns {
		i++
	}
	return i
}

// Age renders a duration the way kubectl does: 45s, 12m, 5h, 3d.
func Age(created *core.Time, now time.Time) string {
	if created == nil {
		return "<unknown>"
	}
	d := now.Sub(created.Time)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 10*time.Minute:
		s := int(d.Seconds()) % 60
		if s == 0 {
			return fmt.Sprintf("%dm", int(d.Minutes()))
		}
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), s)
	case d < 3*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func labelString(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// NodeStatus renders Ready/NotReady[,SchedulingDisabled].
func NodeStatus(n *core.Node) string {
	s := "NotReady"
	switch n.Ready() {
	case core.ConditionTrue:
		s = "Ready"
	case core.ConditionUnknown:
		s = "NotReady"
	}
	if n.Spec.Unschedulable {
		s += ",SchedulingDisabled"
	}
	return s
}

// PodStatus renders the STATUS column: the most telling reason.
func PodStatus(p *core.Pod) string {
	if p.Terminating() {
		return "Terminating"
	}
	if p.Status.Reason != "" {
		return p.Status.Reason
	}
	if s, ok := initStatus(p); ok {
		return s
	}
	for _, c := range p.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" {
			return w.Reason
		}
		if t := c.State.Terminated; t != nil && p.Status.Phase != core.PodSucceeded && t.Reason != "" {
			return t.Reason
		}
	}
	if p.Status.Phase == core.PodPending && p.Spec.NodeName != "" {
		return "ContainerCreating"
	}
	if p.Status.Phase == core.PodSucceeded {
		return "Completed"
	}
	if p.Status.Phase == "" {
		return string(core.PodPending)
	}
	return string(p.Status.Phase)
}

// initStatus renders the STATUS of a pod whose init containers have not
// all completed, as kubectl does: Init:N/M (N completed of M), or
// Init:REASON when one failed or waits for a reason.
func initStatus(p *core.Pod) (string, bool) {
	for i, c := range p.Status.InitContainerStatuses {
		switch t, w := c.State.Terminated, c.State.Waiting; {
		case t != nil && t.ExitCode == 0:
			continue
		case c.Started != nil && *c.Started && isSidecar(p, c.Name):
			continue // a sidecar that started lets the next one start
		case t != nil && t.Reason != "":
			return "Init:" + t.Reason, true
		case t != nil && t.Signal != 0:
			return fmt.Sprintf("Init:Signal:%d", t.Signal), true
		case t != nil:
			return fmt.Sprintf("Init:ExitCode:%d", t.ExitCode), true
		case w != nil && w.Reason != "" && w.Reason != "PodInitializing" && w.Reason != "ContainerCreating":
			return "Init:" + w.Reason, true
		default:
			return fmt.Sprintf("Init:%d/%d", i, len(p.Spec.InitContainers)), true
		}
	}
	return "", false
}

// podReady renders READY: ready of all, sidecars counted as containers
// (as kubectl does).
func podReady(p *core.Pod) string {
	ready, total := 0, len(p.Spec.Containers)
	for _, c := range p.Status.ContainerStatuses {
		if c.Ready {
			ready++
		}
	}
	for _, c := range p.Spec.InitContainers {
		if c.IsSidecar() {
			total++
		}
	}
	for _, c := range p.Status.InitContainerStatuses {
		if c.Ready && isSidecar(p, c.Name) {
			ready++
		}
	}
	return fmt.Sprintf("%d/%d", ready, total)
}

// isSidecar reports whether p's init container name is a sidecar.
func isSidecar(p *core.Pod, name string) bool {
	for _, c := range p.Spec.InitContainers {
		if c.Name == name {
			return c.IsSidecar()
		}
	}
	return false
}

func restarts(p *core.Pod) string {
	n := p.Restarts()
	for _, c := range p.Status.InitContainerStatuses { // as kubectl counts them
		n += c.RestartCount
	}
	var last *core.Time
	for _, c := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) { // a sidecar's restarts too
		if t := c.LastState.Terminated; t != nil && t.FinishedAt != nil && (last == nil || t.FinishedAt.After(last.Time)) {
			last = t.FinishedAt
		}
	}
	if n > 0 && last != nil {
		return fmt.Sprintf("%d (%s ago)", n, Age(last, time.Now()))
	}
	return fmt.Sprint(n)
}

func servicePorts(s *core.Service) string {
	var parts []string
	for _, p := range s.Spec.Ports {
		v := fmt.Sprintf("%d", p.Port)
		if p.NodePort != 0 {
			v += fmt.Sprintf(":%d", p.NodePort)
		}
		parts = append(parts, v+"/"+p.Protocol)
	}
	return strings.Join(parts, ",")
}

// endpointList prints ready addresses as IP:port, kubectl style: at most
// max of them, then "+ N more...".
func endpointList(e *core.Endpoints, max int) string {
	var all []string
	for _, sub := range e.Subsets {
		for _, a := range sub.Addresses {
			if len(sub.Ports) == 0 {
				all = append(all, a.IP)
			}
			for _, p := range sub.Ports {
				all = append(all, fmt.Sprintf("%s:%d", a.IP, p.Port))
			}
		}
	}
	if max > 0 && len(all) > max {
		return strings.Join(all[:max], ",") + fmt.Sprintf(" + %d more...", len(all)-max)
	}
	return strings.Join(all, ",")
}

func (t *table) add(o core.Object, now time.Time) {
	m := o.GetMeta()
	age := Age(m.CreationTimestamp, now)
	var row []string
	switch v := o.(type) {
	case *core.Node:
		row = []string{m.Name, NodeStatus(v), "<none>", age, orNone(v.Status.NodeInfo.KubeletVersion)}
		if t.wide {
			ip := ""
			for _, a := range v.Status.Addresses {
				if a.Type == "InternalIP" {
					ip = a.Address
				}
			}
			ni := v.Status.NodeInfo
			row = append(row, orNone(ip), orNone(ni.OSImage), orNone(ni.KernelVersion), orNone(ni.Architecture), orNone(ni.ContainerRuntimeVersion))
		}
	case *core.Pod:
		row = []string{m.Name, podReady(v), PodStatus(v), restarts(v), age}
		if t.wide {
			row = append(row, orNone(v.Status.PodIP), orNone(v.Spec.NodeName))
		}
	case *core.Deployment:
		row = []string{m.Name, fmt.Sprintf("%d/%d", v.Status.ReadyReplicas, v.DesiredReplicas()),
			fmt.Sprint(v.Status.UpdatedReplicas), fmt.Sprint(v.Status.AvailableReplicas), age}
		if t.wide {
			var names, images []string
			for _, c := range v.Spec.Template.Spec.Containers {
				names, images = append(names, c.Name), append(images, c.Image)
			}
			sel := map[string]string{}
			if v.Spec.Selector != nil {
				sel = v.Spec.Selector.MatchLabels
			}
			row = append(row, strings.Join(names, ","), strings.Join(images, ","), labelString(sel))
		}
	case *core.DaemonSet:
		s := v.Status
		row = []string{m.Name, fmt.Sprint(s.DesiredNumberScheduled), fmt.Sprint(s.CurrentNumberScheduled), fmt.Sprint(s.NumberReady),
			fmt.Sprint(s.UpdatedNumberScheduled), fmt.Sprint(s.NumberAvailable), labelString(v.Spec.Template.Spec.NodeSelector), age}
	case *core.Job:
		row = []string{m.Name, jobCompletions(v), jobDuration(v, now), age}
		if t.wide {
			row = append(row, containerColumns(&v.Spec.Template.Spec)...)
		}
	case *core.CronJob:
		last := "<none>"
		if v.Status.LastScheduleTime != nil {
			last = Age(v.Status.LastScheduleTime, now)
		}
		suspend := "False"
		if v.Spec.Suspend != nil && *v.Spec.Suspend {
			suspend = "True"
		}
		row = []string{m.Name, v.Spec.Schedule, suspend, fmt.Sprint(len(v.Status.Active)), last, age}
		if t.wide {
			tz := "<none>"
			if v.Spec.TimeZone != nil {
				tz = *v.Spec.TimeZone
			}
			row = append(append(row, tz), containerColumns(&v.Spec.JobTemplate.Spec.Template.Spec)...)
		}
	case *core.Service:
		external := "<none>"
		if v.Spec.Type == core.ServiceLoadBalancer {
			var ips []string
			for _, in := range v.Status.LoadBalancer.Ingress {
				ips = append(ips, in.IP)
			}
			external = strings.Join(ips, ",")
			if external == "" {
				external = "<pending>"
			}
		}
		row = []string{m.Name, v.Spec.Type, orNone(v.Spec.ClusterIP), external, servicePorts(v), age}
		if t.wide {
			row = append(row, labelString(v.Spec.Selector))
		}
	case *core.Endpoints:
		row = []string{m.Name, orNone(endpointList(v, 3)), age}
	case *core.ConfigMap:
		row = []string{m.Name, fmt.Sprint(len(v.Files())), age}
	case *core.Secret:
		row = []string{m.Name, v.Type, fmt.Sprint(len(v.Files())), age}
	case *core.InertObject:
		row = []string{m.Name, age}
	case *core.Namespace:
		row = []string{m.Name, orNone(v.Status.Phase), age}
	case *core.StatefulSet:
		row = []string{m.Name, fmt.Sprintf("%d/%d", v.Status.ReadyReplicas, v.DesiredReplicas()), age}
		if t.wide {
			var names, images []string
			for _, c := range v.Spec.Template.Spec.Containers {
				names, images = append(names, c.Name), append(images, c.Image)
			}
			row = append(row, strings.Join(names, ","), strings.Join(images, ","))
		}
	case *core.PersistentVolumeClaim:
		phase := v.Status.Phase
		if m.DeletionTimestamp != nil {
			phase = "Terminating"
		}
		row = []string{m.Name, phase, v.Spec.VolumeName, string(v.Status.Capacity[core.ResourceStorage]),
			accessModes(v.Spec.AccessModes), v.StorageClass(), age}
	case *core.PersistentVolume:
		phase := v.Status.Phase
		if m.DeletionTimestamp != nil {
			phase = "Terminating"
		}
		claim := ""
		if r := v.Spec.ClaimRef; r != nil {
			claim = r.Namespace + "/" + r.Name
		}
		row = []string{m.Name, string(v.Spec.Capacity[core.ResourceStorage]), accessModes(v.Spec.AccessModes),
			v.Spec.PersistentVolumeReclaimPolicy, phase, claim, v.Spec.StorageClassName, age}
		if t.wide {
			row = append(row, v.Path(), orNone(volumeNodes(v)))
		}
	case *core.StorageClass:
		row = []string{m.Name, v.Provisioner, v.ReclaimPolicy, v.VolumeBindingMode, age}
	case *core.EventObj:
		obj := strings.ToLower(string(v.InvolvedObject.Kind)) + "/" + v.InvolvedObject.Name
		row = []string{Age(v.LastTimestamp, now), v.Type, v.Reason, obj, v.Message}
	}
	if t.ns {
		row = append([]string{m.Namespace}, row...)
	}
	t.rows = append(t.rows, row)
}

func (t *table) print(w io.Writer, header bool) {
	tw := tabwriter.NewWriter(&terminalSafe{w: w}, 0, 8, 3, ' ', 0)
	if header {
		fmt.Fprintln(tw, strings.Join(t.header, "\t"))
	}
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// describe prints obj the way kubectl describe does; related holds the
// pods and events it may mention.
func describe(w io.Writer, obj core.Object, related []core.Object, now time.Time) {
	d := &describer{tw: tabwriter.NewWriter(&terminalSafe{w: w}, 0, 8, 1, ' ', 0), related: related, now: now}
	defer d.tw.Flush()
	m := obj.GetMeta()
	d.p("Name", m.Name)
	if m.Namespace != "" {
		d.p("Namespace", m.Namespace)
	}
	d.p("Labels", labelString(m.Labels))
	if len(m.Annotations) > 0 {
		d.p("Annotations", labelString(m.Annotations))
	}
	if m.CreationTimestamp != nil {
		d.p("Created", m.CreationTimestamp.Format(time.RFC3339)+" ("+Age(m.CreationTimestamp, now)+" ago)")
	}
	switch v := obj.(type) {
	case *core.Pod:
		d.pod(v)
	case *core.Node:
		d.node(v)
	case *core.Deployment:
		d.deployment(v)
	case *core.DaemonSet:
		d.daemonSet(v)
	case *core.StatefulSet:
		d.statefulSet(v)
	case *core.Job:
		d.job(v)
	case *core.CronJob:
		d.cronJob(v)
	case *core.Service:
		d.service(v)
	case *core.Endpoints:
		d.p("Addresses", orNone(endpointList(v, 0)))
	case *core.ConfigMap:
		d.files(v.Files())
	case *core.Secret:
		d.p("Type", v.Type)
		d.files(v.Files()) // sizes only, as kubectl: never the values
	case *core.Namespace:
		d.p("Status", v.Status.Phase)
	case *core.PersistentVolumeClaim:
		d.p("StorageClass", v.StorageClass())
		d.p("Status", v.Status.Phase)
		d.p("Volume", orNone(v.Spec.VolumeName))
		d.p("Capacity", orNone(string(v.Status.Capacity[core.ResourceStorage])))
		d.p("Requested", string(v.Spec.Resources.Requests[core.ResourceStorage]))
		d.p("Access Modes", accessModes(v.Spec.AccessModes))
		if v.Status.Message != "" {
			d.p("Message", v.Status.Message)
		}
		var users []string
		for _, o := range d.related {
			if p, ok := o.(*core.Pod); ok && p.Metadata.Namespace == v.Metadata.Namespace && slices.Contains(p.Spec.ClaimNames(), v.Metadata.Name) {
				users = append(users, p.Metadata.Name)
			}
		}
		d.p("Used By", orNone(strings.Join(users, ", ")))
	case *core.PersistentVolume:
		d.p("StorageClass", v.Spec.StorageClassName)
		d.p("Status", v.Status.Phase)
		if r := v.Spec.ClaimRef; r != nil {
			d.p("Claim", r.Namespace+"/"+r.Name)
		}
		d.p("Reclaim Policy", v.Spec.PersistentVolumeReclaimPolicy)
		d.p("Access Modes", accessModes(v.Spec.AccessModes))
		d.p("Capacity", string(v.Spec.Capacity[core.ResourceStorage]))
		d.p("Node", orNone(volumeNodes(v)))
		d.p("Path", v.Path())
		if v.Provisioned() {
			d.p("Provisioned By", core.LocalProvisioner)
		}
		if v.Status.Message != "" {
			d.p("Message", v.Status.Message)
		}
	case *core.StorageClass:
		d.p("Provisioner", v.Provisioner)
		d.p("Reclaim Policy", v.ReclaimPolicy)
		d.p("Binding Mode", v.VolumeBindingMode)
	}
}

// accessModes abbreviates access modes as kubectl does (RWO, ROX, RWX, RWOP).
func accessModes(modes []string) string {
	short := map[string]string{core.ReadWriteOnce: "RWO", core.ReadOnlyMany: "ROX", core.ReadWriteMany: "RWX", core.ReadWriteOncePod: "RWOP"}
	out := make([]string, len(modes))
	for i, m := range modes {
		out[i] = short[m]
	}
	return strings.Join(out, ",")
}

// volumeNodes names the nodes a volume's node affinity allows, when it
// lists them by hostname ("": any node).
func volumeNodes(v *core.PersistentVolume) string {
	var out []string
	if a := v.Spec.NodeAffinity; a != nil && a.Required != nil {
		for _, t := range a.Required.NodeSelectorTerms {
			for _, r := range t.MatchExpressions {
				if r.Key == core.LabelHostname && r.Operator == "In" {
					out = append(out, r.Values...)
				}
			}
		}
	}
	return strings.Join(out, ",")
}

type describer struct {
	tw      *tabwriter.Writer
	related []core.Object
	now     time.Time
}

func (d *describer) p(k, v string) { fmt.Fprintf(d.tw, "%s:\t%s\n", k, v) }

// pods lists the related pods that match.
func (d *describer) pods(match func(*core.Pod) bool) {
	var rows []string
	for _, o := range d.related {
		if pod, ok := o.(*core.Pod); ok && match(pod) {
			rows = append(rows, fmt.Sprintf("  %s\t%s\t%s\t%s", pod.Metadata.Namespace+"/"+pod.Metadata.Name, PodStatus(pod), orNone(pod.Spec.NodeName), orNone(pod.Status.PodIP)))
		}
	}
	fmt.Fprintf(d.tw, "Pods:\t%d\n", len(rows))
	for _, r := range rows {
		fmt.Fprintln(d.tw, r)
	}
}

func (d *describer) pod(v *core.Pod) {
	d.p("Node", orNone(v.Spec.NodeName))
	if v.Status.StartTime != nil {
		d.p("Start Time", v.Status.StartTime.Format(time.RFC3339))
	}
	d.p("Status", PodStatus(v))
	d.p("IP", orNone(v.Status.PodIP))
	if o := v.Owner(); o != nil {
		d.p("Controlled By", string(o.Kind)+"/"+o.Name)
	}
	if len(v.Spec.InitContainers) > 0 {
		d.containers("Init Containers", v.Spec.InitContainers, v.Status.InitContainerStatuses)
	}
	d.containers("Containers", v.Spec.Containers, v.Status.ContainerStatuses)
	if len(v.Status.Conditions) > 0 {
		fmt.Fprintln(d.tw, "Conditions:")
		for _, c := range v.Status.Conditions {
			fmt.Fprintf(d.tw, "  %s\t%s\n", c.Type, c.Status)
		}
	}
	if len(v.Spec.NodeSelector) > 0 {
		d.p("Node-Selectors", labelString(v.Spec.NodeSelector))
	}
	fmt.Fprintln(d.tw, "Events:")
	if c := v.Status.Condition("PodScheduled"); c != nil && c.Status == core.ConditionFalse {
		fmt.Fprintf(d.tw, "  Warning\tFailedScheduling\t\t%s\n", c.Message)
	}
	var events []*core.EventObj
	for _, o := range d.related {
		if e, ok := o.(*core.EventObj); ok {
			events = append(events, e)
		}
	}
	for _, e := range core.EventsFor(events, v.Metadata.UID) {
		at := ""
		if e.LastTimestamp != nil {
			at = e.LastTimestamp.Format(time.RFC3339)
		}
		fmt.Fprintf(d.tw, "  %s\t%s\t%s\t%s\n", e.Type, e.Reason, at, e.Message)
	}
	notes(d.tw, core.Warnings(v))
}

// oneLine keeps a multi-line termination message on its row.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", " | ")
}

// containers describes a pod's containers or init containers.
func (d *describer) containers(title string, ctrs []core.Container, status []core.ContainerStatus) {
	fmt.Fprintln(d.tw, title+":")
	statuses := map[string]core.ContainerStatus{}
	for _, cs := range status {
		statuses[cs.Name] = cs
	}
	for _, c := range ctrs {
		cs := statuses[c.Name]
		fmt.Fprintf(d.tw, "  %s:\n", c.Name)
		fmt.Fprintf(d.tw, "    Image:\t%s\n", c.Image)
		if len(c.Command) > 0 {
			fmt.Fprintf(d.tw, "    Command:\t%s\n", strings.Join(c.Command, " "))
		}
		if len(c.Args) > 0 {
			fmt.Fprintf(d.tw, "    Args:\t%s\n", strings.Join(c.Args, " "))
		}
		switch s := cs.State; {
		case s.Running != nil:
			fmt.Fprintf(d.tw, "    State:\tRunning\n")
		case s.Waiting != nil:
			fmt.Fprintf(d.tw, "    State:\tWaiting\n      Reason:\t%s\n", s.Waiting.Reason)
			if s.Waiting.Message != "" {
				fmt.Fprintf(d.tw, "      Message:\t%s\n", s.Waiting.Message)
			}
		case s.Terminated != nil:
			fmt.Fprintf(d.tw, "    State:\tTerminated\n      Reason:\t%s\n      Exit Code:\t%d\n", s.Terminated.Reason, s.Terminated.ExitCode)
			if m := s.Terminated.Message; m != "" {
				fmt.Fprintf(d.tw, "      Message:\t%s\n", oneLine(m))
			}
		default:
			fmt.Fprintf(d.tw, "    State:\tWaiting\n")
		}
		if t := cs.LastState.Terminated; t != nil {
			fmt.Fprintf(d.tw, "    Last State:\tTerminated\n      Reason:\t%s\n      Exit Code:\t%d\n", t.Reason, t.ExitCode)
			if t.Message != "" {
				fmt.Fprintf(d.tw, "      Message:\t%s\n", oneLine(t.Message))
			}
		}
		fmt.Fprintf(d.tw, "    Ready:\t%v\n    Restart Count:\t%d\n", cs.Ready, cs.RestartCount)
		if len(c.Resources.Limits) > 0 {
			fmt.Fprintf(d.tw, "    Limits:\t%s\n", resources(c.Resources.Limits))
		}
		if len(c.Resources.Requests) > 0 {
			fmt.Fprintf(d.tw, "    Requests:\t%s\n", resources(c.Resources.Requests))
		}
	}
}

func (d *describer) node(v *core.Node) {
	d.p("Status", NodeStatus(v))
	d.p("Unschedulable", fmt.Sprint(v.Spec.Unschedulable))
	var taints []string
	for _, t := range v.Spec.Taints {
		taints = append(taints, t.String())
	}
	d.p("Taints", orNone(strings.Join(taints, ", ")))
	if v.Spec.PodCIDR != "" {
		d.p("PodCIDR", v.Spec.PodCIDR)
	}
	fmt.Fprintln(d.tw, "Conditions:")
	for _, c := range v.Status.Conditions {
		since := ""
		if c.LastTransitionTime != nil {
			since = Age(c.LastTransitionTime, d.now) + " ago"
		}
		fmt.Fprintf(d.tw, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, oneLine(c.Message), since)
	}
	fmt.Fprintln(d.tw, "Addresses:")
	for _, a := range v.Status.Addresses {
		fmt.Fprintf(d.tw, "  %s:\t%s\n", a.Type, a.Address)
	}
	d.p("Capacity", resources(v.Status.Capacity))
	d.p("Allocatable", resources(v.Status.Allocatable))
	ni := v.Status.NodeInfo
	fmt.Fprintf(d.tw, "System Info:\n  Kernel Version:\t%s\n  OS Image:\t%s\n  Operating System:\t%s\n  Architecture:\t%s\n  Container Runtime:\t%s\n  Agent Version:\t%s\n",
		ni.KernelVersion, ni.OSImage, ni.OperatingSystem, ni.Architecture, ni.ContainerRuntimeVersion, ni.KubeletVersion)
	d.pods(func(pod *core.Pod) bool { return pod.Spec.NodeName == v.Metadata.Name })
}

func (d *describer) deployment(v *core.Deployment) {
	sel := map[string]string{}
	if v.Spec.Selector != nil {
		sel = v.Spec.Selector.MatchLabels
	}
	d.p("Selector", labelString(sel))
	d.p("Replicas", fmt.Sprintf("%d desired | %d updated | %d total | %d available", v.DesiredReplicas(), v.Status.UpdatedReplicas, v.Status.Replicas, v.Status.AvailableReplicas))
	d.p("StrategyType", v.Spec.Strategy.Type)
	if ru := v.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxSurge != nil && ru.MaxUnavailable != nil {
		d.p("RollingUpdateStrategy", fmt.Sprintf("%s max unavailable, %s max surge", ru.MaxUnavailable, ru.MaxSurge))
	}
	templ(d.tw, &v.Spec.Template)
	d.pods(func(pod *core.Pod) bool { o := pod.Owner(); return o != nil && o.UID == v.Metadata.UID })
	notes(d.tw, core.Warnings(v))
}

func (d *describer) daemonSet(v *core.DaemonSet) {
	d.p("Node-Selector", labelString(v.Spec.Template.Spec.NodeSelector))
	s := v.Status
	d.p("Desired Number of Nodes Scheduled", fmt.Sprint(s.DesiredNumberScheduled))
	d.p("Current Number of Nodes Scheduled", fmt.Sprint(s.CurrentNumberScheduled))
	d.p("Number Ready", fmt.Sprint(s.NumberReady))
	templ(d.tw, &v.Spec.Template)
	d.pods(func(pod *core.Pod) bool { o := pod.Owner(); return o != nil && o.UID == v.Metadata.UID })
}

func (d *describer) statefulSet(v *core.StatefulSet) {
	s := v.Status
	d.p("Replicas", fmt.Sprintf("%d desired | %d total | %d ready | %d updated", v.DesiredReplicas(), s.Replicas, s.ReadyReplicas, s.UpdatedReplicas))
	d.p("Pod Management Policy", v.Spec.PodManagementPolicy)
	d.p("Update Strategy", v.Spec.UpdateStrategy.Type)
	if v.Spec.ServiceName != "" {
		d.p("Service", v.Spec.ServiceName)
	}
	for _, t := range v.Spec.VolumeClaimTemplates {
		d.p("Volume Claim", fmt.Sprintf("%s (%s, %s)", t.Metadata.Name, t.StorageClass(), t.Spec.Resources.Requests[core.ResourceStorage]))
	}
	templ(d.tw, &v.Spec.Template)
	d.pods(func(pod *core.Pod) bool { o := pod.Owner(); return o != nil && o.UID == v.Metadata.UID })
}

func (d *describer) service(v *core.Service) {
	d.p("Type", v.Spec.Type)
	d.p("Selector", labelString(v.Spec.Selector))
	d.p("IP", orNone(v.Spec.ClusterIP))
	for _, port := range v.Spec.Ports {
		d.p("Port", fmt.Sprintf("%s %d/%s -> %s", orNone(port.Name), port.Port, port.Protocol, port.TargetPort.String()))
		if port.NodePort != 0 {
			d.p("NodePort", fmt.Sprintf("%d/%s", port.NodePort, port.Protocol))
		}
	}
	if v.Spec.SessionAffinity == core.AffinityClientIP {
		d.p("Session Affinity", fmt.Sprintf("ClientIP (%ds)", v.AffinityTimeout()))
	}
	if v.Spec.ExternalTrafficPolicy != "" {
		d.p("External Traffic Policy", v.Spec.ExternalTrafficPolicy)
	}
	for _, in := range v.Status.LoadBalancer.Ingress {
		d.p("LoadBalancer Ingress", in.IP)
	}
	var ep *core.Endpoints
	for _, o := range d.related {
		if e, ok := o.(*core.Endpoints); ok && e.Metadata.Name == v.Metadata.Name && e.Metadata.Namespace == v.Metadata.Namespace {
			ep = e
		}
	}
	switch {
	case ep != nil && endpointList(ep, 0) != "":
		d.p("Endpoints", endpointList(ep, 0))
		notReady := 0
		for _, sub := range ep.Subsets {
			notReady += len(sub.NotReadyAddresses)
		}
		if notReady > 0 {
			d.p("Not ready", fmt.Sprintf("%d pod(s) match but are not ready: they get no traffic", notReady))
		}
	case len(v.Spec.Selector) == 0:
		d.p("Endpoints", "<none>")
		fmt.Fprintf(d.tw, "Note:\tthe service has no selector: apply an Endpoints object named %q with the addresses it should reach\n", v.Metadata.Name)
	default:
		d.p("Endpoints", "<none>")
		fmt.Fprintf(d.tw, "Note:\tno ready pod matches the selector %s in namespace %q\n", labelString(v.Spec.Selector), v.Metadata.Namespace)
	}
}

// files lists a ConfigMap's or Secret's keys with their sizes.
func (d *describer) files(files map[string][]byte) {
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(d.tw, "Data:")
	for _, k := range keys {
		fmt.Fprintf(d.tw, "  %s:\t%d bytes\n", k, len(files[k]))
	}
}

func notes(tw io.Writer, warnings []string) {
	for _, w := range warnings {
		fmt.Fprintf(tw, "Warning:\t%s\n", w)
	}
}

func templ(tw io.Writer, t *core.PodTemplateSpec) {
	fmt.Fprintf(tw, "Pod Template:\n  Labels:\t%s\n", labelString(t.Metadata.Labels))
	for _, c := range t.Spec.Containers {
		fmt.Fprintf(tw, "  %s:\n    Image:\t%s\n", c.Name, c.Image)
		if len(c.Resources.Limits) > 0 {
			fmt.Fprintf(tw, "    Limits:\t%s\n", resources(c.Resources.Limits))
		}
	}
}

func resources(l core.ResourceList) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + string(l[k])
	}
	return strings.Join(parts, ", ")
}

// terminalSafe writes text for a terminal: control characters other than
// tab and newline, C1 controls included, are shown escaped (\x1b) instead
// of being acted on. What nodes report (kernel versions, messages) is
// printed by people's terminals.
type terminalSafe struct {
	w   io.Writer
	c2  bool // the last byte written was 0xC2, the lead byte of U+0080..U+00BF
	buf []byte
}

func (t *terminalSafe) Write(p []byte) (int, error) {
	t.buf = t.buf[:0]
	for _, b := range p {
		switch {
		case t.c2:
			t.c2 = false
			if b >= 0x80 && b <= 0x9f { // U+0080..U+009F: C1 controls
				t.buf = fmt.Appendf(t.buf, "\\u%04x", b)
				continue
			}
			t.buf = append(t.buf, 0xc2, b)
			continue
		case b == 0xc2:
			t.c2 = true
			continue
		case (b < 0x20 && b != '\t' && b != '\n') || b == 0x7f:
			t.buf = fmt.Appendf(t.buf, "\\x%02x", b)
			continue
		}
		t.buf = append(t.buf, b)
	}
	if _, err := t.w.Write(t.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// jobCompletions renders COMPLETIONS as kubectl does: succeeded/wanted, or
// "n/1 of P" for a work queue of parallelism P.
func jobCompletions(j *core.Job) string {
	s := j.Status.Succeeded
	switch {
	case j.Spec.Completions != nil:
		return fmt.Sprintf("%d/%d", s, *j.Spec.Completions)
	case j.Spec.Parallelism != nil && *j.Spec.Parallelism > 1:
		return fmt.Sprintf("%d/1 of %d", s, *j.Spec.Parallelism)
	}
	return fmt.Sprintf("%d/1", s)
}

// jobDuration is how long the Job ran, or has run so far.
func jobDuration(j *core.Job, now time.Time) string {
	switch st := j.Status; {
	case st.StartTime == nil:
		return ""
	case st.CompletionTime != nil:
		return Age(st.StartTime, st.CompletionTime.Time)
	default:
		return Age(st.StartTime, now)
	}
}

func containerColumns(s *core.PodSpec) []string {
	var names, images []string
	for _, c := range s.Containers {
		names, images = append(names, c.Name), append(images, c.Image)
	}
	return []string{strings.Join(names, ","), strings.Join(images, ",")}
}

func (d *describer) job(v *core.Job) {
	if v.Spec.Parallelism != nil {
		d.p("Parallelism", fmt.Sprint(*v.Spec.Parallelism))
	}
	if v.Spec.Completions != nil {
		d.p("Completions", fmt.Sprint(*v.Spec.Completions))
	} else {
		d.p("Completions", "<unset>")
	}
	d.p("Completion Mode", v.Spec.CompletionMode)
	if v.Spec.Suspend != nil && *v.Spec.Suspend {
		d.p("Suspend", "true")
	}
	st := v.Status
	if st.StartTime != nil {
		d.p("Start Time", st.StartTime.Format(time.RFC3339))
	}
	if st.CompletionTime != nil {
		d.p("Completed At", st.CompletionTime.Format(time.RFC3339))
	}
	if dur := jobDuration(v, d.now); dur != "" {
		d.p("Duration", dur)
	}
	if v.Spec.ActiveDeadlineSeconds != nil {
		d.p("Active Deadline Seconds", fmt.Sprintf("%ds", *v.Spec.ActiveDeadlineSeconds))
	}
	if v.Spec.BackoffLimit != nil {
		d.p("Backoff Limit", fmt.Sprint(*v.Spec.BackoffLimit))
	}
	if v.Spec.TTLSecondsAfterFinished != nil {
		d.p("TTL Seconds After Finished", fmt.Sprint(*v.Spec.TTLSecondsAfterFinished))
	}
	d.p("Pods Statuses", fmt.Sprintf("%d Active / %d Succeeded / %d Failed", st.Active, st.Succeeded, st.Failed))
	if len(st.Conditions) > 0 {
		fmt.Fprintln(d.tw, "Conditions:")
		for _, c := range st.Conditions {
			fmt.Fprintf(d.tw, "  %s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, c.Message)
		}
	}
	templ(d.tw, &v.Spec.Template)
	d.pods(func(pod *core.Pod) bool { o := pod.Owner(); return o != nil && o.UID == v.Metadata.UID })
	notes(d.tw, core.Warnings(v))
}

func (d *describer) cronJob(v *core.CronJob) {
	s := v.Spec
	d.p("Schedule", s.Schedule)
	tz := "<unset> (the master's local zone)"
	if s.TimeZone != nil {
		tz = *s.TimeZone
	}
	d.p("Time Zone", tz)
	d.p("Concurrency Policy", s.ConcurrencyPolicy)
	d.p("Suspend", fmt.Sprint(s.Suspend != nil && *s.Suspend))
	if s.SuccessfulJobsHistoryLimit != nil {
		d.p("Successful Job History Limit", fmt.Sprint(*s.SuccessfulJobsHistoryLimit))
	}
	if s.FailedJobsHistoryLimit != nil {
		d.p("Failed Job History Limit", fmt.Sprint(*s.FailedJobsHistoryLimit))
	}
	if s.StartingDeadlineSeconds != nil {
		d.p("Starting Deadline Seconds", fmt.Sprintf("%ds", *s.StartingDeadlineSeconds))
	} else {
		d.p("Starting Deadline Seconds", "<unset>")
	}
	templ(d.tw, &s.JobTemplate.Spec.Template)
	last := "<unset>"
	if t := v.Status.LastScheduleTime; t != nil {
		last = t.Format(time.RFC3339) + " (" + Age(t, d.now) + " ago)"
	}
	d.p("Last Schedule Time", last)
	if t := v.Status.LastSuccessfulTime; t != nil {
		d.p("Last Successful Time", t.Format(time.RFC3339))
	}
	var active []string
	for _, r := range v.Status.Active {
		active = append(active, r.Name)
	}
	d.p("Active Jobs", orNone(strings.Join(active, ", ")))
	var events []*core.EventObj
	for _, o := range d.related {
		if e, ok := o.(*core.EventObj); ok {
			events = append(events, e)
		}
	}
	fmt.Fprintln(d.tw, "Events:")
	for _, e := range core.EventsFor(events, v.Metadata.UID) {
		at := ""
		if e.LastTimestamp != nil {
			at = e.LastTimestamp.Format(time.RFC3339)
		}
		fmt.Fprintf(d.tw, "  %s\t%s\t%s\t%s\n", e.Type, e.Reason, at, e.Message)
	}
	notes(d.tw, core.Warnings(v))
}
