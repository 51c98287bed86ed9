package e2e

import (
	"io"
	"log/slog"
)

// quietLogger drops the logs of a thousand hollow agents.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))
