package camb

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"time"

	"github.com/reelq/reelq/internal/media"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/camb/input"
	"github.com/reelq/reelq/internal/providers/kind"
	"github.com/reelq/reelq/internal/providersim"
)

//go:embed doc.md
var doc string

// Spec is Camb.ai for reelq. Its examples poll every 3-5 s; its audio
// links expire 24 hours after they are fetched. Camb reports missing
// credits on the poll (a task that ends PAYMENT_REQUIRED did not run and
// was not paid for), so a successful create proves nothing about the
// account: CreditsOnPoll. The story API takes no client reference and
// cannot list tasks: Recovery is None.
var Spec = providers.Spec{
	Kind:          input.Kind,
	Limits:        providers.Limits{Rate: 1, Burst: 2, MaxInflight: 5, RequestTimeout: 60 * time.Second},
	Timings:       providers.Timings{PollInterval: 5 * time.Second, MaxPollInterval: 30 * time.Second, JobTimeout: 2 * time.Hour},
	Recovery:      providers.RecoveryNone,
	HoldAbove:     kind.Cost{Amount: 10, Unit: "credits", Basis: "ten stories at the default estimate"},
	CreditsOnPoll: true,
	Expect:        expect,
	LinkExpiry:    providers.LinkExpiry{After: 24 * time.Hour, Status: http.StatusForbidden},
	BaseURL:       DefaultBaseURL,
	New: providers.Build2(input.Kind, func(cfg providers.Config, _ struct{}, in input.Options) providers.Provider {
		return New(cfg, Options{Input: in})
	}),
	Sim: providersim.API{Base: "/apis", Routes: simRoutes},
	Doc: doc,
}

// expect: a story's "audio" output is audio; its "dialogue" is the
// dialogue as audio or as a JSON document. The text sets no duration.
func expect(_ json.RawMessage, out providers.Output) media.Expect {
	if out.Name == "dialogue" {
		return media.Expect{Types: []string{"audio/*", "application/json"}}
	}
	return media.Expect{Types: []string{"audio/*"}}
}
