package core

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

var (
	dnsLabelRe     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsSubdomainRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	labelValueRe   = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
	labelNameRe    = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	envNameRe      = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
)

func invalid(path, format string, args ...any) *Error {
	return Errorf(EINVALID, "%s: %s", path, fmt.Sprintf(format, args...))
}

func validateDNSLabel(path, s string) error {
	if s == "" {
		return invalid(path, "required")
	}
	if len(s) > 63 || !dnsLabelRe.MatchString(s) {
		return invalid(path, "%q must be at most 63 lower-case letters, digits or '-', starting and ending with a letter or digit", s)
	}
	return nil
}

func validateDNSSubdomain(path, s string) error {
	if s == "" {
		return invalid(path, "required")
	}
	if len(s) > 253 || !dnsSubdomainRe.MatchString(s) {
		return invalid(path, "%q must be lower-case letters, digits, '-' or '.', starting and ending with a letter or digit", s)
	}
	return nil
}

func validateLabels(path string, labels map[string]string) error {
	for k, v := range labels {
		name := k
		if prefix, n, ok := strings.Cut(k, "/"); ok {
			if err := validateDNSSubdomain(path, prefix); err != nil {
				return invalid(path, "key %q has an invalid prefix", k)
			}
			name = n
		}
		if len(name) > 63 || !labelNameRe.MatchString(name) {
			return invalid(path, "key %q is not a valid label name", k)
		}
		if len(v) > 63 || !labelValueRe.MatchString(v) {
			return invalid(path+"."+k, "%q is not a valid label value (at most 63 letters, digits, '-', '_' or '.')", v)
		}
	}
	return nil
}

func validateMeta(m *ObjectMeta, namespaced bool, nameIsLabel bool) error {
	var pr problems
	if nameIsLabel {
		pr.add(validateDNSLabel("metadata.name", m.Name))
	} else {
		pr.add(validateDNSSubdomain("metadata.name", m.Name))
	}
	if namespaced {
		pr.add(validateDNSLabel("metadata.namespace", m.Namespace))
	} else if m.Namespace != "" {
		pr.add(invalid("metadata.namespace", "must be empty: this kind is not namespaced"))
	}
	pr.add(validateLabels("metadata.labels", m.Labels))
	for k := range m.Annotations {
		if k == "" {
			pr.add(invalid("metadata.annotations", "empty key"))
		}
	}
	return pr.err()
}

// MaxReplicas bounds one workload: a fleet of Pis runs thousands of pods,
// not millions, and a typo must not make the master create them all.
const MaxReplicas = 10000

// all gathers the problems of errs into one error (nil if none).
func all(errs ...error) error {
	var pr problems
	for _, err := range errs {
		pr.add(err)
	}
	return pr.err()
}

