// Package metrics defines reelq's Prometheus metrics. A nil *Metrics is
// valid and records nothing, so packages can be used without a registry.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the worker's collectors.
type Metrics struct {
	Jobs             *prometheus.CounterVec   // provider, outcome
	Attempts         *prometheus.CounterVec   // provider, result (retry, exhausted)
	InFlight         *prometheus.GaugeVec     // provider (running on this replica; the one in-flight gauge)
	CallDuration     *prometheus.HistogramVec // provider, op
	CallStatus       *prometheus.CounterVec   // provider, op, code
	RateLimitWait    *prometheus.HistogramVec // provider
	RateLimited      *prometheus.CounterVec   // provider (429s seen)
	Paused           *prometheus.GaugeVec     // provider, code
	Spend            *prometheus.CounterVec   // provider, unit
	AmbiguousSubmits *prometheus.CounterVec   // provider, resolution
	DeadLetters      *prometheus.CounterVec   // provider, reason
	JobDuration      *prometheus.HistogramVec // provider, outcome
	Waiting          *prometheus.GaugeVec     // provider (pulled ahead, not started)
	Slots            *prometheus.GaugeVec     // provider (cluster-wide slots this replica holds)
	Archives         *prometheus.CounterVec   // provider, result (archived, failed)
	ArchiveBytes     *prometheus.CounterVec   // provider
	ArchiveDuration  *prometheus.HistogramVec // provider
	OutputChecks     *prometheus.CounterVec   // provider, code (ok or a validation code)
	BudgetLimit      *prometheus.GaugeVec     // scope (provider), name, unit
	BudgetSpent      *prometheus.GaugeVec     // scope (provider), name, unit
	BatchBudgets     *prometheus.GaugeVec     // usage (a band; batches are unbounded, so no batch label)
	LimiterDown      *prometheus.GaugeVec     // provider (1: the limiter's shared state is unavailable)
	IllegalMoves     *prometheus.CounterVec   // provider, from, to (an engine bug)
}

