package ratelimit

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the test binary as a replica process when replicaEnv is set
// (see BenchmarkReplicaProcesses); otherwise it runs the tests and checks that
// none leaves a goroutine behind.
func TestMain(m *testing.M) {
	if os.Getenv(replicaEnv) != "" {
		os.Exit(runReplica())
	}
	goleak.VerifyTestMain(m)
}