// Validate checks an object as a user submitted it (after SetDefaults).
// It returns an EINVALID *Error naming the offending field.
func Validate(obj Object) error {
	switch o := obj.(type) {
	case *Namespace:
		return validateMeta(&o.Metadata, false, true)
	case *Node:
		if len(o.Metadata.Name) > 63 {
			return invalid("metadata.name", "%q is %d characters: a node's name is also its kubernetes.io/hostname label (at most 63)", o.Metadata.Name, len(o.Metadata.Name))
		}
		return validateMeta(&o.Metadata, false, false)
	case *Pod:
		return all(validateMeta(&o.Metadata, true, false), validatePodSpec("spec", &o.Spec))
	case *Deployment:
		return all(validateMeta(&o.Metadata, true, false), validateDeployment(o))
	case *DaemonSet:
		return all(validateMeta(&o.Metadata, true, false), validateTemplate(o.Spec.Selector, &o.Spec.Template), validateDaemonSetStrategy(o))
	case *StatefulSet:
		return all(validateMeta(&o.Metadata, true, true), validateStatefulSet(o))
	case *Job:
		return all(validateMeta(&o.Metadata, true, false), validateJob(o))
	case *CronJob:
		return all(validateMeta(&o.Metadata, true, false), validateCronJob(o))
	case *Service:
		return all(validateMeta(&o.Metadata, true, true), validateService(o))
	case *Endpoints:
		return all(validateMeta(&o.Metadata, true, true), validateEndpoints(o))
	case *InertObject:
		if o.Kind == KindRole || o.Kind == KindClusterRole || o.Kind == KindRoleBinding || o.Kind == KindClusterRoleBinding {
			// RBAC names are path segments ("system:metrics-reader").
			m := o.Metadata
			var pr problems
			if m.Name == "" || m.Name == "." || m.Name == ".." || strings.ContainsAny(m.Name, "/%") || len(m.Name) > 253 {
				pr.add(invalid("metadata.name", "%q must not be empty, '.' or '..', nor contain '/' or '%%'", m.Name))
			}
			m.Name = "x"
			pr.add(validateMeta(&m, o.Kind.Namespaced(), false))
			return pr.err()
		}
		return validateMeta(&o.Metadata, o.Kind.Namespaced(), false)
	case *ConfigMap:
		return all(validateMeta(&o.Metadata, true, false), validateConfigMap(o))
	case *Secret:
		return all(validateMeta(&o.Metadata, true, false), validateSecret(o))
	case *PersistentVolumeClaim:
		return all(validateMeta(&o.Metadata, true, false), validateClaim(o))
	case *PersistentVolume:
		return all(validateMeta(&o.Metadata, false, false), validateVolume(o))
	case *StorageClass:
		return all(validateMeta(&o.Metadata, false, false), validateStorageClass(o))
	}
	return Errorf(EINVALID, "unsupported object %T", obj)
}

func validateTemplate(sel *LabelSelector, t *PodTemplateSpec) error {
	var pr problems
	if sel.Empty() {
		pr.add(invalid("spec.selector.matchLabels", "required"))
	} else if !pr.add(validateSelector("spec.selector", sel, true)) && !sel.Matches(t.Metadata.Labels) {
		pr.add(invalid("spec.template.metadata.labels", "must match spec.selector %s", sel))
	}
	pr.add(validateLabels("spec.template.metadata.labels", t.Metadata.Labels))
	if t.Spec.RestartPolicy != RestartAlways {
		pr.add(invalid("spec.template.spec.restartPolicy", "%q not supported for workloads: only Always", t.Spec.RestartPolicy))
	}
	// A nodeName pins every pod to that node (KubeEdge's idiom), past
	// the scheduler, as in Kubernetes.
	pr.add(validatePodSpec("spec.template.spec", &t.Spec))
	return pr.err()
}

func validateDeployment(d *Deployment) error {
	var pr problems
	if d.Spec.Replicas != nil && *d.Spec.Replicas < 0 {
		pr.add(invalid("spec.replicas", "must be >= 0, got %d", *d.Spec.Replicas))
	}
	if d.Spec.Replicas != nil && *d.Spec.Replicas > MaxReplicas {
		pr.add(invalid("spec.replicas", "%d is more than this cluster allows for one workload (at most %d)", *d.Spec.Replicas, MaxReplicas))
	}
	pr.add(validateTemplate(d.Spec.Selector, &d.Spec.Template))
	s := d.Spec.Strategy
	switch s.Type {
	case StrategyRecreate:
		if s.RollingUpdate != nil {
			pr.add(invalid("spec.strategy.rollingUpdate", "may not be set when strategy type is Recreate"))
		}
	case StrategyRollingUpdate:
		if ru := s.RollingUpdate; ru != nil {
			surge, err1 := ru.MaxSurge.Scaled(100, true)
			unavail, err2 := ru.MaxUnavailable.Scaled(100, false)
			switch {
			case err1 != nil:
				pr.add(invalid("spec.strategy.rollingUpdate.maxSurge", "%v", err1))
			case err2 != nil:
				pr.add(invalid("spec.strategy.rollingUpdate.maxUnavailable", "%v", err2))
			case surge < 0 || unavail < 0:
				pr.add(invalid("spec.strategy.rollingUpdate", "maxSurge and maxUnavailable must not be negative"))
			case surge == 0 && unavail == 0:
				pr.add(invalid("spec.strategy.rollingUpdate", "maxSurge and maxUnavailable may not both be 0"))
			}
		}
	default:
		pr.add(invalid("spec.strategy.type", "%q: must be RollingUpdate or Recreate", s.Type))
	}
	return pr.err()
}

