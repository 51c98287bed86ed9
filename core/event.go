package core

import (
	"fmt"
	"sort"
	"time"
)

// KindEvent is what happened to an object, as reported by the agent that
// saw it (Kubernetes' v1 Event, trimmed).
const KindEvent Kind = "Event"

// EventObj is an event (named so as not to clash with store watch events).
type EventObj struct {
	TypeMeta       `json:",inline"`
	Metadata       ObjectMeta      `json:"metadata"`
	InvolvedObject ObjectReference `json:"involvedObject"`
	Reason         string          `json:"reason"`
	Message        string          `json:"message"`
	Type           string          `json:"type"` // Normal or Warning
	Count          int32           `json:"count"`
	FirstTimestamp *Time           `json:"firstTimestamp,omitempty"`
	LastTimestamp  *Time           `json:"lastTimestamp,omitempty"`
	Source         EventSource     `json:"source"`
}

func (e *EventObj) GetTypeMeta() *TypeMeta { return &e.TypeMeta }
func (e *EventObj) GetMeta() *ObjectMeta   { return &e.Metadata }

// ObjectReference points at the object an event is about.
type ObjectReference struct {
	APIVersion      string `json:"apiVersion,omitempty"`
	Kind            Kind   `json:"kind"`
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name"`
	UID             string `json:"uid,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	FieldPath       string `json:"fieldPath,omitempty"`
}

// EventSource says who saw it.
type EventSource struct {
	Component string `json:"component,omitempty"`
	Host      string `json:"host,omitempty"`
}

const (
	EventNormal  = "Normal"
	EventWarning = "Warning"
)

// PodEvent is an event as an agent records and sends it. ID is unique per
// node and increases, so the master can drop repeats.
type PodEvent struct {
	ID        uint64 `json:"id"`
	Time      *Time  `json:"time"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	UID       string `json:"uid"`
	Container string `json:"container,omitempty"`
	Type      string `json:"type"`
	Reason    string `json:"reason"`
	Message   string `json:"message"`
}

// EventFromPod makes the stored event for a node's pod event.
func EventFromPod(node string, e *PodEvent) *EventObj {
	ev := &EventObj{
		TypeMeta:       TypeMeta{APIVersion: "v1", Kind: KindEvent},
		Metadata:       ObjectMeta{Name: fmt.Sprintf("%s.%s.%x", e.Pod, node, e.ID), Namespace: e.Namespace},
		InvolvedObject: ObjectReference{Kind: KindPod, Namespace: e.Namespace, Name: e.Pod, UID: e.UID},
		Reason:         e.Reason, Message: e.Message, Type: e.Type, Count: 1,
		FirstTimestamp: e.Time, LastTimestamp: e.Time,
		Source: EventSource{Component: "edgeagent", Host: node},
	}
	if e.Container != "" {
		ev.InvolvedObject.FieldPath = "spec.containers{" + e.Container + "}"
	}
	return ev
}

// MaxEventsPerPod bounds how many events the master keeps for one pod.
const MaxEventsPerPod = 30

// StoreEvents records a node's events, skipping repeats and events of pods
// that are gone or not on that node, and keeps at most MaxEventsPerPod per
// pod (the oldest go).
func StoreEvents(tx Tx, node string, events []PodEvent, now time.Time) error {
	for i := range events {
		e := &events[i]
		obj, err := tx.Get(Key{Kind: KindPod, Namespace: e.Namespace, Name: e.Pod})
		if ErrorCode(err) == ENOTFOUND {
			continue
		} else if err != nil {
			return err
		}
		if p := obj.(*Pod); p.Metadata.UID != e.UID || p.Spec.NodeName != node {
			continue // a node speaks only of its own pods
		}
		ev := EventFromPod(node, e)
		if _, err := tx.Get(KeyOf(ev)); err == nil {
			continue // delivered before (at least once)
		}
		if err := tx.Create(ev); err != nil {
			return err
		}
		if err := trimEvents(tx, e.Namespace, e.UID); err != nil {
			return err
		}
	}
	return nil
}

func trimEvents(tx Tx, ns, uid string) error {
	about, err := tx.EventsAbout(uid)
	if err != nil || len(about) <= MaxEventsPerPod {
		return err
	}
	mine := EventsFor(about, uid)
	for len(mine) > MaxEventsPerPod {
		if err := tx.Delete(KeyOf(mine[0])); err != nil {
			return err
		}
		mine = mine[1:]
	}
	return nil
}

// GCEvents deletes the events of pods and CronJobs that no longer exist.
func GCEvents(tx Tx) error {
	events, err := TxListAs[*EventObj](tx, KindEvent, "")
	if err != nil || len(events) == 0 {
		return err
	}
	pods, err := TxListAs[*Pod](tx, KindPod, "")
	if err != nil {
		return err
	}
	live := map[string]bool{}
	for _, p := range pods {
		live[p.Metadata.UID] = true
	}
	for _, e := range events {
		gone := false
		switch io := e.InvolvedObject; io.Kind {
		case KindPod:
			gone = !live[io.UID]
		case KindCronJob: // the CronJob controller's
			o, err := tx.Get(Key{Kind: io.Kind, Namespace: io.Namespace, Name: io.Name})
			if err != nil && ErrorCode(err) != ENOTFOUND {
				return err
			}
			gone = err != nil || o.GetMeta().UID != io.UID
		}
		if gone {
			if err := tx.Delete(KeyOf(e)); err != nil {
				return err
			}
		}
	}
	return nil
}

// EventsFor returns the events about the object with uid, oldest first.
func EventsFor(events []*EventObj, uid string) []*EventObj {
	var out []*EventObj
	for _, e := range events {
		if e.InvolvedObject.UID == uid {
			out = append(out, e)
		}
	}
	sortEvents(out)
	return out
}

func sortEvents(es []*EventObj) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.LastTimestamp != nil && b.LastTimestamp != nil && !a.LastTimestamp.Equal(b.LastTimestamp.Time) {
			return a.LastTimestamp.Before(b.LastTimestamp.Time)
		}
		return a.Metadata.Name < b.Metadata.Name
	})
}

// RecordEvent records an event the master itself saw about pod (an
// eviction, say), next to those its agent sends.
func RecordEvent(tx Tx, p *Pod, typ, reason, message string, now time.Time) error {
	t := NewTime(now)
	ev := &EventObj{
		TypeMeta:       TypeMeta{APIVersion: "v1", Kind: KindEvent},
		Metadata:       ObjectMeta{Name: fmt.Sprintf("%s.master.%x", p.Metadata.Name, now.UnixNano()), Namespace: p.Metadata.Namespace},
		InvolvedObject: ObjectReference{Kind: KindPod, Namespace: p.Metadata.Namespace, Name: p.Metadata.Name, UID: p.Metadata.UID},
		Reason:         reason, Message: message, Type: typ, Count: 1, FirstTimestamp: t, LastTimestamp: t,
		Source: EventSource{Component: "edgemaster"},
	}
	if _, err := tx.Get(KeyOf(ev)); err == nil {
		return nil
	}
	if err := tx.Create(ev); err != nil {
		return err
	}
	return trimEvents(tx, p.Metadata.Namespace, p.Metadata.UID)
}
