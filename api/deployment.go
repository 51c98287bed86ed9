package api

import (
	"net/http"
	"strconv"

	"github.com/edgeorch/edge/core"
)

// UndoResponse says which revision a deployment rolled back to.
type UndoResponse struct {
	Revision int64 `json:"revision"`
}

func (s *Server) handleUndo(w http.ResponseWriter, r *http.Request) {
	ns := r.URL.Query().Get("namespace")
	if ns == "" {
		ns = core.DefaultNamespace
	}
	var to int64
	if v := r.URL.Query().Get("toRevision"); v != "" {
		var err error
		if to, err = strconv.ParseInt(v, 10, 64); err != nil || to < 0 {
			Error(w, core.Errorf(core.EINVALID, "toRevision %q is not a revision number", v))
			return
		}
	}
	rev, err := core.Undo(r.Context(), s.Store, core.Key{Kind: core.KindDeployment, Namespace: ns, Name: r.PathValue("name")}, to)
	if err != nil {
		Error(w, err)
		return
	}
	writeJSON(w, UndoResponse{Revision: rev})
}