var protocols = map[string]bool{"TCP": true, "UDP": true, "SCTP": true}

func validatePodSpec(path string, s *PodSpec) error {
	var pr problems
	pr.add(validatePodSecurity(path, s))
	pr.add(validateTolerations(path+".tolerations", s.Tolerations))
	pr.add(validateAffinity(path+".affinity", s.Affinity))
	pr.add(validateSpread(path+".topologySpreadConstraints", s.TopologySpreadConstraints))
	switch s.DNSPolicy {
	case "", "ClusterFirst", "ClusterFirstWithHostNet", "Default":
	case "None":
		if s.DNSConfig == nil || len(s.DNSConfig.Nameservers) == 0 {
			pr.add(invalid(path+".dnsConfig.nameservers", "at least one is required with dnsPolicy None"))
		}
	default:
		pr.add(invalid(path+".dnsPolicy", "%q: must be ClusterFirst, ClusterFirstWithHostNet, Default or None", s.DNSPolicy))
	}
	pr.add(validateDNSConfig(path+".dnsConfig", s.DNSConfig))
	for _, f := range []struct{ name, v string }{{"hostname", s.Hostname}, {"subdomain", s.Subdomain}} {
		if f.v != "" {
			pr.add(validateDNSLabel(path+"."+f.name, f.v))
		}
	}
	if len(s.Containers) == 0 {
		pr.add(invalid(path+".containers", "at least one container is required"))
	}
	if n := len(s.Containers); n > maxContainers {
		return invalid(path+".containers", "%d containers (at most %d)", n, maxContainers)
	}
	if n := len(s.Volumes); n > maxListItems {
		return invalid(path+".volumes", "%d volumes (at most %d)", n, maxListItems)
	}
	volumes := map[string]bool{}
	for i, v := range s.Volumes {
		p := fmt.Sprintf("%s.volumes[%d]", path, i)
		pr.add(validateDNSLabel(p+".name", v.Name))
		if volumes[v.Name] {
			pr.add(invalid(p+".name", "duplicate volume %q", v.Name))
		}
		volumes[v.Name] = true
		pr.add(validateVolumeSource(p, &v))
	}
	switch s.RestartPolicy {
	case RestartAlways, RestartOnFailure, RestartNever:
	default:
		pr.add(invalid(path+".restartPolicy", "%q: must be Always, OnFailure or Never", s.RestartPolicy))
	}
	if g := s.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		pr.add(invalid(path+".terminationGracePeriodSeconds", "must be >= 0"))
	}
	pr.add(validateLabels(path+".nodeSelector", s.NodeSelector))
	names := map[string]bool{}
	for i := range s.Containers {
		c := &s.Containers[i]
		p := fmt.Sprintf("%s.containers[%d]", path, i)
		pr.add(validateDNSLabel(p+".name", c.Name))
		if names[c.Name] {
			pr.add(invalid(p+".name", "duplicate container name %q", c.Name))
		}
		names[c.Name] = true
		pr.add(validateContainer(p, c, volumes))
	}
	pr.add(validateInitContainers(path, s, volumes, names))
	return pr.err()
}

