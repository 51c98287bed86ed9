package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/edgeorch/edge/core"
)

func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ns := q.Get("namespace")
	if ns == "" {
		ns = core.DefaultNamespace
	}
	obj, err := s.Store.Get(r.Context(), core.Key{Kind: core.KindPod, Namespace: ns, Name: r.PathValue("name")})
	if err != nil {
		Error(w, err)
		return
	}
	pod := obj.(*core.Pod)
	if pod.Spec.NodeName == "" {
		Error(w, core.Errorf(core.EINVALID, "pod %q is not scheduled to a node yet: no logs", pod.Metadata.Name))
		return
	}
	req := core.LogRequest{Namespace: ns, Pod: pod.Metadata.Name, Container: q.Get("container"), Follow: q.Get("follow") == "true", Tail: -1}
	if req.Container == "" {
		if len(pod.Spec.Containers) > 1 {
			names := []string{}
			for _, c := range pod.Spec.Containers {
				names = append(names, c.Name)
			}
			Error(w, core.Errorf(core.EINVALID, "pod %q has several containers: pick one with -c (%s)", pod.Metadata.Name, strings.Join(names, ", ")))
			return
		}
		req.Container = pod.Spec.Containers[0].Name
	}
	if t := q.Get("tail"); t != "" {
		if req.Tail, err = strconv.Atoi(t); err != nil {
			Error(w, core.Errorf(core.EINVALID, "tail %q is not a number", t))
			return
		}
	}
	rc, err := s.Bus.Logs(r.Context(), pod.Spec.NodeName, req)
	if err != nil {
		Error(w, err)
		return
	}
	defer rc.Close()
	// A client that goes away while the node sends nothing must still end
	// the stream: a Read waiting for the node would never return.
	defer context.AfterFunc(r.Context(), func() { rc.Close() })()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	sw := s.stream(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if _, werr := sw.Write(buf[:n]); werr != nil {
				return // closing rc ends the stream at the agent
			}
			if sw.Flush() != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