// New creates the collectors and registers them with reg (if not nil).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reelq_jobs_total", Help: "Jobs finished, by provider and outcome (succeeded, failed, cancelled).",
		}, []string{"provider", "outcome"}),
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reelq_job_attempts_total", Help: "Job attempts that failed with a retryable error, by result (retry, exhausted).",
		}, []string{"provider", "result"}),
		InFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reelq_jobs_in_flight", Help: "Jobs this replica is running now (holding a slot; sum over replicas for the cluster).",
		}, []string{"provider"}),
		CallDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reelq_provider_call_duration_seconds", Help: "Provider HTTP call latency by operation.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10),
		}, []string{"provider", "op"}),
		CallStatus: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reelq_provider_calls_total", Help: "Provider calls by operation and HTTP status (0 = no response).",
		}, []string{"provider", "op", "code"}),
		RateLimitWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reelq_rate_limit_wait_seconds", Help: "Time spent waiting for the cluster-wide rate limiter before a provider call.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"provider"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reelq_provider_rate_limited_total", Help: "429 responses from the provider.",
		}, []string{"provider"}),
		Paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reelq_provider_paused", Help: "1 while the provider is paused, labelled with the reason code.",
		}, []string{"provider", "code"}),
		Spend: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reelq_estimated_spend_total", Help: "Estimated cost of accepted submissions, by unit (usd, credits).",
		}, []string{"provider", "unit"}),
		AmbiguousSubmits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reelq_ambiguous_submits_total", Help: "Submissions whose outcome was unknown after a crash, by resolution (recovered, resubmitted).",
		}, []string{"provider", "resolution"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reelq_dead_letters_total", Help: "Messages moved to the DLQ stream, by reason.",
		}, []string{"provider", "reason"}),
		IllegalMoves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reelq_engine_illegal_moves_total", Help: "Job state moves the engine's transition table does not allow (a bug; the log says which job), by from and to state.",
		}, []string{"provider", "from", "to"}),
		JobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reelq_job_duration_seconds", Help: "Time from enqueue to the result event.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2.5, 12),
		}, []string{"provider", "outcome"}),
		Waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reelq_jobs_waiting", Help: "Jobs this replica has pulled ahead and not started (ordered by priority and fairness key).",
		}, []string{"provider"}),
		Slots: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reelq_slots_held", Help: "Cluster-wide concurrency slots this replica holds.",
		}, []string{"provider"}),
		Archives: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reelq_outputs_archived_total", Help: "Outputs copied into the archive, by result (archived, failed).",
		}, []string{"provider", "result"}),
		ArchiveBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reelq_archive_bytes_total", Help: "Bytes copied into the archive.",
		}, []string{"provider"}),
		ArchiveDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reelq_archive_duration_seconds", Help: "Time to archive one output, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10),
		}, []string{"provider"}),
		OutputChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reelq_output_checks_total", Help: "Outputs checked as media, by result: ok, or the validation code (not_media, truncated, empty, duration_mismatch, missing_audio, wrong_type).",
		}, []string{"provider", "code"}),
		BudgetLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reelq_budget_limit", Help: "A provider's spending limit in force, by scope (provider), name and unit (batches: reelq_batch_budgets).",
		}, []string{"scope", "name", "unit"}),
		BudgetSpent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reelq_budget_spent", Help: "A provider's estimated spend in the current period against its limit, by scope (provider), name and unit.",
		}, []string{"scope", "name", "unit"}),
		BatchBudgets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reelq_batch_budgets", Help: "Batches with a spending limit, by how much of it is spent: usage under_80, over_80 (80% to 100%) or exhausted.",
		}, []string{"usage"}),
		LimiterDown: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reelq_rate_limiter_unavailable", Help: "1 while the provider's rate limiter cannot write its shared state (bucket reelq_ratelimit): no call to the provider goes out.",
		}, []string{"provider"}),
	}
	if reg != nil {
		reg.MustRegister(m.Jobs, m.Attempts, m.InFlight, m.CallDuration, m.CallStatus, m.RateLimitWait,
			m.RateLimited, m.Paused, m.Spend, m.AmbiguousSubmits, m.DeadLetters, m.IllegalMoves, m.JobDuration,
			m.Waiting, m.Slots, m.Archives, m.ArchiveBytes, m.ArchiveDuration, m.OutputChecks, m.BudgetLimit, m.BudgetSpent, m.BatchBudgets, m.LimiterDown)
	}
	return m
}

// JobDone records a finished job.
func (m *Metrics) JobDone(provider, outcome string, since time.Time) {
	if m == nil {
		return
	}
	m.Jobs.WithLabelValues(provider, outcome).Inc()
	if !since.IsZero() {
		m.JobDuration.WithLabelValues(provider, outcome).Observe(time.Since(since).Seconds())
	}
}

// Attempt records a failed retryable attempt.
func (m *Metrics) Attempt(provider, result string) {
	if m != nil {
		m.Attempts.WithLabelValues(provider, result).Inc()
	}
}

// Call records one provider call.
func (m *Metrics) Call(provider, op string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.CallDuration.WithLabelValues(provider, op).Observe(d.Seconds())
	m.CallStatus.WithLabelValues(provider, op, strconv.Itoa(status)).Inc()
	if status == 429 {
		m.RateLimited.WithLabelValues(provider).Inc()
	}
}

// Waited records time spent in the rate limiter.
func (m *Metrics) Waited(provider string, d time.Duration) {
	if m != nil {
		m.RateLimitWait.WithLabelValues(provider).Observe(d.Seconds())
	}
}

// pauseCodes are the reasons a provider is paused
// (internal/providerstate's Code constants): each has a series, 0 or 1.
var pauseCodes = []string{"credits_exhausted", "auth", "manual", "ambiguous_submits", "unknown_submission"}

