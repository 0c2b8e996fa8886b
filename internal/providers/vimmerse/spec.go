package vimmerse

import (
	_ "embed"
	"net/http"
	"time"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/kind"
	"github.com/reelq/reelq/internal/providers/vimmerse/input"
	"github.com/reelq/reelq/internal/providersim"
)

//go:embed doc.md
var doc string

// Spec is Vimmerse for reelq. Its docs poll every 30 s for up to an hour
// (a sample workflow took about 10 minutes) and document a concurrency
// limit of unpublished size, so the cap is low. Every workflow's title
// names its job, but Vimmerse has no API to list or search workflows:
// Recovery is None.
var Spec = providers.Spec{
	Kind:       input.Kind,
	Limits:     providers.Limits{Rate: 1, Burst: 2, MaxInflight: 3, RequestTimeout: 60 * time.Second},
	Timings:    providers.Timings{PollInterval: 10 * time.Second, MaxPollInterval: 30 * time.Second, JobTimeout: 90 * time.Minute},
	Recovery:   providers.RecoveryNone,
	HoldAbove:  kind.Cost{Amount: 200, Unit: "credits", Basis: "twice the default template"},
	LinkExpiry: providers.LinkExpiry{Status: http.StatusForbidden},
	BaseURL:    DefaultBaseURL,
	New: providers.Build2(input.Kind, func(cfg providers.Config, _ struct{}, in input.Options) providers.Provider {
		return New(cfg, Options{Input: in})
	}),
	Callbacks: &providers.Callbacks{}, // unsigned: the URL's MAC is the proof
	Sim:       providersim.API{Routes: simRoutes},
	Doc:       doc,
}
