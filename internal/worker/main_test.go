package worker_test

import (
	"testing"

	"github.com/reelq/reelq/internal/leaktest"
)

// Every goroutine the worker starts has an owner and stops with it.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }
