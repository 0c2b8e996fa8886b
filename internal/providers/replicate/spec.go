package replicate

import (
	"context"
	_ "embed"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/kind"
	"github.com/reelq/reelq/internal/providers/replicate/input"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/webhook"
)

//go:embed doc.md
var doc string

// Spec is Replicate for reelq. Replicate allows 600 creates and 3000 other
// calls a minute (1 a second without a payment method), so reelq starts at
// 5 calls a second for all calls together; it documents no per-model
// concurrency limit. An API prediction's outputs are deleted after about
// an hour: LinkExpiry says so, and the worker archives at once. Replicate
// documents no idempotency key; predictions can be listed by time and
// matched by input, which cannot tell two jobs with the same input apart,
// so Recovery is None and a job estimated above $0.50 (or unpriced) is
// held after a submission with an unknown outcome.
var Spec = providers.Spec{
	Kind:       input.Kind,
	Limits:     providers.Limits{Rate: 5, Burst: 5, MaxInflight: 10, RequestTimeout: 60 * time.Second},
	Timings:    providers.Timings{PollInterval: 2 * time.Second, MaxPollInterval: 15 * time.Second, JobTimeout: 50 * time.Minute},
	Recovery:   providers.RecoveryNone,
	HoldAbove:  kind.Cost{Amount: 0.5, Unit: "usd", Basis: "a short clip"},
	LinkExpiry: providers.LinkExpiry{After: time.Hour, Status: http.StatusNotFound},
	BaseURL:    DefaultBaseURL,
	Options:    reflect.TypeFor[Options](),
	New: providers.Build2(input.Kind, func(cfg providers.Config, o Options, in input.Options) providers.Provider {
		o.Input = in
		return New(cfg, o)
	}),
	Callbacks: &providers.Callbacks{Check: callbackCheck},
	Sim:       providersim.API{Base: simBase, Routes: simRoutes},
	Doc:       doc,
}

// callbackCheck verifies Replicate's webhooks with the account's secret
// (Standard Webhooks).
func callbackCheck(environ map[string]string) (providers.CallbackCheck, error) {
	var o Options
	prefix := input.Kind.Prefix()
	if err := kind.ParseOptions(&o, prefix, environ); err != nil {
		return providers.CallbackCheck{}, err
	}
	if o.WebhookSecretFile != "" {
		b, err := os.ReadFile(o.WebhookSecretFile)
		if err != nil {
			return providers.CallbackCheck{}, fmt.Errorf("%sWEBHOOK_SECRET_FILE: %w", prefix, err)
		}
		o.WebhookSecret = strings.TrimSpace(string(b))
	}
	if o.WebhookSecret == "" {
		return providers.CallbackCheck{}, fmt.Errorf("%sWEBHOOK_SECRET: required with %sCALLBACKS=true (GET /v1/webhooks/default/secret answers it)", prefix, prefix)
	}
	s, err := webhook.NewSecrets(o.WebhookSecret)
	if err != nil {
		return providers.CallbackCheck{}, fmt.Errorf("%sWEBHOOK_SECRET: %w", prefix, err)
	}
	return providers.CallbackCheck{Secrets: []string{o.WebhookSecret},
		Verify: func(_ context.Context, h http.Header, body []byte, now time.Time) error {
			return s.Verify(h, body, now)
		}}, nil
}
