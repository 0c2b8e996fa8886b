// Package leaktest makes a test binary fail when its tests leave a
// goroutine behind (go.uber.org/goleak), with the goroutines every reelq
// test may leave: net/http's readers and writers of idle keep-alive
// connections, which live until the transport closes them.
package leaktest

import (
	"testing"

	"go.uber.org/goleak"
)

// Options are the goroutines a test may leave running.
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	}
}

// VerifyTestMain runs the tests, then fails the binary if any goroutine
// other than those of [Options] is still running. Call it from TestMain.
func VerifyTestMain(m *testing.M) { goleak.VerifyTestMain(m, Options()...) }

// Find reports the goroutines other than those of [Options] still running,
// for a TestMain that has more to do after the tests.
func Find() error { return goleak.Find(Options()...) }
