package inspect_test

import (
	"testing"

	"github.com/reelq/reelq/internal/leaktest"
)

// TestMain checks that no test leaves a goroutine behind.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }
