package samsar

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"reflect"
	"time"

	"github.com/reelq/reelq/internal/media"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/kind"
	"github.com/reelq/reelq/internal/providers/samsar/input"
	"github.com/reelq/reelq/internal/providersim"
)

//go:embed doc.md
var doc string

// Spec is Samsar for reelq. Samsar publishes no rate limit, so reelq
// starts conservatively; it renders several stages per movie, polled every
// 5 s. Its JS SDK sends an Idempotency-Key (the adapter sends the job
// id), but no document says the server honours it: Recovery is None.
var Spec = providers.Spec{
	Kind:       input.Kind,
	Limits:     providers.Limits{Rate: 1, Burst: 2, MaxInflight: 5, RequestTimeout: 60 * time.Second},
	Timings:    providers.Timings{PollInterval: 5 * time.Second, MaxPollInterval: 30 * time.Second, JobTimeout: 2 * time.Hour},
	Recovery:   providers.RecoveryNone,
	HoldAbove:  kind.Cost{Amount: 600, Unit: "credits", Basis: "a 60 s movie"},
	Expect:     expect,
	LinkExpiry: providers.LinkExpiry{Status: http.StatusNotFound},
	BaseURL:    DefaultBaseURL,
	Options:    reflect.TypeFor[Options](),
	New: providers.Build2(input.Kind, func(cfg providers.Config, o Options, in input.Options) providers.Provider {
		o.Input = in
		return New(cfg, o)
	}),
	Callbacks: &providers.Callbacks{}, // unsigned: the URL's MAC is the proof
	Sim:       providersim.API{Routes: simRoutes},
	Doc:       doc,
}

// expect: a movie is a video as long as the input's duration (the
// default tolerance: 10%, at least half a second).
func expect(raw json.RawMessage, _ providers.Output) media.Expect {
	e := media.Expect{Types: []string{"video/*"}}
	var in input.Input
	if json.Unmarshal(raw, &in) == nil && in.Duration > 0 {
		e.Duration = time.Duration(in.Duration * float64(time.Second))
	}
	return e
}
