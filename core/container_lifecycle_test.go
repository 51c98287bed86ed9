package core

import (
	"slices"
	"strings"
	"testing"
)

const lifecyclePod = `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  initContainers:
  - name: init-a
    image: busybox
    command: [sh, -c, "echo a >> /work/order"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: init-b
    image: busybox
    env: [{name: X, valueFrom: {configMapKeyRef: {name: init-cm, key: x}}}]
    envFrom: [{secretRef: {name: init-secret}}]
  containers:
  - name: app
    image: demo:1
    startupProbe: {tcpSocket: {port: 80}, failureThreshold: 30, periodSeconds: 5}
    lifecycle:
      postStart: {exec: {command: [sh, -c, "echo started"]}}
      preStop: {sleep: {seconds: 5}}
    terminationMessagePath: /tmp/last-words
    terminationMessagePolicy: FallbackToLogsOnError
    volumeMounts:
    - {name: work, mountPath: /work}
    - {name: host, mountPath: /host, readOnly: true, mountPropagation: HostToContainer}
  volumes:
  - {name: work, emptyDir: {}}
  - {name: host, hostPath: {path: /}}
`

func decodeOne(t *testing.T, doc string) (Object, error) {
	t.Helper()
	objs, err := DecodeManifests([]ManifestFile{{Name: "f.yaml", Data: []byte(doc)}})
	if err != nil {
		return nil, err
	}
	return objs[0], nil
}

func TestDecodeLifecycle(t *testing.T) {
	obj, err := decodeOne(t, lifecyclePod)
	if err != nil {
		t.Fatal(err)
	}
	s := obj.(*Pod).Spec
	if len(s.InitContainers) != 2 || s.InitContainers[1].ImagePullPolicy != PullIfNotPresent {
		t.Fatalf("init containers not decoded or defaulted: %+v", s.InitContainers)
	}
	c := s.Containers[0]
	if p := c.StartupProbe; p == nil || p.FailureThreshold != 30 || p.SuccessThreshold != 1 || p.TimeoutSeconds != 1 {
		t.Fatalf("startup probe %+v", p)
	}
	if c.Lifecycle.PreStop.Sleep.Seconds != 5 || c.Lifecycle.PostStart.Exec.Command[0] != "sh" {
		t.Fatalf("lifecycle %+v", c.Lifecycle)
	}
	if c.MessagePath() != "/tmp/last-words" || c.VolumeMounts[1].MountPropagation != PropagationHostToContainer {
		t.Fatalf("container %+v", c)
	}
	if (&Container{}).MessagePath() != "/dev/termination-log" {
		t.Fatal("default termination message path")
	}
	// An init container's ConfigMaps and Secrets go to its node too.
	cms, secs := s.ConfigRefs()
	if !slices.Equal(cms, []string{"init-cm"}) || !slices.Equal(secs, []string{"init-secret"}) {
		t.Fatalf("config refs %v %v", cms, secs)
	}
	if imgs := s.Images(); !slices.Equal(imgs, []string{"busybox", "demo:1"}) {
		t.Fatalf("images %v", imgs)
	}
	// Non-default termination message settings no longer warn.
	if w := Warnings(obj); len(w) != 0 {
		t.Fatalf("warnings %q", w)
	}
}

