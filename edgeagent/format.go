package edgeagent

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/edgeorch/edge/internal/fsutil"
)

// dataFormat is the layout of the agent's data dir this build writes
// (desired.json, network.json, credentials, pods/, logs/, storage/). A
// later build that changes it raises it and migrates older dirs forward
// (each step writing its result before the format file, so a failed step
// leaves the old layout to be migrated again); a dir written by a newer
// build is refused rather than misread, and never changed.
const dataFormat = 1

func (a *Agent) formatPath() string { return filepath.Join(a.DataDir, "format") }

// checkFormat refuses a data dir of a newer format and records this
// build's format in one that has none.
func (a *Agent) checkFormat() error {
	b, err := os.ReadFile(a.formatPath())
	if os.IsNotExist(err) {
		return fsutil.WriteFileAtomic(a.formatPath(), []byte(strconv.Itoa(dataFormat)+"\n"), 0o644)
	} else if err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 1 {
		return fmt.Errorf("%s: %q is not a data format number; restore it, or move the data dir away to start afresh", a.formatPath(), strings.TrimSpace(string(b)))
	}
	if n > dataFormat {
		return fmt.Errorf("the data dir %s was written by a newer edgeagent (format %d, this one knows %d): run that version or newer; downgrades are not supported", a.DataDir, n, dataFormat)
	}
	return nil // n == dataFormat: nothing to migrate yet
}
