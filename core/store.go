package core

import (
	"context"
	"encoding/json"
	"reflect"
)

// Store keeps the cluster's desired and observed state.
//
// Objects returned by Get and List are shared with the store's cache and
// must be treated as read-only (like client-go informer caches): Clone an
// object before changing it and hand the clone to Tx.Put.
type Store interface {
	// Get returns the object with key k, or ENOTFOUND.
	Get(ctx context.Context, k Key) (Object, error)
	// List returns all objects of kind in namespace ns ("" for all namespaces),
	// sorted by namespace and name.
	List(ctx context.Context, kind Kind, ns string) ([]Object, error)
	// Update runs fn in one read-write transaction. If fn returns an error
	// nothing is written and the error is returned unchanged. Events for the
	// changes are delivered to watchers after commit.
	Update(ctx context.Context, fn func(tx Tx) error) error
	// Watch returns a channel of events committed after the call and a
	// function that stops the watch. A watcher that falls too far behind has
	// its channel closed and must list again.
	Watch() (<-chan WatchEvent, func())
}

// Tx is a store transaction. Its reads see its own writes. Create and Put
// take ownership of the object they are given: the caller must not change
// it afterwards (copy a stored object with Clone, or shallow-copy what it
// changes, before writing).
type Tx interface {
	Get(k Key) (Object, error)
	List(kind Kind, ns string) ([]Object, error)
	// PodsOnNode returns the pods bound to node, sorted.
	PodsOnNode(node string) ([]*Pod, error)
	// EventsAbout returns the events whose involved object has uid, sorted
	// by namespace and name (an index: trimming one pod's events must not
	// list a whole namespace).
	EventsAbout(uid string) ([]*EventObj, error)
	// Create stores a new object and sets its uid, resourceVersion,
	// generation and creationTimestamp. Returns ECONFLICT if it exists.
	Create(obj Object) error
	// Put replaces an existing object, keeping uid and creationTimestamp and
	// bumping generation when the spec changed. If obj carries a
	// resourceVersion that is not the stored one it returns ECONFLICT; a
	// missing object is ENOTFOUND.
	Put(obj Object) error
	// Delete removes an object; ENOTFOUND if it does not exist.
	Delete(k Key) error
}

type EventType string

const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
)

// WatchEvent is one committed change.
type WatchEvent struct {
	Type   EventType `json:"type"`
	Object Object    `json:"object"`
}

// RawLister is implemented by stores that keep each object's JSON, so an
// API can list thousands of objects without encoding them again.
type RawLister interface {
	ListRaw(ctx context.Context, kind Kind, ns string) ([]Object, [][]byte, error)
}

// SpecOf returns the part of obj whose change bumps metadata.generation.
func SpecOf(obj Object) any {
	switch o := obj.(type) {
	case *Endpoints:
		return o.Subsets
	case *ConfigMap:
		return []any{o.Data, o.BinaryData, o.Immutable}
	case *Secret:
		return []any{o.Type, o.Files(), o.Immutable}
	case *InertObject:
		return o.Body
	case *StorageClass:
		return []any{o.Provisioner, o.ReclaimPolicy, o.VolumeBindingMode, o.AllowVolumeExpansion, o.Parameters, o.MountOptions}
	}
	v := reflect.ValueOf(obj).Elem()
	if f := v.FieldByName("Spec"); f.IsValid() {
		return f.Interface()
	}
	return nil
}

// JSONEqual reports whether a and b have the same JSON encoding.
func JSONEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// Typed helpers over Store and Tx.

// ListAs lists objects of kind and converts them to T.
func ListAs[T Object](ctx context.Context, s Store, kind Kind, ns string) ([]T, error) {
	objs, err := s.List(ctx, kind, ns)
	if err != nil {
		return nil, err
	}
	return cast[T](objs), nil
}

// TxListAs is ListAs within a transaction.
func TxListAs[T Object](tx Tx, kind Kind, ns string) ([]T, error) {
	objs, err := tx.List(kind, ns)
	if err != nil {
		return nil, err
	}
	return cast[T](objs), nil
}

func cast[T Object](objs []Object) []T {
	out := make([]T, len(objs))
	for i, o := range objs {
		out[i] = o.(T)
	}
	return out
}

// TokenStore keeps bearer tokens and node credentials, hashed.
type TokenStore interface {
	// CreateToken stores a new token; ECONFLICT if its ID exists.
	CreateToken(ctx context.Context, t *Token) error
	// PutToken stores t, replacing any token with its ID.
	PutToken(ctx context.Context, t *Token) error
	// FindToken returns the token with the given secret hash, or
	// EUNAUTHORIZED if none matches or it has expired.
	FindToken(ctx context.Context, kind, hash string) (*Token, error)
	// ListTokens returns every token (without hashes), sorted by ID.
	ListTokens(ctx context.Context) ([]*Token, error)
	// DeleteToken removes a token; ENOTFOUND if there is none with id.
	DeleteToken(ctx context.Context, id string) error
	// SetNodeCredential stores (replaces) the MQTT credential hash of node.
	SetNodeCredential(ctx context.Context, node, hash string) error
	// NodeCredentials returns every node's credential hash.
	NodeCredentials(ctx context.Context) (map[string]string, error)
	// BindNodePassword records hash as node's password unless it has one,
	// atomically, and returns the hash now bound to node.
	BindNodePassword(ctx context.Context, node, hash string) (string, error)
	// NodePassword returns the hash bound to node, "" if none is.
	NodePassword(ctx context.Context, node string) (string, error)
	// DeleteNodeCredentials forgets node's password and MQTT credential
	// (the node was deleted). Deleting nothing is not an error.
	DeleteNodeCredentials(ctx context.Context, node string) error
}

// Token kinds.
const (
	TokenAdmin = "admin"
	TokenJoin  = "join"
)

// Token is a bearer secret; only its SHA-256 is stored.
type Token struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	Hash        string `json:"-"`
	Description string `json:"description,omitempty"`
	CreatedAt   *Time  `json:"createdAt,omitempty"`
	ExpiresAt   *Time  `json:"expiresAt,omitempty"`
}
