package core

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strconv"
	"time"
)

// Change is one object of a dry run: as stored (Live, nil when apply would
// create it) and as the apply would store it (Merged).
type Change struct {
	ApplyResult
	Live, Merged Object
}

// errDryRun rolls a dry run's transaction back: a Store writes nothing for
// an Update whose function fails, and sends no events.
var errDryRun = errors.New("core: dry run: roll back")

// DryRunApply is Apply that changes nothing (kubectl apply
// --dry-run=server): the same code runs in a transaction that is then
// rolled back, so service allocations, immutable fields and conflicts are
// checked against the store as a real apply would check them, while
// nothing is stored, no watcher hears of it and no controller wakes.
//
// It returns Apply's error unchanged, or Apply's results marked
// DryRunServer, in Apply's order, each with the object before and after.
// Merged objects belong to the caller; Live ones are the store's (read
// only). A Merged object that apply would create carries the uid,
// resourceVersion and creationTimestamp the transaction gave it, which
// nothing keeps.
func DryRunApply(ctx context.Context, s Store, objs []Object, now time.Time, net NetworkConfig) ([]Change, error) {
	objs = applyOrder(objs)
	var changes []Change
	err := s.Update(ctx, func(tx Tx) error {
		changes = make([]Change, len(objs))
		for i, o := range objs {
			live, err := tx.Get(KeyOf(o))
			if err == nil {
				changes[i].Live = live
			} else if ErrorCode(err) != ENOTFOUND {
				return err
			}
		}
		results, err := applyAll(tx, objs, net)
		if err != nil {
			return err
		}
		for i, r := range results {
			r.DryRun = DryRunServer
			changes[i].ApplyResult = r
			if changes[i].Merged, err = tx.Get(KeyOf(objs[i])); err != nil {
				return err
			}
		}
		return errDryRun
	})
	if !errors.Is(err, errDryRun) {
		if err == nil { // a Store must return fn's error unchanged
			err = Errorf(EINTERNAL, "dry run: the store committed a transaction that failed")
		}
		return nil, err
	}
	return changes, nil
}

// DryRunLocal is a client-side dry run (kubectl apply --dry-run=client).
// Apply's own code runs against a throwaway store that holds only what
// live returns for objs and for the namespaces they name, so it tells
// created from configured and unchanged, and refuses what an object's own
// stored version refuses (a changed cluster IP, immutable data, a pod's new
// spec) or a missing namespace. It does not see conflicts with objects it
// was not given (a node port another service holds) nor the master's
// address ranges: a server dry run checks those.
//
// live returns the stored object with key k or ENOTFOUND; any other error
// of it is returned. A nil live stands for a master out of reach: every
// object is taken to be new, in a namespace that exists.
func DryRunLocal(ctx context.Context, objs []Object, live func(Key) (Object, error)) ([]ApplyResult, error) {
	inManifests := map[Key]bool{}
	for _, o := range objs {
		inManifests[KeyOf(o)] = true
	}
	var known []Object
	seen := map[Key]bool{}
	add := func(k Key) error {
		if seen[k] {
			return nil
		}
		seen[k] = true
		if live == nil {
			if k.Kind == KindNamespace && !inManifests[k] {
				ns := &Namespace{TypeMeta: TypeMeta{APIVersion: KindNamespace.APIVersion(), Kind: KindNamespace}}
				ns.Metadata.Name = k.Name
				known = append(known, ns)
			}
			return nil
		}
		o, err := live(k)
		if ErrorCode(err) == ENOTFOUND {
			return nil
		} else if err != nil {
			return err
		}
		known = append(known, o)
		return nil
	}
	for _, o := range objs {
		k := KeyOf(o)
		if k.Kind.Namespaced() {
			if err := add(Key{Kind: KindNamespace, Name: k.Namespace}); err != nil {
				return nil, err
			}
		}
		if err := add(k); err != nil {
			return nil, err
		}
	}
	s, err := loadedStore(known)
	if err != nil {
		return nil, err
	}
	changes, err := DryRunApply(ctx, s, objs, time.Time{}, unboundedNetwork())
	if err != nil {
		return nil, err
	}
	results := make([]ApplyResult, len(changes))
	for i, c := range changes {
		results[i] = c.ApplyResult
		results[i].DryRun = DryRunClient
	}
	return results, nil
}

// loadedStore returns a memory store holding objs as stored objects.
func loadedStore(objs []Object) (*MemoryStore, error) {
	var rev int64
	raws := make([][]byte, len(objs))
	for i, o := range objs {
		b, err := json.Marshal(o)
		if err != nil {
			return nil, err
		}
		raws[i] = b
		if v, _ := strconv.ParseInt(o.GetMeta().ResourceVersion, 10, 64); v > rev {
			rev = v
		}
	}
	s := NewMemoryStore()
	if err := s.Load(rev, objs, raws); err != nil {
		return nil, err
	}
	return s, nil
}

// unboundedNetwork is an address plan that refuses no address or port: a
// client does not know the master's ranges, and must not refuse what the
// master would take.
func unboundedNetwork() NetworkConfig {
	c := DefaultNetworkConfig()
	c.ServiceCIDR = netip.MustParsePrefix("0.0.0.0/0")
	c.NodePortMin, c.NodePortMax = 1, 65535
	return c
}
