package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExternalBroker runs the whole product through Debian's mosquitto
// (--mqtt-url) instead of the embedded broker.
func TestExternalBroker(t *testing.T) {
	needRoot(t)
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatal("mosquitto is not installed: apt-get install mosquitto (make test does it as root)")
	}
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port)), 0o644)
	start(t, dir, bin, "-c", conf)
	waitFor(t, 10*time.Second, "mosquitto", func() error {
		return exec.Command("bash", "-c", fmt.Sprintf("echo > /dev/tcp/127.0.0.1/%d", port)).Run()
	})
	c := newCluster(t, "--mqtt-url", fmt.Sprintf("tcp://127.0.0.1:%d", port))
	c.apply(fmt.Sprintf(spineManifest, 2))
	pods := c.runningPods(2, "app=spine")
	if logs := c.mustEdgectl("logs", pods[0].Metadata.Name); !strings.Contains(logs, "up on") {
		t.Fatalf("logs through mosquitto: %q", logs)
	}
	c.mustEdgectl("delete", "deployment", "spine")
	waitFor(t, 60*time.Second, "zero containers", func() error {
		if n := c.ctrd.containerCount(t); n != 0 {
			return fmt.Errorf("%d containers", n)
		}
		return nil
	})
}
