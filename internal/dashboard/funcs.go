package dashboard

import (
	"fmt"
	"html/template"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/reelq/reelq"
)

var funcs = template.FuncMap{
	"frag":   func(string, *page) (template.HTML, error) { return "", nil }, // replaced per server
	"live":   liveURL,
	"commas": commas,
	"cost": func(v float64, unit string) string {
		return reelq.FormatCost(reelq.Cost{Amount: round(v, unit), Unit: unit})
	},
	"costOf": costOf,
	"f1":     func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"pct":    func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) + "%" },
	"rel":    rel,
	"relp":   func(t *time.Time) template.HTML { return relPtr(t) },
	"abs":    func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
	"phase":  func(p reelq.Phase) string { return string(p) },
	"units":  units,
	"queued": func(p providerRow, prio string) uint64 { return p.Queued[reelq.Priority(prio)] },
	"uint":   func(v int) uint64 { return uint64(max(v, 0)) },
	"resultOf": func(st *reelq.JobState) *reelq.Result {
		if st == nil || st.Phase != reelq.PhaseFinished {
			return nil
		}
		return st.StoredResult()
	},
	"bytes":      bytesText,
	"attempts":   attempts,
	"stateClass": func(s string) string { return strings.Fields(s)[0] },
	"throughputChart": func(c providerCharts, d *activityData) template.HTML {
		return chartSVG(c.Provider+": submissions and results per "+d.Range.Per, d.From, d.To,
			chartLine{"s-submits", "paid submissions", c.Submits}, chartLine{"s-ok", "succeeded", c.Succeeded},
			chartLine{"s-fail", "failed", c.Failed}, chartLine{"s-cancel", "cancelled", c.Cancelled})
	},
	"spendChart": func(c providerCharts, d *activityData) template.HTML {
		var lines []chartLine
		for _, u := range units(c.TotalSpent) {
			lines = append(lines, chartLine{"s-spend-" + u, "estimated spend (" + u + ")", c.Spent[u]})
		}
		return chartSVG(c.Provider+": estimated spend per "+d.Range.Per, d.From, d.To, lines...)
	},
	"queueChart": func(c providerCharts, d *activityData) template.HTML {
		return chartSVG(c.Provider+": jobs queued and slots in use", d.From, d.To,
			chartLine{"s-queue", "queued (JOBS)", c.Queued}, chartLine{"s-slots", "slots in use", c.Slots})
	},
	"note": note,
	"formTime": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(filterForm)
	},
	"deref": func(p *float64) float64 {
		if p == nil {
			return 0
		}
		return *p
	},
	"until": func(t *time.Time, now time.Time) string {
		if t == nil {
			return ""
		}
		d := t.Sub(now)
		if d <= 0 {
			return "now"
		}
		return "in " + roundDur(d)
	},
	"retryable": func(d *jobData) bool {
		return d.State.Phase == reelq.PhaseFinished && d.Result != nil && d.Result.Status != reelq.StatusSucceeded
	},
}

func round(v float64, unit string) float64 {
	if unit == "usd" {
		return math.Round(v*100) / 100
	}
	return math.Round(v*10) / 10
}

func costOf(c *reelq.Cost) string {
	if c == nil {
		return ""
	}
	return reelq.FormatCost(reelq.Cost{Amount: round(c.Amount, c.Unit), Unit: c.Unit})
}

// units lists a spend map's units in a stable order.
func units(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for u := range m {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

func commas(v any) string {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		n = int64(x)
	case uint:
		n = int64(x)
	default:
		return fmt.Sprint(v)
	}
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " B"
}

func roundDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

// rel is a <time> element the page's script keeps relative ("3s ago").
func rel(t time.Time) template.HTML {
	if t.IsZero() {
		return "—"
	}
	d := time.Since(t)
	text := roundDur(d.Abs()) + " ago"
	if d < 0 {
		text = "in " + roundDur(-d)
	}
	return template.HTML(fmt.Sprintf(`<time datetime="%s" title="%s">%s</time>`,
		t.UTC().Format(time.RFC3339Nano), t.Local().Format("2006-01-02 15:04:05 MST"), template.HTMLEscapeString(text)))
}

func relPtr(t *time.Time) template.HTML {
	if t == nil {
		return "—"
	}
	return rel(*t)
}

// attempts is a job's attempts as its result counts them once it has
// one (the failed attempts and the last), else the failed attempts of
// its current run so far: what enqueue status and the result say.
func attempts(st *reelq.JobState) int {
	if st == nil {
		return 0
	}
	if r := st.StoredResult(); st.Phase == reelq.PhaseFinished && r != nil {
		return max(st.Attempts, r.Attempts)
	}
	return st.Attempts
}

// note is the one line a job list says about a job: why it is held, its
// error, or its last error while it runs.
func note(st *reelq.JobState) string {
	switch {
	case st.Phase == reelq.PhaseHeld:
		return "held: " + st.HeldReason
	case st.Phase == reelq.PhaseFinished:
		if r := st.StoredResult(); r != nil && r.Error != nil {
			return r.Error.Code + ": " + r.Error.Message
		}
		return ""
	}
	return st.LastError
}
