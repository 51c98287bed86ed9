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
		if o.Spec.UpdateStrategy.Type == "" {
			o.Spec.UpdateStrategy.Type = StrategyRollingUpdate
		}
		defaultPodSpec(&o.Spec.Template.Spec)
	case *StatefulSet:
		defaultStatefulSet(o)
	case *Job:
		defaultJobSpec(&o.Spec)
	case *CronJob:
		defaultCronJob(o)
	case *Secret:
		if o.Type == "" {
			o.Type = "Opaque"
		}
	case *PersistentVolumeClaim:
		if o.Spec.VolumeMode == "" {
			o.Spec.VolumeMode = "Filesystem"
		}
	case *PersistentVolume:
		if o.Spec.VolumeMode == "" {
			o.Spec.VolumeMode = "Filesystem"
		}
		if o.Spec.PersistentVolumeReclaimPolicy == "" {
			o.Spec.PersistentVolumeReclaimPolicy = ReclaimRetain // Kubernetes' default for volumes made by hand
		}
	case *StorageClass:
		if o.ReclaimPolicy == "" {
			o.ReclaimPolicy = ReclaimDelete
		}
		if o.VolumeBindingMode == "" {
			o.VolumeBindingMode = "Immediate"
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
		defaultContainer(&s.Containers[i])
	}
	for i := range s.InitContainers {
		defaultContainer(&s.InitContainers[i])
	}
}
