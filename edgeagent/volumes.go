package edgeagent

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/edgeorch/edge/core"
)

// Persistent volumes on the node: the desired state says where each claim
// of the node's pods is (a directory this agent provisioned under
// VolumeDir, or a user's hostPath or local path), and which provisioned
// directories to remove because their claims were deleted. The agent
// reports the provisioned directories it holds, so the master deletes a
// volume's record only after its data is gone.

// claimVolume returns where a claim of a pod is on this node.
func (a *Agent) claimVolume(namespace, claim string) (core.ClaimVolume, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.desired == nil {
		return core.ClaimVolume{}, false
	}
	for _, v := range a.desired.Volumes {
		if v.Namespace == namespace && v.Claim == claim {
			return v, true
		}
	}
	return core.ClaimVolume{}, false
}

// claimDir makes sure a claim's directory exists and returns where it
// is. A
// provisioned one is made world-writable (local-path-provisioner's mode,
// so an image running as any user can write); a user's path is created
// only if missing.
func (w *podWorker) claimDir(p *core.Pod, src *core.PersistentVolumeClaimVolumeSource) (core.ClaimVolume, error) {
	v, ok := w.a.claimVolume(p.Metadata.Namespace, src.ClaimName)
	if !ok {
		return v, fmt.Errorf("persistentvolumeclaim %q has no volume on this node (not bound yet, or its volume is on another node)", src.ClaimName)
	}
	if v.Provisioned {
		// A path outside VolumeDir (the agent's --volume-dir changed since
		// it was provisioned) is still used; only removal is confined to
		// VolumeDir.
		if _, err := os.Stat(v.Path); os.IsNotExist(err) {
			if !w.a.insideVolumeDir(v.Path) {
				// Made elsewhere (another --volume-dir): an empty new one
				// would hide that its data is not here.
				return v, fmt.Errorf("persistentvolumeclaim %q: its volume %s is missing at %s, outside this node's volume directory %s", src.ClaimName, v.Volume, v.Path, w.a.VolumeDir)
			}
			if err := os.MkdirAll(v.Path, 0o777); err != nil {
				return v, fmt.Errorf("persistentvolumeclaim %q: %w", src.ClaimName, err)
			}
			if err := os.Chmod(v.Path, 0o777); err != nil { // past the umask
				return v, fmt.Errorf("persistentvolumeclaim %q: %w", src.ClaimName, err)
			}
		}
		return v, nil
	}
	if err := os.MkdirAll(v.Path, 0o755); err != nil {
		return v, fmt.Errorf("persistentvolumeclaim %q: volume %s at %s: %w", src.ClaimName, v.Volume, v.Path, err)
	}
	return v, nil
}

// insideVolumeDir reports whether path is a directory of VolumeDir's own
// (never VolumeDir itself, never outside it).
func (a *Agent) insideVolumeDir(path string) bool {
	if a.VolumeDir == "" {
		return false
	}
	rel, err := filepath.Rel(a.VolumeDir, filepath.Clean(path))
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..") && !strings.Contains(rel, "/")
}

// releaseVolumes removes the directories of released volumes that no pod
// of the node still uses, in the background (a large volume takes a while
// on an SD card). Called with a.mu held.
func (a *Agent) releaseVolumes(ds *core.DesiredState) {
	for _, v := range ds.Released {
		if !a.insideVolumeDir(v.Path) {
			a.Log.Error("refusing to remove a released volume outside the volume directory", "volume", v.Volume, "path", v.Path, "dir", a.VolumeDir)
			continue
		}
		inUse := slices.ContainsFunc(ds.Volumes, func(u core.ClaimVolume) bool { return u.Path == v.Path })
		// A pod still stopping may use it: its directory is VOLUME_NS_CLAIM.
		if _, rest, ok := strings.Cut(filepath.Base(v.Path), "_"); ok {
			if ns, claim, ok := strings.Cut(rest, "_"); ok {
				for _, w := range a.workers {
					inUse = inUse || (w.namespace == ns && slices.Contains(w.claims, claim))
				}
			}
		}
		if inUse || a.releasing[v.Path] {
			continue
		}
		a.releasing[v.Path] = true
		a.wg.Add(1)
		go func(v core.ClaimVolume) {
			defer a.wg.Done()
			err := os.RemoveAll(v.Path)
			a.mu.Lock()
			delete(a.releasing, v.Path)
			a.mu.Unlock()
			if err != nil {
				a.Log.Error("removing a released volume failed; retried at the next desired state", "volume", v.Volume, "err", err)
				return
			}
			a.Log.Info("removed a released volume", "volume", v.Volume, "path", v.Path)
			a.markDirty()
		}(v)
	}
}

// localVolumes lists the provisioned volumes whose directories this node
// holds, by volume name (directories are named VOLUME_NAMESPACE_CLAIM).
func (a *Agent) localVolumes() []string {
	if a.VolumeDir == "" {
		return nil
	}
	entries, err := os.ReadDir(a.VolumeDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if name, _, ok := strings.Cut(e.Name(), "_"); ok && e.IsDir() {
			out = append(out, name)
		}
	}
	return out
}

// volumeCapacity is the storage this node offers claims: StorageCapacity,
// else the size of the filesystem holding VolumeDir.
func (a *Agent) volumeCapacity() int64 {
	if a.StorageCapacity > 0 {
		return a.StorageCapacity
	}
	var st unix.Statfs_t
	if err := unix.Statfs(a.VolumeDir, &st); err != nil {
		return 0
	}
	return int64(st.Blocks) * int64(st.Bsize)
}