// SetPaused records a provider's pause state: 1 on the series of its
// code (any code, listed or not), 0 on the others.
func (m *Metrics) SetPaused(provider, code string, paused bool) {
	if m == nil {
		return
	}
	m.Paused.DeletePartialMatch(prometheus.Labels{"provider": provider})
	for _, c := range pauseCodes {
		m.Paused.WithLabelValues(provider, c).Set(0)
	}
	if paused {
		m.Paused.WithLabelValues(provider, code).Set(1)
	}
}

// SetLimiterDown records whether provider's rate limiter is unavailable.
func (m *Metrics) SetLimiterDown(provider string, down bool) {
	if m == nil {
		return
	}
	v := 0.0
	if down {
		v = 1
	}
	m.LimiterDown.WithLabelValues(provider).Set(v)
}

// Spent records the estimated cost of an accepted submission.
func (m *Metrics) Spent(provider, unit string, amount float64) {
	if m != nil && amount > 0 {
		m.Spend.WithLabelValues(provider, unit).Add(amount)
	}
}

// Ambiguous records an ambiguous submission and how it was resolved.
func (m *Metrics) Ambiguous(provider, resolution string) {
	if m != nil {
		m.AmbiguousSubmits.WithLabelValues(provider, resolution).Inc()
	}
}

// DeadLettered records a message moved to the DLQ.
func (m *Metrics) DeadLettered(provider, reason string) {
	if m != nil {
		m.DeadLetters.WithLabelValues(provider, reason).Inc()
	}
}

// IllegalMove records a job state move the engine's table does not allow.
func (m *Metrics) IllegalMove(provider, from, to string) {
	if m != nil {
		m.IllegalMoves.WithLabelValues(provider, from, to).Inc()
	}
}

// SetEngine records a provider engine's running, waiting and held slots.
func (m *Metrics) SetEngine(provider string, running, waiting, slots int) {
	if m != nil {
		m.InFlight.WithLabelValues(provider).Set(float64(running))
		m.Waiting.WithLabelValues(provider).Set(float64(waiting))
		m.Slots.WithLabelValues(provider).Set(float64(slots))
	}
}

// Archived records one output's archiving.
func (m *Metrics) Archived(provider, result string, bytes int64, d time.Duration) {
	if m != nil {
		m.Archives.WithLabelValues(provider, result).Inc()
		if bytes > 0 {
			m.ArchiveBytes.WithLabelValues(provider).Add(float64(bytes))
		}
		m.ArchiveDuration.WithLabelValues(provider).Observe(d.Seconds())
	}
}

// OutputChecked records one output's media check: code is "ok" or one of
// internal/media's stable codes (a fixed set: the label stays bounded).
func (m *Metrics) OutputChecked(provider, code string) {
	if m != nil {
		m.OutputChecks.WithLabelValues(provider, code).Inc()
	}
}

// SetBudget records a provider budget's limit and spend.
func (m *Metrics) SetBudget(scope, name, unit string, limit, spent float64) {
	if m != nil {
		m.BudgetLimit.WithLabelValues(scope, name, unit).Set(limit)
		m.BudgetSpent.WithLabelValues(scope, name, unit).Set(spent)
	}
}

// Budget usage bands of reelq_batch_budgets.
const (
	UsageUnder80   = "under_80"
	UsageOver80    = "over_80"
	UsageExhausted = "exhausted"
)

// BudgetUsage is the band of a budget spent to the fraction used.
func BudgetUsage(used float64) string {
	switch {
	case used >= 1:
		return UsageExhausted
	case used >= 0.8:
		return UsageOver80
	}
	return UsageUnder80
}

// SetBatchBudgets records how many batch budgets are in each usage band.
func (m *Metrics) SetBatchBudgets(counts map[string]int) {
	if m == nil {
		return
	}
	for _, u := range []string{UsageUnder80, UsageOver80, UsageExhausted} {
		m.BatchBudgets.WithLabelValues(u).Set(float64(counts[u]))
	}
}
