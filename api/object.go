package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/edgeorch/edge/core"
)

func parseResource(r *http.Request) (core.Kind, string, error) {
	kind, err := core.ParseKind(r.PathValue("resource"))
	if err != nil {
		return "", "", err
	}
	ns := r.URL.Query().Get("namespace")
	if !kind.Namespaced() {
		ns = ""
	} else if ns == "" && r.URL.Query().Get("allNamespaces") == "" {
		ns = core.DefaultNamespace
	}
	return kind, ns, nil
}

// List is the JSON shape of a list: {"apiVersion":"v1","kind":"List","items":[...]}.
type List struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	kind, ns, err := parseResource(r)
	if err != nil {
		Error(w, err)
		return
	}
	sel, err := core.ParseSelector(r.URL.Query().Get("labelSelector"))
	if err != nil {
		Error(w, err)
		return
	}
	if r.URL.Query().Get("watch") != "" {
		s.watch(w, r, kind, ns, "", sel)
		return
	}
	var objs []core.Object
	var raws [][]byte
	if rl, ok := s.Store.(core.RawLister); ok {
		objs, raws, err = rl.ListRaw(r.Context(), kind, ns)
	} else {
		objs, err = s.Store.List(r.Context(), kind, ns)
	}
	if err != nil {
		Error(w, err)
		return
	}
	// Written by hand: the store keeps each object's JSON, and encoding
	// 10,000 pods again for every `get pods` would dominate its latency.
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(`{"apiVersion":"v1","kind":"List","items":[`)
	first := true
	for i, o := range objs {
		if !core.MatchLabels(sel, o.GetMeta().Labels) {
			continue
		}
		var b []byte
		if raws != nil && raws[i] != nil {
			b = raws[i]
		} else if b, err = json.Marshal(o); err != nil {
			return
		}
		if !first {
			bw.WriteByte(',')
		}
		first = false
		bw.Write(b)
	}
	bw.WriteString("]}\n")
	bw.Flush()
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	kind, ns, err := parseResource(r)
	if err != nil {
		Error(w, err)
		return
	}
	if r.URL.Query().Get("watch") != "" {
		s.watch(w, r, kind, ns, r.PathValue("name"), nil)
		return
	}
	obj, err := s.Store.Get(r.Context(), core.Key{Kind: kind, Namespace: ns, Name: r.PathValue("name")})
	if err != nil {
		Error(w, err)
		return
	}
	writeJSON(w, obj)
}

// watch streams newline-delimited events: first the current objects as
// ADDED, then changes, until the client goes away.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, kind core.Kind, ns, name string, sel map[string]string) {
	events, stop := s.Store.Watch()
	defer stop()
	objs, err := s.Store.List(r.Context(), kind, ns)
	if err != nil {
		Error(w, err)
		return
	}
	match := func(o core.Object) bool {
		m := o.GetMeta()
		return o.GetTypeMeta().Kind == kind && (ns == "" || m.Namespace == ns) && (name == "" || m.Name == name) && core.MatchLabels(sel, m.Labels)
	}
	w.Header().Set("Content-Type", "application/json")
	sw := s.stream(w)
	enc := json.NewEncoder(sw)
	for _, o := range objs {
		if match(o) {
			if err := enc.Encode(core.WatchEvent{Type: core.Added, Object: o}); err != nil {
				return
			}
		}
	}
	if sw.Flush() != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-events:
			if !ok {
				return // fell behind; the client lists and watches again
			}
			if !match(ev.Object) {
				continue
			}
			if err := enc.Encode(ev); err != nil {
				return
			}
			if sw.Flush() != nil {
				return
			}
		}
	}
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	kind, ns, err := parseResource(r)
	if err != nil {
		Error(w, err)
		return
	}
	k := core.Key{Kind: kind, Namespace: ns, Name: r.PathValue("name")}
	if kind == core.KindNode {
		err = s.deleteNode(r, k.Name)
	} else {
		err = core.Delete(r.Context(), s.Store, k, s.Now())
	}
	if err != nil {
		Error(w, err)
		return
	}
	writeJSON(w, []core.ApplyResult{{Kind: kind, Name: k.Name, Action: "deleted"}})
}

// MaxApplyBody bounds an apply or delete request (many documents of at
// most core.MaxDocumentSize each).
const MaxApplyBody = 16 << 20

// ApplyRequest carries manifest files as the user gave them.
type ApplyRequest struct {
	Files []core.ManifestFile `json:"files"`
}

