package core

// SetDefaults fills the fields a manifest may omit, as Kubernetes does, with
// one deliberate difference: imagePullPolicy defaults to IfNotPresent even
// for ":latest", so an offline node never needs its registry to start a pod.
func SetDefaults(obj Object) {
	m := obj.GetMeta()
	if obj.GetTypeMeta().Kind.Namespaced() && m.Namespace == "" {
		m.Namespace = DefaultNamespace
	}
	switch o := obj.(type) {
	case *Pod:
		defaultPodSpec(&o.Spec)
	case *Deployment:
		if o.Spec.Replicas == nil {
			one := int32(1)
			o.Spec.Replicas = &one
		}
		if o.Spec.Strategy.Type == "" {
			o.Spec.Strategy.Type = StrategyRollingUpdate
		}
		if o.Spec.Strategy.Type == StrategyRollingUpdate {
			if o.Spec.Strategy.RollingUpdate == nil {
				o.Spec.Strategy.RollingUpdate = &RollingUpdateStrategy{}
			}
			ru := o.Spec.Strategy.RollingUpdate
			if ru.MaxSurge == nil {
				v := IntOrStr("25%")
				ru.MaxSurge = &v
			}
			if ru.MaxUnavailable == nil {
				v := IntOrStr("25%")
				ru.MaxUnavailable = &v
			}
		}
		defaultPodSpec(&o.Spec.Template.Spec)
	case *DaemonSet:
		defaultPodSpec(&o.Spec.Template.Spec)
	case *Job:
		defaultJobSpec(&o.Spec)
	case *CronJob:
		defaultCronJob(o)
	case *Secret:
		if o.Type == "" {
			o.Type = "Opaque"
		}
	case *Endpoints:
		for i := range o.Subsets {
			for j := range o.Subsets[i].Ports {
				if o.Subsets[i].Ports[j].Protocol == "" {
					o.Subsets[i].Ports[j].Protocol = "TCP"
				}
			}
		}
	case *Service:
		if o.Spec.Type == "" {
			o.Spec.Type = ServiceClusterIP
		}
		if o.Spec.SessionAffinity == "" {
			o.Spec.SessionAffinity = AffinityNone
		}
		if o.Spec.ExternalTrafficPolicy == "" && o.Spec.Type != ServiceClusterIP {
			o.Spec.ExternalTrafficPolicy = TrafficPolicyCluster
		}
		for i := range o.Spec.Ports {
			p := &o.Spec.Ports[i]
			if p.Protocol == "" {
				p.Protocol = "TCP"
			}
			if !p.TargetPort.IsString && p.TargetPort.IntVal == 0 {
				p.TargetPort = IntOrInt(p.Port)
			}
		}
	}
}

func defaultPodSpec(s *PodSpec) {
	if s.RestartPolicy == "" {
		s.RestartPolicy = RestartAlways
	}
	if s.TerminationGracePeriodSeconds == nil {
		g := int64(30)
		s.TerminationGracePeriodSeconds = &g
	}
	for i := range s.Containers {
		c := &s.Containers[i]
		if c.ImagePullPolicy == "" {
			c.ImagePullPolicy = PullIfNotPresent
		}
		for j := range c.Ports {
			if c.Ports[j].Protocol == "" {
				c.Ports[j].Protocol = "TCP"
			}
		}
		for _, p := range []*Probe{c.LivenessProbe, c.ReadinessProbe} {
			if p == nil {
				continue
			}
			if p.PeriodSeconds == 0 {
				p.PeriodSeconds = 10
			}
			if p.TimeoutSeconds == 0 {
				p.TimeoutSeconds = 1
			}
			if p.SuccessThreshold == 0 {
				p.SuccessThreshold = 1
			}
			if p.FailureThreshold == 0 {
				p.FailureThreshold = 3
			}
			if p.HTTPGet != nil && p.HTTPGet.Path == "" {
				p.HTTPGet.Path = "/"
			}
		}
	}
}
