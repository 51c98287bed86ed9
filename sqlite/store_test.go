package sqlite_test

import (
	"testing"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/core/storetest"
)

// sqlite.DB passes the conformance suite that core.MemoryStore passes too,
// which is what lets core's tests run on the memory store.
func TestDB_Conformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) core.Store { return MustOpenDB(t) })
}
