package zz

import (
	_ "embed"
	"net/http"
	"time"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/kind"
	"github.com/reelq/reelq/internal/providers/zz/input"
	"github.com/reelq/reelq/internal/providersim"
)

//go:embed doc.md
var doc string

// Spec is zz for reelq.
var Spec = providers.Spec{
	Kind:       input.Kind,
	Limits:     providers.Limits{Rate: 2, Burst: 1, MaxInflight: 2, RequestTimeout: 30 * time.Second},
	Timings:    providers.Timings{PollInterval: time.Second, MaxPollInterval: 5 * time.Second, JobTimeout: time.Hour},
	Recovery:   providers.RecoveryNone,
	HoldAbove:  kind.Cost{Amount: 100, Unit: "credits"},
	LinkExpiry: providers.LinkExpiry{Status: http.StatusNotFound},
	BaseURL:    "https://api.zz.example",
	New: func(cfg providers.Config, environ map[string]string) (providers.Provider, error) {
		var o input.Options
		if err := kind.ParseOptions(&o, input.Kind.Prefix(), environ); err != nil {
			return nil, err
		}
		return New(cfg, o), nil
	},
	Sim: providersim.API{Routes: simRoutes},
	Doc: doc,
}
