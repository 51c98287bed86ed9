package core_test

import (
	"testing"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/storetest"
)

// The memory store passes the same conformance suite as sqlite.DB.
func TestMemoryStore_Conformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) core.Store {
		s := core.NewMemoryStore()
		t.Cleanup(func() {
			if err := s.Verify(); err != nil {
				t.Error(err)
			}
			s.Close()
		})
		return s
	})
}
