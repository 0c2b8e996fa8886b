// Package leaktest makes a test binary fail when its tests leave a
// goroutine behind (go.uber.org/goleak), with the goroutines every reelq
// test may leave: net/http's readers and writers of idle keep-alive
// connections, which live until the transport closes them. Any other
// goroutine blocked on a socket (a NATS connection's reader, a server's
// connection handler) is a leak.
package leaktest

import (
	"testing"

	"go.uber.org/goleak"
)

// Options are the goroutines a test may leave running: an idle keep-alive
// connection's reader (blocked in a read, so its top function is the
// poller's, not readLoop) and its writer.
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	}
}

// VerifyTestMain runs the tests, then fails the binary if any goroutine
// other than those of [Options] is still running. Call it from TestMain.
func VerifyTestMain(m *testing.M) { goleak.VerifyTestMain(m, Options()...) }

// Find reports the goroutines other than those of [Options] still running,
// for a TestMain that has more to do after the tests.
func Find() error { return goleak.Find(Options()...) }
