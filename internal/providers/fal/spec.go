package fal

import (
	_ "embed"
	"net/http"
	"reflect"
	"time"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/fal/input"
	"github.com/reelq/reelq/internal/providers/kind"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/webhook"
)

//go:embed doc.md
var doc string

// Spec is fal.ai for reelq. fal has no per-minute limit but a per-account
// concurrency limit (2 for a new account, up to 40) on running requests;
// excess requests wait in fal's queue and are never rejected, so the cap
// is reelq's own choice and a per-model cap would add nothing. The queue
// documents no idempotency key and no way to find a request by a
// reference sent with it: Recovery is None, and a job estimated above
// $0.50 (or unpriced) is held after a submission with an unknown outcome.
var Spec = providers.Spec{
	Kind:       input.Kind,
	Limits:     providers.Limits{Rate: 5, Burst: 5, MaxInflight: 10, RequestTimeout: 60 * time.Second},
	Timings:    providers.Timings{PollInterval: 3 * time.Second, MaxPollInterval: 20 * time.Second, JobTimeout: time.Hour},
	Recovery:   providers.RecoveryNone,
	HoldAbove:  kind.Cost{Amount: 0.5, Unit: "usd", Basis: "a short clip"},
	LinkExpiry: providers.LinkExpiry{After: DefaultOutputLifetime, Status: http.StatusNotFound},
	BaseURL:    DefaultBaseURL,
	Options:    reflect.TypeFor[Options](),
	New: providers.Build2(input.Kind, func(cfg providers.Config, o Options, in input.Options) providers.Provider {
		o.Input = in
		return New(cfg, o)
	}),
	Callbacks: &providers.Callbacks{Check: func(environ map[string]string) (providers.CallbackCheck, error) {
		var o Options
		if err := kind.ParseOptions(&o, input.Kind.Prefix(), environ); err != nil {
			return providers.CallbackCheck{}, err
		}
		return providers.CallbackCheck{Verify: (&webhook.Fal{JWKSURL: o.JWKSURL}).Verify}, nil
	}},
	Sim: providersim.API{Base: "/fal", Routes: simRoutes},
	Doc: doc,
}