// validateVolumeSource checks the one source of a pod volume.
func validateVolumeSource(p string, v *Volume) error {
	sources := 0
	for _, set := range []bool{v.HostPath != nil, v.EmptyDir != nil, v.ConfigMap != nil, v.Secret != nil, v.PersistentVolumeClaim != nil} {
		if set {
			sources++
		}
	}
	var pr problems
	switch {
	case sources > 1:
		return invalid(p, "only one of hostPath, emptyDir, configMap, secret or persistentVolumeClaim may be set")
	case v.ConfigMap != nil:
		pr.add(validateDNSSubdomain(p+".configMap.name", v.ConfigMap.Name))
		pr.add(validateKeyToPaths(p+".configMap", v.ConfigMap.Items))
		pr.add(validateMode(p+".configMap.defaultMode", v.ConfigMap.DefaultMode))
	case v.Secret != nil:
		pr.add(validateDNSSubdomain(p+".secret.secretName", v.Secret.SecretName))
		pr.add(validateKeyToPaths(p+".secret", v.Secret.Items))
		pr.add(validateMode(p+".secret.defaultMode", v.Secret.DefaultMode))
	case v.PersistentVolumeClaim != nil:
		pr.add(validateDNSSubdomain(p+".persistentVolumeClaim.claimName", v.PersistentVolumeClaim.ClaimName))
	case v.HostPath != nil:
		if !strings.HasPrefix(v.HostPath.Path, "/") {
			pr.add(invalid(p+".hostPath.path", "%q must be an absolute path", v.HostPath.Path))
		}
		switch v.HostPath.Type {
		case "", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket", "CharDevice", "BlockDevice":
		default:
			pr.add(invalid(p+".hostPath.type", "%q is not a hostPath type", v.HostPath.Type))
		}
	case v.EmptyDir != nil:
		if m := v.EmptyDir.Medium; m != "" && m != "Memory" {
			pr.add(invalid(p+".emptyDir.medium", "%q: must be empty or Memory", m))
		}
		if v.EmptyDir.SizeLimit != nil {
			_, err := validQuantity(p+".emptyDir.sizeLimit", *v.EmptyDir.SizeLimit)
			pr.add(err)
		}
	default:
		return invalid(p, "one of hostPath, emptyDir, configMap, secret or persistentVolumeClaim is required")
	}
	return pr.err()
}

func validQuantity(path string, q Quantity) (int64, error) {
	v, err := q.MilliValue()
	if err != nil {
		return 0, invalid(path, "%v", err)
	}
	if v < 0 {
		return 0, invalid(path, "%q must not be negative", string(q))
	}
	return v, nil
}

func validateResources(path string, list ResourceList) (map[string]int64, error) {
	out := map[string]int64{}
	for name, q := range list {
		if name != "cpu" && name != "memory" && name != ResourceEphemeralStorage {
			why := "unsupported resource (only cpu, memory and ephemeral-storage)"
			if strings.Contains(name, "/") {
				why = "extended resources (device plugins) are not supported; a hostPath of the device gives a container a USB stick or serial port"
			}
			return nil, invalid(path+"."+name, "%s", why)
		}
		v, err := validQuantity(path+"."+name, q)
		if err != nil {
			return nil, err
		}
		if name == "memory" {
			if v, _ = q.Value(); v > 0 && v < 4<<20 {
				return nil, invalid(path+".memory", "%q is below the 4Mi minimum a container needs", string(q))
			}
		}
		if name == "cpu" && v > 0 && v < 1 {
			return nil, invalid(path+".cpu", "%q is below 1m", string(q))
		}
		out[name] = v
	}
	return out, nil
}

// Bounds on lists in a pod spec: far beyond what a workload needs, short
// of what costs the master and every node memory.
const (
	maxContainers = 32
	maxListItems  = 1024
)

