package main

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/reelq/reelq/internal/config"
	"github.com/reelq/reelq/internal/providers/all"
)

// providerView is one line of `enqueue providers`.
type providerView struct {
	Name        string  `json:"name"`
	Title       string  `json:"title"`
	EnvPrefix   string  `json:"env_prefix"`
	Enabled     bool    `json:"enabled"`
	Rate        float64 `json:"rate"`
	Burst       int     `json:"burst"`
	MaxInflight int     `json:"max_inflight"`
	Unit        string  `json:"unit"`
	Recovery    string  `json:"recovery"`
	PayOnce     string  `json:"pay_once"`
	Ambiguous   string  `json:"ambiguous"`
	Cancel      bool    `json:"cancel"`
}

func (a *app) providersCommand() *cobra.Command {
	var o output
	cmd := &cobra.Command{
		Use:   "providers",
		Short: "The providers reelq knows, as this environment configures them",
		Long: `Every provider reelq knows: its name (in job requests and subjects), its
variables' prefix, whether a worker with this environment runs it (it has an
API key, or P_ENABLED), its rate limit, burst and cap (P_RATE, P_BURST,
P_MAX_INFLIGHT, or the defaults), the unit its costs are estimated in, and how
it recovers a submission whose answer was lost: idempotency-key (the provider
honours a key reelq sends), lookup (reelq can find the task), or none. With
none, a lost answer may be paid twice (pay_once best_effort), so by default a
job estimated above P_HOLD_ABOVE is held for 'enqueue resolve' (AMBIGUOUS
column; P_AMBIGUOUS overrides). It reads no server.`,
		Example: `  enqueue providers
  enqueue providers -o json | jq -r '.[].name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			settings, err := config.ProviderSettings(a.environ)
			if err != nil {
				return exitf(exitUsage, "%v", err)
			}
			views := make([]providerView, 0, len(all.Specs))
			for _, s := range all.Specs {
				p := settings[s.Name()]
				amb := p.Ambiguous
				if amb == "" {
					amb = "resubmit"
					if s.Recovery.PayOnce() != "guaranteed" {
						amb = "hold above " + p.HoldAbove
					}
				}
				views = append(views, providerView{Name: s.Name(), Title: s.Kind.Title, EnvPrefix: s.Kind.Prefix(), Enabled: p.Active(),
					Rate: p.Rate, Burst: p.Burst, MaxInflight: p.MaxInflight, Unit: s.Kind.Unit, Recovery: string(s.Recovery),
					PayOnce: s.Recovery.PayOnce(), Ambiguous: amb, Cancel: s.Kind.Cancelable})
			}
			if o.json() {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(views)
			}
			t := &table{header: []string{"PROVIDER", "PREFIX", "ENABLED", "RATE/S", "BURST", "CAP", "UNIT", "RECOVERY", "PAY ONCE", "AMBIGUOUS", "CANCEL"}}
			for _, v := range views {
				t.addText(v.Name, v.EnvPrefix, yesNo(v.Enabled), strconv.FormatFloat(v.Rate, 'g', 3, 64), strconv.Itoa(v.Burst),
					strconv.Itoa(v.MaxInflight), v.Unit, v.Recovery, strings.ReplaceAll(v.PayOnce, "_", " "), v.Ambiguous, yesNo(v.Cancel))
			}
			t.write(a.stdout, a.color)
			return nil
		},
	}
	outputFlag(cmd, &o)
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