func TestDecodeLifecycleErrors(t *testing.T) {
	replace := func(old, new string) string {
		if !strings.Contains(lifecyclePod, old) {
			t.Fatalf("%q is not in the manifest", old)
		}
		return strings.Replace(lifecyclePod, old, new, 1)
	}
	initProbe := "  - name: init-b\n    image: busybox\n"
	for _, tt := range []struct {
		name, doc, want string
	}{
		{"duplicate name across init and containers", replace("name: init-b", "name: app"),
			`spec.initContainers[1].name: duplicate container name "app"`},
		{"duplicate init name", replace("name: init-b", "name: init-a"), `spec.initContainers[1].name: duplicate container name "init-a"`},
		{"init name", replace("name: init-b", "name: Init_B"), `spec.initContainers[1].name: "Init_B"`},
		{"init image", replace("  - name: init-b\n    image: busybox", "  - name: init-b\n    image: ''"), `spec.initContainers[1].image: required`},
		{"init volume", replace("volumeMounts: [{name: work, mountPath: /work}]", "volumeMounts: [{name: nope, mountPath: /work}]"),
			`spec.initContainers[0].volumeMounts[0].name: volume "nope" is not defined`},
		{"init liveness probe", replace(initProbe, initProbe+"    livenessProbe: {exec: {command: [x]}}\n"),
			`spec.initContainers[1].livenessProbe: may not be set for init containers`},
		{"init readiness probe", replace(initProbe, initProbe+"    readinessProbe: {exec: {command: [x]}}\n"),
			`spec.initContainers[1].readinessProbe: may not be set for init containers`},
		{"init startup probe", replace(initProbe, initProbe+"    startupProbe: {exec: {command: [x]}}\n"),
			`spec.initContainers[1].startupProbe: may not be set for init containers`},
		{"init lifecycle", replace(initProbe, initProbe+"    lifecycle: {preStop: {exec: {command: [x]}}}\n"),
			`spec.initContainers[1].lifecycle: may not be set for init containers`},
		{"init env", replace("key: x}}}]", "key: 'a b'}}}]"), `spec.initContainers[1].env[0].valueFrom.configMapKeyRef.key: "a b" is not a key`},
		{"startup probe action", replace("startupProbe: {tcpSocket: {port: 80},", "startupProbe: {"),
			`spec.containers[0].startupProbe: exactly one of exec, httpGet or tcpSocket`},
		{"startup probe successThreshold", replace("failureThreshold: 30,", "successThreshold: 2, failureThreshold: 30,"),
			`spec.containers[0].startupProbe.successThreshold: 2: must be 1`},
		{"startup probe negative", replace("periodSeconds: 5}", "periodSeconds: -5}"), `spec.containers[0].startupProbe.periodSeconds: must not be negative`},
		{"hook without action", replace("preStop: {sleep: {seconds: 5}}", "preStop: {}"),
			`spec.containers[0].lifecycle.preStop: exactly one of exec, httpGet, sleep or tcpSocket is required`},
		{"hook with two actions", replace("preStop: {sleep: {seconds: 5}}", "preStop: {sleep: {seconds: 5}, exec: {command: [x]}}"),
			`spec.containers[0].lifecycle.preStop: exactly one of`},
		{"hook exec", replace(`postStart: {exec: {command: [sh, -c, "echo started"]}}`, "postStart: {exec: {}}"),
			`spec.containers[0].lifecycle.postStart.exec.command: required`},
		{"hook httpGet port", replace(`postStart: {exec: {command: [sh, -c, "echo started"]}}`, "postStart: {httpGet: {port: 0}}"),
			`spec.containers[0].lifecycle.postStart.httpGet.port: 0 must be between 1 and 65535`},
		{"hook httpGet scheme", replace(`postStart: {exec: {command: [sh, -c, "echo started"]}}`, "postStart: {httpGet: {port: 80, scheme: FTP}}"),
			`spec.containers[0].lifecycle.postStart.httpGet.scheme: "FTP"`},
		{"hook tcpSocket port", replace(`postStart: {exec: {command: [sh, -c, "echo started"]}}`, "postStart: {tcpSocket: {port: http-port-name-too-long}}"),
			`spec.containers[0].lifecycle.postStart.tcpSocket.port`},
		{"sleep seconds", replace("sleep: {seconds: 5}", "sleep: {seconds: 0}"), `spec.containers[0].lifecycle.preStop.sleep.seconds: 0: must be at least 1`},
		{"unknown hook", replace("preStop: {sleep: {seconds: 5}}", "preStart: {sleep: {seconds: 5}}"), `unknown field "spec.containers[0].lifecycle.preStart"`},
		{"termination message path", replace("terminationMessagePath: /tmp/last-words", "terminationMessagePath: last-words"),
			`spec.containers[0].terminationMessagePath: "last-words" must be an absolute path`},
		{"termination message policy", replace("terminationMessagePolicy: FallbackToLogsOnError", "terminationMessagePolicy: Logs"),
			`spec.containers[0].terminationMessagePolicy: "Logs": must be File or FallbackToLogsOnError`},
		{"mount propagation", replace("mountPropagation: HostToContainer", "mountPropagation: Slave"),
			`spec.containers[0].volumeMounts[1].mountPropagation: "Slave": must be None, HostToContainer or Bidirectional`},
		{"bidirectional unprivileged", replace("mountPropagation: HostToContainer", "mountPropagation: Bidirectional"),
			`spec.containers[0].volumeMounts[1].mountPropagation: Bidirectional is only allowed for privileged containers`},
		{"init restartPolicy OnFailure", replace(initProbe, initProbe+"    restartPolicy: OnFailure\n"),
			`spec.initContainers[1].restartPolicy: "OnFailure": an init container's restartPolicy can only be Always (a sidecar)`},
		{"init restartPolicy Never", replace(initProbe, initProbe+"    restartPolicy: Never\n"),
			`spec.initContainers[1].restartPolicy: "Never": an init container's restartPolicy can only be Always`},
		{"sidecar probe checked", replace(initProbe, initProbe+"    restartPolicy: Always\n    startupProbe: {exec: {command: [x]}, successThreshold: 2}\n"),
			`spec.initContainers[1].startupProbe.successThreshold: 2: must be 1`},
		{"sidecar hook checked", replace(initProbe, initProbe+"    restartPolicy: Always\n    lifecycle: {preStop: {}}\n"),
			`spec.initContainers[1].lifecycle.preStop: exactly one of`},
		{"container restartPolicy", replace("    startupProbe:", "    restartPolicy: Always\n    startupProbe:"),
			`spec.containers[0].restartPolicy: may only be set for init containers`},
		{"container restartPolicy Never", replace("    startupProbe:", "    restartPolicy: Never\n    startupProbe:"),
			`spec.containers[0].restartPolicy: may only be set for init containers`},
		{"init mount propagation", replace("volumeMounts: [{name: work, mountPath: /work}]", "volumeMounts: [{name: work, mountPath: /work, mountPropagation: Bidirectional}]"),
			`spec.initContainers[0].volumeMounts[0].mountPropagation: Bidirectional is only allowed for privileged containers`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeOne(t, tt.doc)
			if err == nil {
				t.Fatalf("decoded; want an error containing %q", tt.want)
			}
			if ErrorCode(err) != EINVALID || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q (%s)\nwant it to contain %q", err, ErrorCode(err), tt.want)
			}
		})
	}
	// Bidirectional is fine for a privileged container.
	ok := replace("mountPropagation: HostToContainer", "mountPropagation: Bidirectional")
	ok = strings.Replace(ok, "    terminationMessagePath:", "    securityContext: {privileged: true}\n    terminationMessagePath:", 1)
	if _, err := decodeOne(t, ok); err != nil {
		t.Fatal(err)
	}
	// tcpSocket hooks decode, with a warning.
	obj, err := decodeOne(t, replace(`postStart: {exec: {command: [sh, -c, "echo started"]}}`, "postStart: {tcpSocket: {port: 80}}"))
	if err != nil {
		t.Fatal(err)
	}
	if w := Warnings(obj); len(w) != 1 || !strings.HasPrefix(w[0], "spec.containers[0].lifecycle.postStart.tcpSocket: deprecated") {
		t.Fatalf("warnings %q", w)
	}
}