func validateContainer(p string, c *Container, volumes map[string]bool) error {
	for _, l := range []struct {
		name string
		n    int
	}{{"command", len(c.Command)}, {"args", len(c.Args)}, {"env", len(c.Env)}, {"ports", len(c.Ports)}, {"volumeMounts", len(c.VolumeMounts)}} {
		if l.n > maxListItems {
			return invalid(p+"."+l.name, "%d items (at most %d)", l.n, maxListItems)
		}
	}
	var pr problems
	pr.add(validateSecurityContext(p+".securityContext", c.SecurityContext))
	if strings.TrimSpace(c.Image) == "" {
		pr.add(invalid(p+".image", "required"))
	} else if strings.ContainsAny(c.Image, " \t\n") {
		pr.add(invalid(p+".image", "%q must not contain spaces", c.Image))
	}
	switch c.ImagePullPolicy {
	case PullAlways, PullIfNotPresent, PullNever:
	default:
		pr.add(invalid(p+".imagePullPolicy", "%q: must be Always, IfNotPresent or Never", c.ImagePullPolicy))
	}
	if c.WorkingDir != "" && !strings.HasPrefix(c.WorkingDir, "/") {
		pr.add(invalid(p+".workingDir", "%q must be an absolute path", c.WorkingDir))
	}
	for i, e := range c.Env {
		ep := fmt.Sprintf("%s.env[%d]", p, i)
		if !envNameRe.MatchString(e.Name) {
			pr.add(invalid(ep+".name", "%q is not a valid environment variable name", e.Name))
		}
		pr.add(validateEnvSource(ep, e))
	}
	for i, f := range c.EnvFrom {
		fp := fmt.Sprintf("%s.envFrom[%d]", p, i)
		switch {
		case (f.ConfigMapRef == nil) == (f.SecretRef == nil):
			pr.add(invalid(fp, "exactly one of configMapRef or secretRef is required"))
		case f.ConfigMapRef != nil:
			pr.add(validateDNSSubdomain(fp+".configMapRef.name", f.ConfigMapRef.Name))
		default:
			pr.add(validateDNSSubdomain(fp+".secretRef.name", f.SecretRef.Name))
		}
		if f.Prefix != "" && !envNameRe.MatchString(f.Prefix) {
			pr.add(invalid(fp+".prefix", "%q is not a valid start of an environment variable name", f.Prefix))
		}
	}
	for i, port := range c.Ports {
		pp := fmt.Sprintf("%s.ports[%d]", p, i)
		if port.ContainerPort < 1 || port.ContainerPort > 65535 {
			pr.add(invalid(pp+".containerPort", "%d must be between 1 and 65535", port.ContainerPort))
		}
		if port.HostPort < 0 || port.HostPort > 65535 {
			pr.add(invalid(pp+".hostPort", "%d must be between 0 and 65535", port.HostPort))
		}
		if !protocols[port.Protocol] {
			pr.add(invalid(pp+".protocol", "%q: must be TCP, UDP or SCTP", port.Protocol))
		}
	}
	req, err := validateResources(p+".resources.requests", c.Resources.Requests)
	pr.add(err)
	lim, err := validateResources(p+".resources.limits", c.Resources.Limits)
	pr.add(err)
	for _, name := range []string{"cpu", "memory"} {
		if r, ok := req[name]; ok {
			if l, ok := lim[name]; ok && r > l {
				pr.add(invalid(p+".resources.requests."+name, "%q must be less than or equal to the %s limit %q",
					string(c.Resources.Requests[name]), name, string(c.Resources.Limits[name])))
			}
		}
	}
	for _, probe := range []struct {
		name  string
		probe *Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}} {
		if probe.probe != nil {
			pr.add(validateProbe(p+"."+probe.name, probe.probe))
		}
	}
	for i, m := range c.VolumeMounts {
		mp := fmt.Sprintf("%s.volumeMounts[%d]", p, i)
		if !volumes[m.Name] {
			pr.add(invalid(mp+".name", "volume %q is not defined in volumes", m.Name))
		}
		if !strings.HasPrefix(m.MountPath, "/") {
			pr.add(invalid(mp+".mountPath", "%q must be an absolute path", m.MountPath))
		}
		if strings.HasPrefix(m.SubPath, "/") || strings.Contains(m.SubPath, "..") {
			pr.add(invalid(mp+".subPath", "%q must be a relative path without '..'", m.SubPath))
		}
	}
	pr.add(validateContainerLifecycle(p, c))
	return pr.err()
}

func validatePort(path string, v IntOrString) error {
	if v.IsString {
		if err := validateDNSLabel(path, v.StrVal); err != nil || len(v.StrVal) > 15 {
			return invalid(path, "%q must be a port number or a port name", v.StrVal)
		}
		return nil
	}
	if v.IntVal < 1 || v.IntVal > 65535 {
		return invalid(path, "%d must be between 1 and 65535", v.IntVal)
	}
	return nil
}

