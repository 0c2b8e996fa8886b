package dashboard_test

import (
	"testing"

	"github.com/reelq/reelq/internal/leaktest"
)

// Every goroutine the dashboard starts (live feeds, job watches, live
// pages) has an owner and stops with it.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }
