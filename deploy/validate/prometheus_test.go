package validate

import (
	"os"
	"os/exec"
	"testing"
)

// The alert rules load (`promtool check rules`) and each alert fires on
// the series it is written for and stays quiet otherwise (`promtool test
// rules deploy/prometheus/alerts_test.yaml`). That their metric names are
// the code's is checked in the main module
// (internal/metrics TestDeployFilesUseExportedMetrics).
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not installed (CI installs Debian's prometheus package)")
		}
		t.Skip("promtool is not installed: apt-get install prometheus")
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