// ApplyResponse lists what happened to each object, and for a delete what
// could not be deleted.
type ApplyResponse struct {
	Results []core.ApplyResult `json:"results"`
	Errors  []string           `json:"errors,omitempty"`
	// Objects, for a dry run asked for them (output=objects), holds each
	// object of Results, in the same order, before and after.
	Objects []DryRunObject `json:"objects,omitempty"`
}

// DryRunObject is one object of a dry run: as stored (absent when apply
// would create it) and as the apply would store it.
type DryRunObject struct {
	Live   json.RawMessage `json:"live,omitempty"`
	Merged json.RawMessage `json:"merged"`
}

// Apply query parameters, as Kubernetes spells dry runs: dryRun=All runs
// the apply and rolls it back; output=objects adds the objects.
const (
	DryRunAll     = "All"
	OutputObjects = "objects"
)

// applyMode reads an apply's query: whether it is a dry run and whether
// the objects are wanted.
func applyMode(q url.Values) (dryRun, objects bool, err error) {
	switch v := q.Get("dryRun"); v {
	case "":
	case DryRunAll:
		dryRun = true
	default:
		return false, false, core.Errorf(core.EINVALID, "dryRun: unsupported value %q (use %s)", v, DryRunAll)
	}
	switch v := q.Get("output"); v {
	case "":
	case OutputObjects:
		if !dryRun {
			return false, false, core.Errorf(core.EINVALID, "output=%s is for dry runs (dryRun=%s)", v, DryRunAll)
		}
		objects = true
	default:
		return false, false, core.Errorf(core.EINVALID, "output: unsupported value %q (use %s)", v, OutputObjects)
	}
	return dryRun, objects, nil
}

func decodeFiles(r *http.Request) ([]core.Object, error) {
	var req ApplyRequest
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxApplyBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, core.Errorf(core.EINVALID, "the manifests are more than %d MiB in one request: apply fewer files at once", MaxApplyBody>>20)
	} else if err != nil {
		return nil, core.Errorf(core.EINVALID, "request body: %v", err)
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, core.Errorf(core.EINVALID, "request body: %v", err)
	}
	objs, err := core.DecodeManifests(req.Files)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, core.Errorf(core.EINVALID, "no objects found in %s", fileNames(req.Files))
	}
	return objs, nil
}

func fileNames(files []core.ManifestFile) string {
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

func (s *Server) handleApply(w http.ResponseWriter, r *http.Request) {
	dryRun, withObjects, err := applyMode(r.URL.Query())
	if err != nil {
		Error(w, err)
		return
	}
	objs, err := decodeFiles(r)
	if err != nil {
		Error(w, err)
		return
	}
	if !dryRun {
		results, err := core.Apply(r.Context(), s.Store, objs, s.Now(), s.Network)
		if err != nil {
			Error(w, err)
			return
		}
		writeJSON(w, ApplyResponse{Results: results})
		return
	}
	changes, err := core.DryRunApply(r.Context(), s.Store, objs, s.Now(), s.Network)
	if err != nil {
		Error(w, err)
		return
	}
	resp := ApplyResponse{Results: make([]core.ApplyResult, len(changes))}
	for i, c := range changes {
		resp.Results[i] = c.ApplyResult
		if !withObjects {
			continue
		}
		var o DryRunObject
		if c.Live != nil {
			if o.Live, err = json.Marshal(c.Live); err != nil {
				Error(w, err)
				return
			}
		}
		if o.Merged, err = json.Marshal(c.Merged); err != nil {
			Error(w, err)
			return
		}
		resp.Objects = append(resp.Objects, o)
	}
	writeJSON(w, resp)
}

func (s *Server) handleDeleteManifests(w http.ResponseWriter, r *http.Request) {
	objs, err := decodeFiles(r)
	if err != nil {
		Error(w, err)
		return
	}
	var results []core.ApplyResult
	var errs []string
	for _, o := range objs {
		k := core.KeyOf(o)
		if err := core.Delete(r.Context(), s.Store, k, s.Now()); err != nil {
			errs = append(errs, core.ErrorMessage(err))
			continue
		}
		results = append(results, core.ApplyResult{Kind: k.Kind, Name: k.Name, Action: "deleted"})
	}
	if len(errs) > 0 && len(results) == 0 {
		Error(w, core.Errorf(core.ENOTFOUND, "%s", strings.Join(errs, "; ")))
		return
	}
	writeJSON(w, ApplyResponse{Results: results, Errors: errs})
}
