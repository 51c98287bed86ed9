package core

import (
	"fmt"
	"strings"
	"testing"
)

const deployYAML = `# a comment
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: edge.local/demo:latest
        command: ["/bin/sh", "-c", "sleep 3600"]
        env: [{name: A, value: "1"}]
        ports: [{containerPort: 8080}]
        resources:
          limits: {memory: 32Mi, cpu: 250m}
        readinessProbe:
          tcpSocket: {port: 8080}
        volumeMounts: [{name: data, mountPath: /data}]
      volumes:
      - name: data
        emptyDir: {}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
`

func TestDecodeManifests(t *testing.T) {
	objs, err := DecodeManifests([]ManifestFile{{Name: "app.yaml", Data: []byte(deployYAML)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 {
		t.Fatalf("got %d objects, want 2", len(objs))
	}
	d := objs[0].(*Deployment)
	if d.Metadata.Namespace != "default" || *d.Spec.Replicas != 2 {
		t.Fatalf("deployment not defaulted: %+v", d.Metadata)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.ImagePullPolicy != PullIfNotPresent || c.Ports[0].Protocol != "TCP" || d.Spec.Template.Spec.RestartPolicy != RestartAlways {
		t.Fatalf("container not defaulted: %+v", c)
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru.MaxSurge.String() != "1" || ru.MaxUnavailable.String() != "0" {
		t.Fatalf("strategy: %+v", ru)
	}
	svc := objs[1].(*Service)
	if svc.Spec.Type != ServiceClusterIP || svc.Spec.Ports[0].TargetPort.IntVal != 8080 {
		t.Fatalf("service: %+v", svc.Spec)
	}
}

func TestDecodeManifestErrors(t *testing.T) {
	for _, tt := range []struct {
		name, doc, want string
	}{
		{"unknown top field", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspex: {}\n", `unknown field "spex"`},
		{"unknown nested field", strings.Replace(deployYAML, "command:", "comand:", 1),
			`unknown field "spec.template.spec.containers[0].comand"`},
		{"unknown probe field", strings.Replace(deployYAML, "tcpSocket: {port: 8080}", "tcpSocket: {port: 8080, hots: x}", 1),
			`unknown field "spec.template.spec.containers[0].readinessProbe.tcpSocket.hots"`},
		{"env valueFrom", strings.Replace(deployYAML, `value: "1"`, `valueFrom: {}`, 1),
			"env[0].valueFrom: exactly one of configMapKeyRef, secretKeyRef or fieldRef is required"},
		{"bad quantity", strings.Replace(deployYAML, "memory: 32Mi", "memory: 32MB", 1),
			`spec.template.spec.containers[0].resources.limits.memory: quantity "32MB" has an unknown suffix`},
		{"bad cpu", strings.Replace(deployYAML, "cpu: 250m", "cpu: lots", 1),
			`spec.template.spec.containers[0].resources.limits.cpu`},
		{"wrong type", strings.Replace(deployYAML, "replicas: 2", "replicas: two", 1), `spec.replicas: expected a whole number, got "two"`},
		{"missing image", strings.Replace(deployYAML, "image: edge.local/demo:latest", "image: ''", 1),
			`spec.template.spec.containers[0].image: required`},
		{"selector mismatch", strings.Replace(deployYAML, "labels: {app: web}\n    spec:", "labels: {app: other}\n    spec:", 1),
			`spec.template.metadata.labels: must match`},
		{"bad name", strings.Replace(deployYAML, "name: web\n  labels", "name: Web_1\n  labels", 1), `metadata.name: "Web_1"`},
		{"owner refs", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, ownerReferences: []}\nspec: {containers: [{name: c, image: i}]}\n",
			`field "metadata.ownerReferences" is not supported`},
		{"apiVersion", strings.Replace(deployYAML, "apps/v1", "apps/v2", 1), `apiVersion "apps/v2" is not supported`},
		{"kind", "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: x}\n", `kind: "Gateway" is not supported`},
		{"capability", strings.Replace(deployYAML, "        ports: [{containerPort: 8080}]\n", "        ports: [{containerPort: 8080}]\n        securityContext: {capabilities: {add: [NET_FLY]}}\n", 1), `capabilities.add[0]: "NET_FLY" is not a Linux capability`},
		{"seccomp", strings.Replace(deployYAML, "    spec:\n", "    spec:\n      securityContext: {seccompProfile: {type: Localhost}}\n", 1), `Localhost profiles are not supported`},
		{"configmap key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {\"a/b\": x}\n", `key "a/b": must be letters`},
		{"secret size", "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {big: \"" + strings.Repeat("x", 1<<20) + "\"}\n", `at most 1048576 (1 MiB)`},
		{"secret ref", strings.Replace(deployYAML, `value: "1"`, `valueFrom: {secretKeyRef: {name: s, key: "a b"}}`, 1), `secretKeyRef.key: "a b" is not a key`},
		{"items path", strings.Replace(deployYAML, "emptyDir: {}", "configMap: {name: c, items: [{key: k, path: ../x}]}", 1), `must be a relative path inside the volume`},
		{"node", "apiVersion: v1\nkind: Node\nmetadata: {name: x}\n", `kind: "Node" is not supported`},
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", `kind: required`},
		{"not yaml", "a: [b\n", `not valid YAML`},
		{"request over limit", strings.Replace(deployYAML, "limits: {memory: 32Mi, cpu: 250m}", "limits: {memory: 32Mi}\n          requests: {memory: 64Mi}", 1),
			`resources.requests.memory: "64Mi" must be less than or equal to the memory limit "32Mi"`},
		{"unknown resource", strings.Replace(deployYAML, "cpu: 250m", "nvidia.com/gpu: 1", 1), `limits.nvidia.com/gpu: extended resources (device plugins) are not supported`},
		{"volume mount", strings.Replace(deployYAML, "name: data, mountPath", "name: nope, mountPath", 1), `volume "nope" is not defined`},
		{"probe", strings.Replace(deployYAML, "tcpSocket: {port: 8080}", "{}", 1), `exactly one of exec, httpGet or tcpSocket`},
		{"nodePort", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 70000}]}\n", `nodePort: 70000 is not a port number`},
		{"nodePort on ClusterIP", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, nodePort: 30080}]}\n", `nodePort: may only be set for type NodePort or LoadBalancer`},
		{"clusterIP", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.43.0.999, ports: [{port: 80}]}\n", `spec.clusterIP: "10.43.0.999" is not an IPv4 address or None`},
		{"headless NodePort", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: NodePort, clusterIP: None, ports: [{port: 80}]}\n", `None (headless) is only valid for type ClusterIP`},
		{"affinity", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {sessionAffinity: Sticky, ports: [{port: 80}]}\n", `spec.sessionAffinity: "Sticky": must be None or ClientIP`},
		{"traffic policy", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {externalTrafficPolicy: Local, ports: [{port: 80}]}\n", `spec.externalTrafficPolicy: may only be set for type NodePort or LoadBalancer`},
		{"endpoints ip", "apiVersion: v1\nkind: Endpoints\nmetadata: {name: s}\nsubsets: [{addresses: [{ip: 127.0.0.1}], ports: [{port: 80}]}]\n", `subsets[0].addresses[0].ip: "127.0.0.1" is not a usable IPv4 address`},
		{"strategy", strings.Replace(deployYAML, "type: RollingUpdate", "type: BlueGreen", 1), `spec.strategy.type: "BlueGreen"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := DecodeManifests([]ManifestFile{{Name: "f.yaml", Data: []byte(tt.doc)}})
			if err == nil {
				t.Fatalf("decoded %d objects, want error containing %q", len(objs), tt.want)
			}
			if ErrorCode(err) != EINVALID {
				t.Fatalf("code %q, want %q", ErrorCode(err), EINVALID)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "f.yaml") {
				t.Fatalf("error %q\nwant it to name f.yaml and contain %q", err, tt.want)
			}
			if objs != nil {
				t.Fatal("objects returned with an error")
			}
		})
	}
}

func TestDecodeDuplicate(t *testing.T) {
	doc := "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"
	_, err := DecodeManifests([]ManifestFile{{Name: "x.yaml", Data: []byte(doc)}})
	if err == nil || !strings.Contains(err.Error(), "x.yaml: document 2: namespace \"a\" is defined twice") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseKind(t *testing.T) {
	for in, want := range map[string]Kind{"po": KindPod, "Pods": KindPod, "deploy": KindDeployment, "ds": KindDaemonSet,
		"svc": KindService, "no": KindNode, "node": KindNode, "ns": KindNamespace, "cm": KindConfigMap, "secrets": KindSecret, "ep": KindEndpoints} {
		if k, err := ParseKind(in); err != nil || k != want {
			t.Errorf("ParseKind(%q) = %q, %v", in, k, err)
		}
	}
	if _, err := ParseKind("gateways"); ErrorCode(err) != EINVALID {
		t.Fatal("gateways accepted")
	}
}

func TestNormalizeImage(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                "docker.io/library/busybox:latest",
		"busybox:1.36":           "docker.io/library/busybox:1.36",
		"user/app":               "docker.io/user/app:latest",
		"edge.local/demo:latest": "edge.local/demo:latest",
		"localhost:5000/x":       "localhost:5000/x:latest",
		"127.0.0.1:5000/a/b:v1":  "127.0.0.1:5000/a/b:v1",
		"busybox@sha256:abc":     "docker.io/library/busybox@sha256:abc",
		// Docker Hub named in full: the image a node stored as
		// docker.io/library/busybox:latest (the pod's image "busybox") is
		// the one a pod naming docker.io/busybox uses, for the image GC too.
		"docker.io/busybox":         "docker.io/library/busybox:latest",
		"index.docker.io/busybox:1": "docker.io/library/busybox:1",
		"docker.io/user/app":        "docker.io/user/app:latest",
		"docker.io/library/busybox": "docker.io/library/busybox:latest",
	} {
		if got := NormalizeImage(in); got != want {
			t.Errorf("NormalizeImage(%q) = %q, want %q", in, got, want)
		}
	}
}

// RBAC kinds and ServiceAccounts are stored as written, with a warning.
func TestInertKinds(t *testing.T) {
	doc := "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get]\n"
	objs, err := DecodeManifests([]ManifestFile{{Name: "r.yaml", Data: []byte(doc)}})
	if err != nil {
		t.Fatal(err)
	}
	o := objs[0].(*InertObject)
	if o.Kind.Namespaced() || string(o.Body["rules"]) == "" || len(Warnings(o)) != 1 {
		t.Fatalf("%+v %v", o, Warnings(o))
	}
	c := Clone(o)
	if !JSONEqual(c.Body, o.Body) || c.Metadata.Name != "reader" {
		t.Fatalf("clone lost the body: %+v", c)
	}
	if _, err := DecodeManifests([]ManifestFile{{Name: "r.yaml", Data: []byte(strings.Replace(doc, "{name: reader}", "{name: reader, nmae: x}", 1))}}); err == nil {
		t.Fatal("an unknown metadata field accepted")
	}
}

// Every problem of a document is reported in one error, unknown fields and
// invalid values alike, each with its field path.
func TestDecode_EveryProblemAtOnce(t *testing.T) {
	doc := `apiVersion: apps/v1
kind: Deployment
metadata: {name: Web_1}
spec:
  replicas: -1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      colour: blue
      containers:
      - name: c
        image: ""
        ports: [{containerPort: 70000}]
        volumeMounts: [{name: nope, mountPath: /data, subPath: ../x}]
        resources: {limits: {memory: 1Mi}}
`
	_, err := DecodeManifests([]ManifestFile{{Name: "web.yaml", Data: []byte(doc)}})
	if ErrorCode(err) != EINVALID {
		t.Fatalf("err %v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`web.yaml: Deployment "Web_1": `,
		`unknown field "spec.template.spec.colour"`,
		`metadata.name: "Web_1"`,
		"spec.replicas: must be >= 0, got -1",
		"spec.template.spec.containers[0].image: required",
		"spec.template.spec.containers[0].ports[0].containerPort: 70000",
		`spec.template.spec.containers[0].volumeMounts[0].name: volume "nope" is not defined`,
		`spec.template.spec.containers[0].volumeMounts[0].subPath: "../x" must be a relative path without '..'`,
		`spec.template.spec.containers[0].resources.limits.memory: "1Mi" is below the 4Mi minimum`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	// A document with very many problems (50 unknown fields, too many
	// containers) lists the first ones and a count.
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n")
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&b, "  - {name: c%d, image: x, bogus%d: 1}\n", i, i)
	}
	_, err = DecodeManifests([]ManifestFile{{Name: "p.yaml", Data: []byte(b.String())}})
	if err == nil || !strings.Contains(err.Error(), "and 31 more") || strings.Count(err.Error(), "unknown field") != 20 {
		t.Fatalf("50 problems: %v", err)
	}
}

func TestDecode_ProbeHTTPHeaders(t *testing.T) {
	doc := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: x\n    livenessProbe:\n      httpGet: {path: /, port: 80, httpHeaders: [{name: X-Ok, value: a}, {name: 'bad name', value: b}]}\n"
	_, err := DecodeManifests([]ManifestFile{{Name: "p.yaml", Data: []byte(doc)}})
	if err == nil || !strings.Contains(err.Error(), `spec.containers[0].livenessProbe.httpGet.httpHeaders[1].name: "bad name" is not an HTTP header name`) {
		t.Fatalf("err %v", err)
	}
	ok := strings.Replace(doc, ", {name: 'bad name', value: b}", "", 1)
	objs, err := DecodeManifests([]ManifestFile{{Name: "p.yaml", Data: []byte(ok)}})
	if err != nil || objs[0].(*Pod).Spec.Containers[0].LivenessProbe.HTTPGet.HTTPHeaders[0] != (HTTPHeader{Name: "X-Ok", Value: "a"}) {
		t.Fatalf("%v %v", objs, err)
	}
}

func TestDecode_EphemeralStorage(t *testing.T) {
	doc := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: x\n    resources: {requests: {ephemeral-storage: 1Gi, memory: 64Mi}, limits: {ephemeral-storage: 2Gi}}\n"
	objs, err := DecodeManifests([]ManifestFile{{Name: "p.yaml", Data: []byte(doc)}})
	if err != nil {
		t.Fatal(err)
	}
	if w := Warnings(objs[0]); len(w) != 1 || !strings.Contains(w[0], "ephemeral-storage is not enforced") {
		t.Fatalf("warnings %q", w)
	}
	if cpu, mem := objs[0].(*Pod).Spec.Requests(); cpu != 0 || mem != 64<<20 {
		t.Fatalf("requests %d %d", cpu, mem)
	}
	gpu := strings.Replace(doc, "ephemeral-storage: 2Gi", "nvidia.com/gpu: 1", 1)
	if _, err := DecodeManifests([]ManifestFile{{Name: "p.yaml", Data: []byte(gpu)}}); err == nil || !strings.Contains(err.Error(), "limits.nvidia.com/gpu: extended resources") {
		t.Fatalf("gpu: %v", err)
	}
}

func TestDecode_DNSConfig(t *testing.T) {
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: x}]\n"
	if _, err := DecodeManifests([]ManifestFile{{Name: "p.yaml", Data: []byte(pod + "  dnsPolicy: None\n  dnsConfig: {nameservers: [192.168.1.1], searches: [lan], options: [{name: ndots, value: \"2\"}]}\n")}}); err != nil {
		t.Fatal(err)
	}
	for doc, want := range map[string]string{
		pod + "  dnsPolicy: None\n":                                                "spec.dnsConfig.nameservers: at least one is required with dnsPolicy None",
		pod + "  dnsConfig: {nameservers: [pihole]}\n":                             `spec.dnsConfig.nameservers[0]: "pihole" is not an IP address`,
		pod + "  dnsConfig: {nameservers: [1.1.1.1, 1.0.0.1, 8.8.8.8, 8.8.4.4]}\n": "spec.dnsConfig.nameservers: 4 nameservers (at most 3)",
		pod + "  dnsConfig: {options: [{name: ''}]}\n":                             "spec.dnsConfig.options[0].name",
		pod + "  dnsPolicy: Custom\n":                                              `spec.dnsPolicy: "Custom"`,
	} {
		if _, err := DecodeManifests([]ManifestFile{{Name: "p.yaml", Data: []byte(doc)}}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", doc, err, want)
		}
	}
}

func TestDecode_SpreadAndSelectors(t *testing.T) {
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: p}}\nspec:\n  containers: [{name: c, image: x}]\n"
	for doc, want := range map[string]string{
		pod + "  topologySpreadConstraints: [{maxSkew: 0, topologyKey: zone, whenUnsatisfiable: Sometimes}]\n":                                                                                            "spec.topologySpreadConstraints[0].maxSkew: 0 must be at least 1; spec.topologySpreadConstraints[0].whenUnsatisfiable",
		pod + "  topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchExpressions: [{key: app, operator: Like}]}}]\n":                       `labelSelector.matchExpressions[0].operator: "Like"`,
		pod + "  affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: kubernetes.io/hostname, labelSelector: {matchExpressions: [{key: app, operator: In}]}}]}}\n": "labelSelector.matchExpressions[0].values: required for In",
	} {
		if _, err := DecodeManifests([]ManifestFile{{Name: "p.yaml", Data: []byte(doc)}}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", doc, err, want)
		}
	}
	ok := pod + "  affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: kubernetes.io/hostname, labelSelector: {matchExpressions: [{key: app, operator: In, values: [p]}]}}]}}\n"
	if _, err := DecodeManifests([]ManifestFile{{Name: "p.yaml", Data: []byte(ok)}}); err != nil {
		t.Fatal(err)
	}
	sel := &LabelSelector{MatchLabels: map[string]string{"app": "web"}, MatchExpressions: []LabelSelectorRequirement{{Key: "tier", Operator: "NotIn", Values: []string{"db"}}, {Key: "canary", Operator: "DoesNotExist"}}}
	for labels, want := range map[string]bool{"app=web": true, "app=web,tier=db": false, "app=web,tier=fe": true, "app=web,canary=1": false, "app=api": false} {
		l, _ := ParseSelector(labels)
		if sel.Matches(l) != want {
			t.Errorf("%s: %v", labels, !want)
		}
	}
}

// Manifests written for older or other clusters: removed beta apiVersions
// are read as the current one (with the old defaults), exported status and
// a namespace on a cluster-scoped object are ignored, a relative mountPath
// is made absolute, Ingress and NetworkPolicy are stored inert; each says
// so in a warning.
func TestDecode_ReadAsWritten(t *testing.T) {
	decode := func(doc string) Object {
		t.Helper()
		objs, err := DecodeManifests([]ManifestFile{{Name: "f.yaml", Data: []byte(doc)}})
		if err != nil {
			t.Fatal(err)
		}
		return objs[0]
	}
	hasWarning := func(o Object, want string) {
		t.Helper()
		for _, w := range Warnings(o) {
			if strings.Contains(w, want) {
				return
			}
		}
		t.Errorf("%s: warnings %q lack %q", KeyOf(o), Warnings(o), want)
	}
	d := decode("apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: old}\nspec:\n  template:\n    metadata: {labels: {app: old}}\n    spec:\n      containers: [{name: c, image: x, volumeMounts: [{name: v, mountPath: data}]}]\n      volumes: [{name: v, emptyDir: {}}]\nstatus: {replicas: 1, observedGeneration: 3, conditions: [{type: Available}]}\n").(*Deployment)
	if d.APIVersion != "apps/v1" || !d.Spec.Selector.Matches(map[string]string{"app": "old"}) || d.Spec.Template.Spec.Containers[0].VolumeMounts[0].MountPath != "/data" {
		t.Fatalf("old deployment read as %+v", d)
	}
	hasWarning(d, "apiVersion extensions/v1beta1: removed in Kubernetes 1.16; read as apps/v1")
	hasWarning(d, "spec.selector: none given")
	hasWarning(d, "status: ignored")
	hasWarning(d, `volumeMounts[0].mountPath: "data" is relative; mounted at /data`)
	ds := decode("apiVersion: extensions/v1beta1\nkind: DaemonSet\nmetadata: {name: old}\nspec:\n  template:\n    metadata: {labels: {app: old}}\n    spec: {containers: [{name: c, image: x}]}\n").(*DaemonSet)
	if ds.Spec.UpdateStrategy.Type != DaemonSetOnDelete {
		t.Fatalf("old DaemonSet strategy %q", ds.Spec.UpdateStrategy.Type)
	}
	pv := decode("apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: a, namespace: media}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: /x}\n")
	if pv.GetMeta().Namespace != "" {
		t.Fatal("a PersistentVolume kept a namespace")
	}
	hasWarning(pv, "metadata.namespace: ignored; a PersistentVolume is not namespaced")
	ing := decode("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec: {rules: [{host: web.lan}]}\n")
	hasWarning(ing, "no ingress controller here")
	np := decode("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\nspec: {podSelector: {}}\n")
	hasWarning(np, "NOT enforced")
	cr := decode("apiVersion: rbac.authorization.k8s.io/v1beta1\nkind: ClusterRole\nmetadata: {name: \"system:metrics-reader\"}\nrules: []\n")
	hasWarning(cr, "read as rbac.authorization.k8s.io/v1")
	ns := decode("apiVersion: v1\nkind: Namespace\nmetadata: {name: media}\nspec: {finalizers: [kubernetes]}\n")
	if ns.GetMeta().Name != "media" {
		t.Fatal(ns)
	}
	// Still refused: a wrong type, named with its full path.
	_, err := DecodeManifests([]ManifestFile{{Name: "f.yaml", Data: []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: x, env: [{name: A, value: \"1\"}, {name: B, value: true}]}]\n")}})
	if err == nil || !strings.Contains(err.Error(), `spec.containers[0].env[1].value: expected a string, got true (quote it: "true")`) {
		t.Fatalf("err %v", err)
	}
}

func TestDecode_ExternalIPs(t *testing.T) {
	svc := "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 80}]\n  externalIPs: [%s]\n"
	objs, err := DecodeManifests([]ManifestFile{{Name: "s.yaml", Data: []byte(fmt.Sprintf(svc, "192.168.1.240"))}})
	if err != nil || objs[0].(*Service).Spec.ExternalIPs[0] != "192.168.1.240" {
		t.Fatalf("%v %v", objs, err)
	}
	if _, err := DecodeManifests([]ManifestFile{{Name: "s.yaml", Data: []byte(fmt.Sprintf(svc, "192.168.1.240, 127.0.0.1"))}}); err == nil ||
		!strings.Contains(err.Error(), `spec.externalIPs[1]: "127.0.0.1" is not a usable IPv4 address`) {
		t.Fatalf("loopback external IP: %v", err)
	}
	ns := netService(objs[0].(*Service), nil)
	if len(ns.ExternalIPs) != 1 {
		t.Fatalf("network state lacks the external IP: %+v", ns)
	}
}