func validateProbe(p string, pr *Probe) error {
	n := 0
	if pr.Exec != nil {
		n++
		if len(pr.Exec.Command) == 0 {
			return invalid(p+".exec.command", "required")
		}
	}
	if pr.HTTPGet != nil {
		n++
		if err := validatePort(p+".httpGet.port", pr.HTTPGet.Port); err != nil {
			return err
		}
		if s := pr.HTTPGet.Scheme; s != "" && s != "HTTP" && s != "HTTPS" {
			return invalid(p+".httpGet.scheme", "%q: must be HTTP or HTTPS", s)
		}
		if err := validateHTTPHeaders(p+".httpGet.httpHeaders", pr.HTTPGet.HTTPHeaders); err != nil {
			return err
		}
	}
	if pr.TCPSocket != nil {
		n++
		if err := validatePort(p+".tcpSocket.port", pr.TCPSocket.Port); err != nil {
			return err
		}
	}
	if n != 1 {
		return invalid(p, "exactly one of exec, httpGet or tcpSocket is required")
	}
	for name, v := range map[string]int32{"initialDelaySeconds": pr.InitialDelaySeconds, "periodSeconds": pr.PeriodSeconds,
		"timeoutSeconds": pr.TimeoutSeconds, "successThreshold": pr.SuccessThreshold, "failureThreshold": pr.FailureThreshold} {
		if v < 0 {
			return invalid(p+"."+name, "must not be negative")
		}
	}
	return nil
}

func validateEnvSource(p string, e EnvVar) error {
	v := e.ValueFrom
	if v == nil {
		return nil
	}
	if e.Value != "" {
		return invalid(p+".valueFrom", "may not be set together with value")
	}
	n := 0
	for _, set := range []bool{v.ConfigMapKeyRef != nil, v.SecretKeyRef != nil, v.FieldRef != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return invalid(p+".valueFrom", "exactly one of configMapKeyRef, secretKeyRef or fieldRef is required (resourceFieldRef is not supported)")
	}
	for _, r := range []struct {
		name string
		ref  *KeySelector
	}{{"configMapKeyRef", v.ConfigMapKeyRef}, {"secretKeyRef", v.SecretKeyRef}} {
		if r.ref == nil {
			continue
		}
		if err := validateDNSSubdomain(p+".valueFrom."+r.name+".name", r.ref.Name); err != nil {
			return err
		}
		if !configKeyRe.MatchString(r.ref.Key) {
			return invalid(p+".valueFrom."+r.name+".key", "%q is not a key", r.ref.Key)
		}
	}
	if f := v.FieldRef; f != nil && !slices.Contains(FieldPaths, f.FieldPath) && !strings.HasPrefix(f.FieldPath, "metadata.labels['") &&
		!strings.HasPrefix(f.FieldPath, "metadata.annotations['") {
		return invalid(p+".valueFrom.fieldRef.fieldPath", "%q is not supported (use %s, metadata.labels['KEY'] or metadata.annotations['KEY'])",
			f.FieldPath, strings.Join(FieldPaths, ", "))
	}
	return nil
}

