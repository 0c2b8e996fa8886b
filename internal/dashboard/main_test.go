package dashboard_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the dashboard starts (live feeds, job watches, live
// pages) has an owner and stops with it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http keeps idle client connections' readers until closed.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}
