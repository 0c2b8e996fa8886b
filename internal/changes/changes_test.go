package changes

import (
	"testing"
	"testing/synctest"

	"github.com/reelq/reelq/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A change made after the reader took its version, and before it waits,
// wakes it: the wait is closed already.
func TestChangeBeforeTheWaitIsSeen(t *testing.T) {
	var v Version
	seen := v.Load()
	v.Bump()
	if !isClosed(v.Changed(seen)) {
		t.Fatal("Changed(seen) is open after a Bump that followed seen")
	}
	if isClosed(v.Changed(v.Load())) {
		t.Fatal("Changed(current) is closed with no change since")
	}
}

// A reader waiting on the current version sleeps until the next Bump;
// every waiter wakes.
func TestBumpWakesEveryWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var v Version
		seen := v.Load()
		woke := make(chan struct{}, 3)
		for range 3 {
			go func() {
				<-v.Changed(seen)
				woke <- struct{}{}
			}()
		}
		synctest.Wait()
		if len(woke) != 0 {
			t.Fatal("a waiter woke with no change")
		}
		v.Bump()
		synctest.Wait()
		if len(woke) != 3 {
			t.Fatalf("%d of 3 waiters woke after a Bump", len(woke))
		}
	})
}