func validateService(s *Service) error {
	var pr problems
	switch s.Spec.Type {
	case ServiceClusterIP, ServiceNodePort, ServiceLoadBalancer:
	default:
		pr.add(invalid("spec.type", "%q: must be ClusterIP, NodePort or LoadBalancer", s.Spec.Type))
	}
	pr.add(validateLabels("spec.selector", s.Spec.Selector))
	headless := s.Spec.ClusterIP == ClusterIPNone
	if len(s.Spec.Ports) == 0 && !headless {
		pr.add(invalid("spec.ports", "at least one port is required"))
	}
	if headless && s.Spec.Type != ServiceClusterIP {
		pr.add(invalid("spec.clusterIP", "None (headless) is only valid for type ClusterIP"))
	}
	names := map[string]bool{}
	for i, p := range s.Spec.Ports {
		pp := fmt.Sprintf("spec.ports[%d]", i)
		if len(s.Spec.Ports) > 1 && p.Name == "" {
			pr.add(invalid(pp+".name", "required when a service has more than one port"))
		}
		if p.Name != "" {
			pr.add(validateDNSLabel(pp+".name", p.Name))
		}
		if names[p.Name] {
			pr.add(invalid(pp+".name", "duplicate port name %q", p.Name))
		}
		names[p.Name] = true
		if p.Port < 1 || p.Port > 65535 {
			pr.add(invalid(pp+".port", "%d must be between 1 and 65535", p.Port))
		}
		if !protocols[p.Protocol] || p.Protocol == "SCTP" {
			pr.add(invalid(pp+".protocol", "%q: must be TCP or UDP", p.Protocol))
		}
		pr.add(validatePort(pp+".targetPort", p.TargetPort))
		if p.NodePort != 0 {
			if s.Spec.Type == ServiceClusterIP {
				pr.add(invalid(pp+".nodePort", "may only be set for type NodePort or LoadBalancer"))
			}
			if p.NodePort < 1 || p.NodePort > 65535 {
				pr.add(invalid(pp+".nodePort", "%d is not a port number", p.NodePort))
			}
		}
		for _, q := range s.Spec.Ports[:i] {
			if q.Port == p.Port && q.Protocol == p.Protocol {
				pr.add(invalid(pp+".port", "%d/%s is listed twice", p.Port, p.Protocol))
			}
			if p.NodePort != 0 && q.NodePort == p.NodePort && q.Protocol == p.Protocol {
				pr.add(invalid(pp+".nodePort", "%d/%s is listed twice", p.NodePort, p.Protocol))
			}
		}
	}
	if ip := s.Spec.ClusterIP; ip != "" && !headless {
		if a, err := netip.ParseAddr(ip); err != nil || !a.Is4() {
			pr.add(invalid("spec.clusterIP", "%q is not an IPv4 address or None", ip))
		}
	}
	if ips := s.Spec.ClusterIPs; len(ips) > 0 && (len(ips) > 1 || (s.Spec.ClusterIP != "" && ips[0] != s.Spec.ClusterIP)) {
		pr.add(invalid("spec.clusterIPs", "%v must be one address equal to spec.clusterIP (this cluster is IPv4 only)", ips))
	}
	for i, f := range s.Spec.IPFamilies {
		if f != "IPv4" {
			pr.add(invalid(fmt.Sprintf("spec.ipFamilies[%d]", i), "%q: this cluster is IPv4 only", f))
		}
	}
	switch s.Spec.IPFamilyPolicy {
	case "", "SingleStack", "PreferDualStack":
	default:
		pr.add(invalid("spec.ipFamilyPolicy", "%q: this cluster is IPv4 only (SingleStack or PreferDualStack)", s.Spec.IPFamilyPolicy))
	}
	switch s.Spec.SessionAffinity {
	case AffinityNone, AffinityClientIP:
	default:
		pr.add(invalid("spec.sessionAffinity", "%q: must be None or ClientIP", s.Spec.SessionAffinity))
	}
	if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		if t := *c.ClientIP.TimeoutSeconds; t < 1 || t > 86400 {
			pr.add(invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", "%d must be between 1 and 86400", t))
		}
	}
	switch s.Spec.ExternalTrafficPolicy {
	case "":
	case TrafficPolicyCluster, TrafficPolicyLocal:
		if s.Spec.Type == ServiceClusterIP {
			pr.add(invalid("spec.externalTrafficPolicy", "may only be set for type NodePort or LoadBalancer"))
		}
	default:
		pr.add(invalid("spec.externalTrafficPolicy", "%q: must be Cluster or Local", s.Spec.ExternalTrafficPolicy))
	}
	for i, e := range s.Spec.ExternalIPs {
		if a, err := netip.ParseAddr(e); err != nil || !a.Is4() || a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() {
			pr.add(invalid(fmt.Sprintf("spec.externalIPs[%d]", i), "%q is not a usable IPv4 address", e))
		}
	}
	if s.Spec.LoadBalancerIP != "" && s.Spec.Type != ServiceLoadBalancer {
		pr.add(invalid("spec.loadBalancerIP", "may only be set for type LoadBalancer"))
	}
	return pr.err()
}

