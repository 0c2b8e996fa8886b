package segmind

import (
	_ "embed"
	"net/http"
	"reflect"
	"time"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/kind"
	"github.com/reelq/reelq/internal/providers/segmind/input"
	"github.com/reelq/reelq/internal/providersim"
)

//go:embed doc.md
var doc string

// Spec is Segmind for reelq. Its Pro plan allows 50 requests a minute;
// it asks for a poll every 7 s; output links expire after about an hour.
// It takes no client reference or idempotency key: Recovery is None.
var Spec = providers.Spec{
	Kind:       input.Kind,
	Limits:     providers.Limits{Rate: 50.0 / 60, Burst: 2, MaxInflight: 5, RequestTimeout: 60 * time.Second},
	Timings:    providers.Timings{PollInterval: 7 * time.Second, MaxPollInterval: 30 * time.Second, JobTimeout: time.Hour},
	Recovery:   providers.RecoveryNone,
	HoldAbove:  kind.Cost{Amount: 5, Unit: "usd", Basis: "about two runs of the storyboard workflow"},
	LinkExpiry: providers.LinkExpiry{After: time.Hour, Status: http.StatusNotFound},
	BaseURL:    DefaultBaseURL,
	Options:    reflect.TypeFor[Options](),
	New: providers.Build2(input.Kind, func(cfg providers.Config, o Options, in input.Options) providers.Provider {
		o.Input = in
		return New(cfg, o)
	}),
	Sim: providersim.API{Routes: simRoutes},
	Doc: doc,
}
