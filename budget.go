package reelq

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/money"
)

const (
	ScopeBatch    = "batch"
	ScopeProvider = "provider"
)

// BudgetLimit is a spending limit: for one batch over its life, or for one
// provider per period (a day, say). Units are "usd" and "credits"; a limit
// binds only jobs whose estimate is in its unit.
type BudgetLimit struct {
	Scope  string  `json:"scope"`
	Name   string  `json:"name"`
	Amount float64 `json:"amount"`
	Unit   string  `json:"unit"`
	// Period is the accounting period of a provider limit (fixed windows
	// aligned to the Unix epoch in UTC, e.g. 24h from midnight UTC).
	Period time.Duration `json:"period,omitempty"`
	By     string        `json:"by,omitempty"`
	At     time.Time     `json:"at"`
	// Request is the id of the operator request that set a provider
	// limit (SetBudget waits for it).
	Request string `json:"request,omitempty"`
}

// Spend is what workers have spent and reserved against a budget scope.
// A reservation of the job's estimate is taken with one compare-and-set
// before every paid submission and settled when its outcome is known, so
// replicas racing at the edge of a budget cannot overspend by even one job.
type Spend struct {
	// Spent is the estimate of what was submitted, by unit (a job paid
	// twice through an ambiguous submission counts twice).
	Spent map[string]float64 `json:"spent,omitempty"`
	// Reserved is held for submissions in progress, by unit: the sum of
	// Holds (and of reservations taken before holds were recorded).
	Reserved map[string]float64 `json:"reserved,omitempty"`
	// Holds are the reservations in progress, by the submit token of the
	// delivery that took each: a reservation whose delivery died before
	// any job state named it is found and released by the job's next
	// delivery.
	Holds map[string]Hold `json:"holds,omitempty"`
	// Submissions counts paid submissions.
	Submissions int       `json:"submissions"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Hold is one reservation: the job, the amount, and the revision of the
// job's state the reserving delivery read (0: none existed), after which
// only that delivery's compare-and-set write could name it.
type Hold struct {
	Job    string    `json:"job"`
	Unit   string    `json:"unit"`
	Amount float64   `json:"amount"`
	Rev    uint64    `json:"state_rev,omitempty"`
	At     time.Time `json:"at"`
}

// ParseCost reads "500usd", "$500", "$1,443.96", "20000credits" or
// "20000 credits". The amount is a decimal, exact to a millionth (no
// exponent, sign or misplaced thousands separator: "1e3usd" and
// "1,0,0,0usd" are refused saying why).
func ParseCost(s string) (Cost, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	unit := ""
	switch {
	case strings.HasPrefix(t, "$"):
		t, unit = t[1:], "usd"
	case strings.HasSuffix(t, "usd"):
		t, unit = strings.TrimSuffix(t, "usd"), "usd"
	case strings.HasSuffix(t, "credits"):
		t, unit = strings.TrimSuffix(t, "credits"), "credits"
	case strings.HasSuffix(t, "credit"):
		t, unit = strings.TrimSuffix(t, "credit"), "credits"
	}
	if unit == "" {
		return Cost{}, fmt.Errorf("cost %q: want an amount and a unit, e.g. 500usd, $500 or 20000credits", s)
	}
	t = strings.TrimSpace(t)
	m, err := money.Parse(t)
	if err != nil {
		return Cost{}, fmt.Errorf("cost %q: amount %q: %v; write it in digits, e.g. 500usd, $1,443.96 or 20000credits", s, t, err)
	}
	return Cost{Amount: m.Float(), Unit: unit}, nil
}

// FormatCost renders an amount: "$1,443.96" or "36,000 credits".
func FormatCost(c Cost) string {
	if c.Unit == "usd" {
		return "$" + thousands(strconv.FormatFloat(c.Amount, 'f', 2, 64))
	}
	s := strconv.FormatFloat(c.Amount, 'f', -1, 64)
	return thousands(s) + " " + c.Unit
}

func thousands(s string) string {
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, r := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	out := b.String()
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}