// validateEndpoints checks an Endpoints object applied by hand (for a
// service without a selector, pointing at addresses outside the cluster).
func validateEndpoints(e *Endpoints) error {
	var pr problems
	for i, sub := range e.Subsets {
		sp := fmt.Sprintf("subsets[%d]", i)
		for field, addrs := range map[string][]EndpointAddress{"addresses": sub.Addresses, "notReadyAddresses": sub.NotReadyAddresses} {
			for j, a := range addrs {
				if ip, err := netip.ParseAddr(a.IP); err != nil || !ip.Is4() || ip.IsLoopback() || ip.IsUnspecified() || ip.IsMulticast() {
					pr.add(invalid(fmt.Sprintf("%s.%s[%d].ip", sp, field, j), "%q is not a usable IPv4 address", a.IP))
				}
			}
		}
		if len(sub.Ports) == 0 {
			pr.add(invalid(sp+".ports", "at least one port is required"))
		}
		for j, p := range sub.Ports {
			pp := fmt.Sprintf("%s.ports[%d]", sp, j)
			if p.Port < 1 || p.Port > 65535 {
				pr.add(invalid(pp+".port", "%d must be between 1 and 65535", p.Port))
			}
			if p.Protocol != "TCP" && p.Protocol != "UDP" {
				pr.add(invalid(pp+".protocol", "%q: must be TCP or UDP", p.Protocol))
			}
		}
	}
	return pr.err()
}

var httpTokenRe = regexp.MustCompile("^[-A-Za-z0-9!#$%&'*+.^_`|~]+$")

func validateHTTPHeaders(p string, headers []HTTPHeader) error {
	for i, h := range headers {
		if !httpTokenRe.MatchString(h.Name) {
			return invalid(fmt.Sprintf("%s[%d].name", p, i), "%q is not an HTTP header name", h.Name)
		}
		if strings.IndexFunc(h.Value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) >= 0 {
			return invalid(fmt.Sprintf("%s[%d].value", p, i), "must not contain control characters")
		}
	}
	return nil
}

// validateDNSConfig checks a pod's dnsConfig with Kubernetes' limits: at
// most 3 nameservers (what a resolver reads) and 32 search domains.
func validateDNSConfig(p string, c *PodDNSConfig) error {
	if c == nil {
		return nil
	}
	var pr problems
	if len(c.Nameservers) > 3 {
		pr.add(invalid(p+".nameservers", "%d nameservers (at most 3)", len(c.Nameservers)))
	}
	for i, ns := range c.Nameservers {
		if _, err := netip.ParseAddr(ns); err != nil {
			pr.add(invalid(fmt.Sprintf("%s.nameservers[%d]", p, i), "%q is not an IP address", ns))
		}
	}
	if len(c.Searches) > 32 {
		pr.add(invalid(p+".searches", "%d search domains (at most 32)", len(c.Searches)))
	}
	for i, d := range c.Searches {
		if d != "." {
			pr.add(validateDNSSubdomain(fmt.Sprintf("%s.searches[%d]", p, i), strings.ToLower(strings.TrimSuffix(d, "."))))
		}
	}
	for i, o := range c.Options {
		if o.Name == "" || strings.ContainsAny(o.Name, " \t:") {
			pr.add(invalid(fmt.Sprintf("%s.options[%d].name", p, i), "%q is not a resolver option", o.Name))
		}
	}
	return pr.err()
}

func validateDaemonSetStrategy(ds *DaemonSet) error {
	u := ds.Spec.UpdateStrategy
	switch u.Type {
	case StrategyRollingUpdate:
		if ru := u.RollingUpdate; ru != nil {
			var pr problems
			for name, v := range map[string]*IntOrString{"maxUnavailable": ru.MaxUnavailable, "maxSurge": ru.MaxSurge} {
				if v == nil {
					continue
				}
				if n, err := v.Scaled(100, true); err != nil || n < 0 {
					pr.add(invalid("spec.updateStrategy.rollingUpdate."+name, "must be a non-negative number or percentage"))
				}
			}
			return pr.err()
		}
	case DaemonSetOnDelete:
		if u.RollingUpdate != nil {
			return invalid("spec.updateStrategy.rollingUpdate", "may not be set when the type is OnDelete")
		}
	default:
		return invalid("spec.updateStrategy.type", "%q: must be RollingUpdate or OnDelete", u.Type)
	}
	return nil
}