// An init container with restartPolicy Always is a sidecar: it may have
// probes and hooks (which a plain init container may not), and they are
// defaulted and checked as a container's.
func TestDecodeSidecar(t *testing.T) {
	sidecar := "  - name: init-b\n    image: busybox\n    restartPolicy: Always\n" +
		"    startupProbe: {exec: {command: [test, -f, /work/up]}, periodSeconds: 1}\n" +
		"    readinessProbe: {httpGet: {port: 9000}}\n" +
		"    livenessProbe: {tcpSocket: {port: 9000}}\n" +
		"    lifecycle: {postStart: {exec: {command: [sh, -c, x]}}, preStop: {tcpSocket: {port: 9000}}}\n"
	doc := strings.Replace(lifecyclePod, "  - name: init-b\n    image: busybox\n", sidecar, 1)
	obj, err := decodeOne(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	s := obj.(*Pod).Spec
	c := s.InitContainers[1]
	if !c.IsSidecar() || s.InitContainers[0].IsSidecar() || s.Containers[0].IsSidecar() {
		t.Fatalf("sidecars: %q %q %q", s.InitContainers[0].RestartPolicy, c.RestartPolicy, s.Containers[0].RestartPolicy)
	}
	if p := c.ReadinessProbe; p == nil || p.PeriodSeconds != 10 || p.HTTPGet.Path != "/" || c.StartupProbe.FailureThreshold != 3 {
		t.Fatalf("sidecar probes not defaulted: %+v", c)
	}
	if c.Lifecycle.PostStart == nil || c.Lifecycle.PreStop.TCPSocket == nil {
		t.Fatalf("sidecar lifecycle %+v", c.Lifecycle)
	}
	// A sidecar's tcpSocket hook warns as a container's does.
	if w := Warnings(obj); len(w) != 1 || !strings.HasPrefix(w[0], "spec.initContainers[1].lifecycle.preStop.tcpSocket: deprecated") {
		t.Fatalf("warnings %q", w)
	}
	// The same fields on the plain init container before it are refused.
	plain := strings.Replace(doc, "    command: [sh, -c, \"echo a >> /work/order\"]\n",
		"    command: [sh, -c, \"echo a >> /work/order\"]\n    readinessProbe: {httpGet: {port: 9000}}\n", 1)
	if _, err := decodeOne(t, plain); err == nil || !strings.Contains(err.Error(), "spec.initContainers[0].readinessProbe: may not be set for init containers") {
		t.Fatalf("a plain init container with a readiness probe: %v", err)
	}
}

// A pod is Ready only when its sidecars are too.
func TestPodReadyWithSidecar(t *testing.T) {
	p := &Pod{Spec: PodSpec{
		InitContainers: []Container{{Name: "setup"}, {Name: "proxy", RestartPolicy: ContainerRestartAlways}},
		Containers:     []Container{{Name: "app"}}}}
	p.Status = PodStatus{Phase: PodRunning,
		InitContainerStatuses: []ContainerStatus{{Name: "setup", Ready: false}, {Name: "proxy", Ready: false}},
		ContainerStatuses:     []ContainerStatus{{Name: "app", Ready: true}}}
	if p.Ready() {
		t.Fatal("ready while its sidecar is not")
	}
	p.Status.InitContainerStatuses[1].Ready = true
	if !p.Ready() {
		t.Fatal("not ready with its container and sidecar ready (a plain init container's readiness does not count)")
	}
}

// A pod requests, per resource, the larger of its containers' sum and its
// largest init container's: they run one at a time, before the containers.
// Sidecars run beside both (Kubernetes' rule).
func TestRequestsWithInitContainers(t *testing.T) {
	ctr := func(cpu, mem string) Container {
		c := Container{Name: "c", Image: "i", Resources: ResourceRequirements{Requests: ResourceList{}}}
		if cpu != "" {
			c.Resources.Requests["cpu"] = Quantity(cpu)
		}
		if mem != "" {
			c.Resources.Requests["memory"] = Quantity(mem)
		}
		return c
	}
	side := func(cpu, mem string) Container {
		c := ctr(cpu, mem)
		c.RestartPolicy = ContainerRestartAlways
		return c
	}
	limited := Container{Name: "l", Image: "i", Resources: ResourceRequirements{Limits: ResourceList{"cpu": "2", "memory": "64Mi"}}}
	for _, tt := range []struct {
		name       string
		init, ctrs []Container
		cpu, mem   int64
	}{
		{"no init containers", nil, []Container{ctr("100m", "64Mi"), ctr("200m", "32Mi")}, 300, 96 << 20},
		{"init below the sum", []Container{ctr("250m", "64Mi")}, []Container{ctr("100m", "64Mi"), ctr("200m", "32Mi")}, 300, 96 << 20},
		{"init above the sum", []Container{ctr("1", "512Mi"), ctr("50m", "1Gi")}, []Container{ctr("100m", "64Mi")}, 1000, 1 << 30},
		{"per resource", []Container{ctr("500m", "16Mi")}, []Container{ctr("100m", "64Mi")}, 500, 64 << 20},
		{"init limits as requests", []Container{limited}, []Container{ctr("100m", "")}, 2000, 64 << 20},
		// Sidecars add to the containers' sum, and to the init containers
		// that start after them (not before).
		{"sidecar adds to the sum", []Container{side("100m", "32Mi")}, []Container{ctr("100m", "64Mi")}, 200, 96 << 20},
		{"init after a sidecar", []Container{side("100m", "32Mi"), ctr("500m", "100Mi")}, []Container{ctr("100m", "64Mi")}, 600, 132 << 20},
		{"init before a sidecar", []Container{ctr("500m", "100Mi"), side("100m", "32Mi")}, []Container{ctr("100m", "64Mi")}, 500, 100 << 20},
		{"sidecars accumulate", []Container{side("100m", "10Mi"), side("200m", "20Mi"), ctr("1", "1Mi"), side("300m", "30Mi")},
			[]Container{ctr("50m", "1Mi")}, 1300, 61 << 20},
		{"only sidecars", []Container{side("100m", "10Mi"), side("200m", "20Mi")}, []Container{ctr("", "")}, 300, 30 << 20},
		// The corpus' unifi: mongo as a sidecar of 200m/1Gi beside 510m/2080Mi.
		{"unifi", []Container{side("200m", "1Gi")}, []Container{ctr("500m", "2Gi"), ctr("10m", "32Mi")}, 710, 3<<30 + 32<<20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := PodSpec{InitContainers: tt.init, Containers: tt.ctrs}
			if cpu, mem := s.Requests(); cpu != tt.cpu || mem != tt.mem {
				t.Fatalf("requests %dm %d bytes, want %dm %d", cpu, mem, tt.cpu, tt.mem)
			}
		})
	}
}

// A sidecar's ports are the pod's as its containers' are: a service's
// named targetPort finds them, and its host ports are taken on the node.
// A plain init container's are not.
func TestSidecarPorts(t *testing.T) {
	p := &Pod{Spec: PodSpec{
		InitContainers: []Container{
			{Name: "setup", Ports: []ContainerPort{{Name: "setup", ContainerPort: 7000, HostPort: 7000, Protocol: "TCP"}}},
			{Name: "proxy", RestartPolicy: ContainerRestartAlways, Ports: []ContainerPort{{Name: "proxy", ContainerPort: 15001, HostPort: 15001, Protocol: "TCP"}}},
		},
		Containers: []Container{{Name: "app", Ports: []ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: "TCP"}}}}}}
	for name, want := range map[string]int32{"http": 8080, "proxy": 15001, "setup": 0} {
		if got := targetPort(ServicePort{Protocol: "TCP", TargetPort: IntOrStr(name)}, p); got != want {
			t.Errorf("targetPort %q: %d, want %d", name, got, want)
		}
	}
	if keys := hostPortKeys(p); !slices.Equal(keys, []string{"15001/TCP"}) {
		t.Fatalf("host ports %q", keys)
	}
}
