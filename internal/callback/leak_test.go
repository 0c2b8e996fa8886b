package callback

import (
	"testing"

	"github.com/reelq/reelq/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }
