package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reelq/reelq/internal/metrics"
	"github.com/reelq/reelq/internal/providerstate"
)

// A provider paused for any reason shows 1 on its code's series and 0 on
// the others; resumed, 0 everywhere. (Before, a pause for ambiguous
// submissions or an unknown submission showed 0 on every series: paused,
// yet invisible to reelq_provider_paused.)
func TestPausedShowsEveryCode(t *testing.T) {
	m := metrics.New(nil)
	codes := []string{providerstate.CodeCredits, providerstate.CodeAuth, providerstate.CodeManual,
		providerstate.CodeAmbiguous, providerstate.CodeUnknownSubmission, "a_future_code"}
	for _, code := range codes {
		m.SetPaused("p", code, true)
		for _, c := range codes {
			want := 0.0
			if c == code {
				want = 1
			}
			if got := testutil.ToFloat64(m.Paused.WithLabelValues("p", c)); got != want {
				t.Errorf("paused with %s: series %s = %g, want %g", code, c, got, want)
			}
		}
	}
	m.SetPaused("p", "", false)
	if n := testutil.CollectAndCount(m.Paused); n != 5 {
		t.Errorf("resumed: %d series, want the 5 known codes", n)
	}
	for _, c := range codes[:5] {
		if got := testutil.ToFloat64(m.Paused.WithLabelValues("p", c)); got != 0 {
			t.Errorf("resumed: series %s = %g", c, got)
		}
	}
}

func TestBudgetUsage(t *testing.T) {
	for used, want := range map[float64]string{0: "under_80", 0.79: "under_80", 0.8: "over_80", 0.99: "over_80", 1: "exhausted", 1.5: "exhausted"} {
		if got := metrics.BudgetUsage(used); got != want {
			t.Errorf("BudgetUsage(%g) = %s, want %s", used, got, want)
		}
	}
}
