package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/archive"
	"github.com/reelq/reelq/internal/heartbeat"
	"github.com/reelq/reelq/internal/slots"
	"github.com/reelq/reelq/internal/wire"
)

// Stream, bucket and subject names: the public contract, defined in the
// reelq package and repeated here for the worker's convenience.
const (
	StreamJobs       = wire.StreamJobs
	StreamResults    = wire.StreamResults
	StreamEvents     = wire.StreamEvents
	StreamDLQ        = wire.StreamDLQ
	StreamAdvisories = wire.StreamAdvisories
	StreamControl    = wire.StreamControl
	StreamCounters   = wire.StreamCounters
	StreamBatches    = wire.StreamBatches

	BucketJobs      = wire.BucketJobs
	BucketProviders = wire.BucketProviders
	BucketRateLimit = wire.BucketRateLimit
	BucketCancel    = wire.BucketCancel
	BucketSlots     = slots.Bucket

	// MaxDeliveriesAdvisory is the subject the server publishes when a JOBS
	// message reached its consumer's MaxDeliver.
	MaxDeliveriesAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + StreamJobs + ".>"
)

// Layout holds the tunables of the streams and buckets.
type Layout struct {
	// Replicas is the replication factor of every stream and bucket (1 for
	// a single server, 3 for a cluster). Zero means 1.
	Replicas int
	// DedupeWindow is the JOBS and RESULTS duplicate window. Zero means 1h.
	DedupeWindow time.Duration
	// ResultsMaxAge is how long result events are kept. Zero means 30 days.
	ResultsMaxAge time.Duration
	// EventsMaxAge is how long progress/operator events are kept. Zero means 24h.
	EventsMaxAge time.Duration
	// DLQMaxAge is how long dead letters are kept. Zero means 30 days.
	DLQMaxAge time.Duration
	// JobStateTTL is how long job state is kept; it is also the window in
	// which re-enqueueing a job id is recognised. Zero means 30 days.
	JobStateTTL time.Duration
	// MaxJobBytes is the largest job message JOBS accepts. Zero means
	// reelq.MaxJobBytes (64 KiB).
	MaxJobBytes int32
	// JobsMaxBytes bounds the JOBS stream's storage: past it new jobs are
	// refused at publish time (discard new). Zero means 1 GiB; -1 no limit.
	JobsMaxBytes int64
	// Outputs creates the JetStream object store that archives outputs
	// (when the archive is "jetstream"), keeping each for OutputsRetention
	// (zero: JobStateTTL).
	Outputs          bool
	OutputsRetention time.Duration
}

func (l Layout) withDefaults() Layout {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if l.Replicas <= 0 {
		l.Replicas = 1
	}
	def(&l.DedupeWindow, time.Hour)
	def(&l.ResultsMaxAge, 30*24*time.Hour)
	def(&l.EventsMaxAge, 24*time.Hour)
	def(&l.DLQMaxAge, 30*24*time.Hour)
	def(&l.JobStateTTL, 30*24*time.Hour)
	if l.MaxJobBytes <= 0 {
		l.MaxJobBytes = reelq.MaxJobBytes
	}
	if l.JobsMaxBytes == 0 {
		l.JobsMaxBytes = 1 << 30
	}
	return l
}

// jobSubjects lists the subjects of every known provider's jobs: JOBS
// accepts nothing else, so a job for an unknown provider is refused at
// publish time instead of being stored forever.
func jobSubjects() []string {
	var out []string
	for _, p := range reelq.Providers {
		out = append(out, wire.JobSubjects(p)...)
	}
	return out
}

// StreamConfigs returns the configuration of every stream reelq uses.
func (l Layout) StreamConfigs() []jetstream.StreamConfig {
	l = l.withDefaults()
	return []jetstream.StreamConfig{
		{
			Name:        StreamJobs,
			Description: "reelq job requests, one subject per provider, priority and job",
			Subjects:    jobSubjects(),
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    l.Replicas,
			Duplicates:  l.DedupeWindow,
			Discard:     jetstream.DiscardNew,
			MaxMsgSize:  l.MaxJobBytes,
			MaxBytes:    l.JobsMaxBytes,
			AllowDirect: true,
		},
		{
			Name:        StreamResults,
			Description: "reelq result events, one per job run",
			Subjects:    []string{"results.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    l.Replicas,
			MaxAge:      l.ResultsMaxAge,
			Duplicates:  l.DedupeWindow,
			AllowDirect: true,
		},
		{
			Name:        StreamEvents,
			Description: "reelq progress and operator events",
			Subjects:    []string{"events.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    l.Replicas,
			MaxAge:      l.EventsMaxAge,
			Duplicates:  2 * time.Minute, // the server's default, stated so Setup sees no change
			AllowDirect: true,            // clients read events by direct get, never with a consumer
		},
		{
			Name:        StreamDLQ,
			Description: "reelq jobs that could not run, with their original payload",
			Subjects:    []string{"dlq.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    l.Replicas,
			MaxAge:      l.DLQMaxAge,
			Duplicates:  l.DedupeWindow,
			AllowDirect: true,
		},
		{
			Name:        StreamAdvisories,
			Description: "JetStream max-deliveries advisories for JOBS",
			Subjects:    []string{MaxDeliveriesAdvisory},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    l.Replicas,
			MaxAge:      l.DLQMaxAge,
			Duplicates:  2 * time.Minute,
		},
		{
			Name:        StreamControl,
			Description: "reelq operator requests carried out by the workers",
			Subjects:    []string{"control.>"},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    l.Replicas,
			MaxAge:      7 * 24 * time.Hour,
			Duplicates:  2 * time.Minute,
		},
		{
			Name:        StreamCounters,
			Description: "reelq per-batch and per-provider counters",
			Subjects:    []string{"counters.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    l.Replicas,
			MaxAge:      l.JobStateTTL,
			Duplicates:  l.DedupeWindow,
			// One message per counter: its value is the last one, and the
			// stream's tail is the counters updated last (recent batches).
			MaxMsgsPerSubject: 1,
			AllowMsgCounter:   true,
			AllowDirect:       true,
		},
		{
			Name:        StreamBatches,
			Description: "reelq batch index: chunks of job ids per batch",
			Subjects:    []string{"batches.*"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    l.Replicas,
			MaxAge:      l.JobStateTTL,
			Duplicates:  2 * time.Minute,
			AllowDirect: true,
		},
		heartbeat.StreamConfig(l.Replicas),
	}
}

// KeyValueConfigs returns the configuration of every bucket reelq uses.
func (l Layout) KeyValueConfigs() []jetstream.KeyValueConfig {
	l = l.withDefaults()
	return []jetstream.KeyValueConfig{
		{Bucket: BucketJobs, Description: "reelq job state", History: 1, TTL: l.JobStateTTL, Storage: jetstream.FileStorage, Replicas: l.Replicas},
		{Bucket: BucketProviders, Description: "reelq provider state (paused, reason)", History: 5, Storage: jetstream.FileStorage, Replicas: l.Replicas},
		// Soft state (a schedule per provider, written again when lost), in
		// memory: a file store fault cannot make it unwritable. Setup keeps
		// an existing file-stored bucket (a stream's storage cannot change);
		// deleting it once moves it (RELIABILITY.md).
		{Bucket: BucketRateLimit, Description: "reelq cluster-wide rate limits", History: 1, Storage: jetstream.MemoryStorage, Replicas: l.Replicas},
		{Bucket: BucketCancel, Description: "reelq cancel requests", History: 1, TTL: l.JobStateTTL, Storage: jetstream.FileStorage, Replicas: l.Replicas},
		slots.BucketConfig(l.Replicas),
		// No MaxAge: a provider limit stays until it is changed. Batch
		// limits and spend expire one by one (per-message TTLs, see
		// tuneBucket).
		{Bucket: wire.BucketBudgets, Description: "reelq budgets: limits and spend", History: 1, Storage: jetstream.FileStorage, Replicas: l.Replicas},
		// Kept as long as the counters: a tally no result moved for that
		// long expires, as a counter does. The fold's checkpoint is
		// written after every tally it moves, so it outlives them.
		{Bucket: wire.BucketTallies, Description: "reelq done and spend counts folded from RESULTS", History: 1, TTL: l.JobStateTTL, Storage: jetstream.FileStorage, Replicas: l.Replicas},
	}
}

// tuneBucket sets what Setup adds to the stream nats.go makes of a bucket
// (which always allows rollups). Rollups are refused: none of reelq's
// writes needs one (no KV Purge, whose "Nats-Rollup: sub" would), and
// NATS permissions cannot filter headers, so a role allowed to write one
// key could otherwise erase the whole bucket with "Nats-Rollup: all". The
// budgets bucket accepts per-message TTLs and says in its metadata how
// long batch limits and spend are kept (JobStateTTL).
func (l Layout) tuneBucket(sc *jetstream.StreamConfig) {
	sc.AllowRollup = false
	if sc.Name == "KV_"+wire.BucketBudgets {
		sc.AllowMsgTTL = true
		if sc.Metadata == nil {
			sc.Metadata = map[string]string{}
		}
		sc.Metadata[wire.BudgetsKeyTTLMetadata] = l.withDefaults().JobStateTTL.String()
	}
}

// Setup creates or updates every stream and bucket. It is idempotent and
// safe to run from every replica.
func Setup(ctx context.Context, js jetstream.JetStream, l Layout) error {
	for _, cfg := range l.StreamConfigs() {
		s, err := js.Stream(ctx, cfg.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			_, err = js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				err = nil // another replica was faster
			}
		case err == nil && !sameStream(s.CachedInfo().Config, cfg):
			_, err = js.UpdateStream(ctx, cfg)
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	for _, cfg := range l.KeyValueConfigs() {
		if err := l.setupBucket(ctx, js, cfg); err != nil {
			return fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
		}
	}
	if err := setupBudgetsEpoch(ctx, js); err != nil {
		return fmt.Errorf("bucket %s: %w", wire.BucketBudgets, err)
	}
	if l.Outputs {
		l = l.withDefaults()
		ret := l.OutputsRetention
		if ret <= 0 {
			ret = l.JobStateTTL
		}
		cfg := archive.BucketConfig(l.Replicas, ret)
		if os, err := js.ObjectStore(ctx, cfg.Bucket); err == nil {
			if st, err := os.Status(ctx); err == nil && st.TTL() == cfg.TTL && st.Replicas() == cfg.Replicas {
				return nil
			}
		}
		if _, err := js.CreateOrUpdateObjectStore(ctx, cfg); err != nil {
			return fmt.Errorf("object store %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}

// setupBucket creates or updates the bucket of cfg, then its stream's
// settings tuneBucket adds. The stream's metadata is kept (the budgets
// epoch lives there).
func (l Layout) setupBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) error {
	s, err := js.Stream(ctx, "KV_"+cfg.Bucket)
	if err == nil {
		have := s.CachedInfo().Config
		if l.sameBucket(have, cfg) {
			return nil // unchanged: no update (see sameStream)
		}
		cfg.Metadata = have.Metadata
		cfg.Storage = have.Storage // cannot change (see the rate limits' bucket)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return fmt.Errorf("unexpected bucket status %T", st)
	}
	sc := bs.StreamInfo().Config
	l.tuneBucket(&sc)
	_, err = js.UpdateStream(ctx, sc)
	return err
}

// SetupBucket creates or updates one of the layout's buckets as Setup
// does and returns it: a worker recreating a bucket it lost (the rate
// limits' bucket, package ratelimit's Repairable).
func SetupBucket(ctx context.Context, js jetstream.JetStream, l Layout, bucket string) (jetstream.KeyValue, error) {
	for _, cfg := range l.KeyValueConfigs() {
		if cfg.Bucket != bucket {
			continue
		}
		if err := l.setupBucket(ctx, js, cfg); err != nil {
			return nil, err
		}
		return js.KeyValue(ctx, bucket)
	}
	return nil, fmt.Errorf("bucket %s is not reelq's", bucket)
}

// sameBucket reports whether a bucket's stream already has cfg's
// settings, and tuneBucket's.
func (l Layout) sameBucket(have jetstream.StreamConfig, cfg jetstream.KeyValueConfig) bool {
	want := jetstream.StreamConfig{Name: have.Name}
	l.tuneBucket(&want)
	for k, v := range want.Metadata {
		if have.Metadata[k] != v {
			return false
		}
	}
	return have.MaxMsgsPerSubject == int64(cfg.History) && have.MaxAge == cfg.TTL && have.Replicas == cfg.Replicas &&
		have.Description == cfg.Description && have.AllowRollup == want.AllowRollup && have.AllowMsgTTL == want.AllowMsgTTL
}

// sameStream reports whether have already has want's settings. Setup only
// updates a stream that differs: every replica runs Setup at start, and an
// update racing a consumer creation triggers a data race in nats-server
// v2.15.2 (fileStore.UpdateConfig), found by the fault tests.
func sameStream(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention &&
		have.Storage == want.Storage && have.Replicas == want.Replicas && have.Duplicates == want.Duplicates &&
		have.MaxAge == want.MaxAge && have.Discard == want.Discard && have.Description == want.Description &&
		unlimited(int64(have.MaxMsgSize)) == unlimited(int64(want.MaxMsgSize)) && unlimited(have.MaxBytes) == unlimited(want.MaxBytes) &&
		have.AllowDirect == want.AllowDirect && unlimited(have.MaxMsgsPerSubject) == unlimited(want.MaxMsgsPerSubject) &&
		have.AllowMsgCounter == want.AllowMsgCounter
}

// unlimited maps the server's -1 ("no limit") and a config's 0 to one value.
func unlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// Ready checks that the streams and buckets exist, for readiness probes
// and for clients that must not create them. The rate limits' bucket is
// left out: its state is soft, a standalone server's restart drops it
// (memory storage), and the workers' limiters create it again when they
// next need it (or raise their own alarm).
func Ready(ctx context.Context, js jetstream.JetStream) error {
	for _, cfg := range (Layout{}).StreamConfigs() {
		if _, err := js.Stream(ctx, cfg.Name); err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	for _, cfg := range (Layout{}).KeyValueConfigs() {
		if cfg.Bucket == BucketRateLimit {
			continue
		}
		if _, err := js.KeyValue(ctx, cfg.Bucket); err != nil {
			return fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}

// ConsumerSettings are the per-provider consumer tunables.
type ConsumerSettings struct {
	// Window bounds the messages delivered and not yet acknowledged per
	// consumer (MaxAckPending): jobs running, jobs pulled ahead for
	// scheduling, jobs waiting for a retry. It is not the concurrency cap
	// (package slots enforces that). Zero means 100,000.
	Window int
	// AckWait is how long a delivery may go without an ack or heartbeat
	// before the server redelivers it.
	AckWait time.Duration
	// Cap is the provider's cluster-wide concurrency cap, recorded in the
	// consumer's metadata for stats (package slots enforces it).
	Cap int
	// Rate and Burst are the provider's rate limit, recorded the same way
	// (package ratelimit enforces it); zero records nothing.
	Rate  float64
	Burst int
	// MaxDeliver bounds deliveries of one message; past it the server stops
	// delivering and the dead-letter sweeper moves the job out. reelq counts
	// real attempts itself; this only stops crash loops.
	MaxDeliver int
}

// ConsumerConfig is the durable pull consumer for provider's jobs of
// priority p.
func ConsumerConfig(provider string, p reelq.Priority, s ConsumerSettings) jetstream.ConsumerConfig {
	if s.Window <= 0 {
		s.Window = 100_000
	}
	if s.AckWait <= 0 {
		s.AckWait = time.Minute
	}
	if s.MaxDeliver == 0 {
		s.MaxDeliver = 100
	}
	md := map[string]string{"reelq_provider": provider, "reelq_priority": string(p.Or()), "reelq_max_inflight": strconv.Itoa(s.Cap)}
	if s.Rate > 0 {
		md["reelq_rate"] = strconv.FormatFloat(s.Rate, 'g', -1, 64)
		md["reelq_burst"] = strconv.Itoa(s.Burst)
	}
	return jetstream.ConsumerConfig{
		Durable:        wire.ConsumerName(provider, p),
		Description:    "reelq " + string(p.Or()) + " priority jobs for " + provider,
		FilterSubjects: wire.ConsumerFilter(provider, p),
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        s.AckWait,
		MaxAckPending:  s.Window,
		MaxDeliver:     s.MaxDeliver,
		Metadata:       md,
	}
}

// EnsureConsumers creates or updates provider's three consumers (high,
// normal, low) and returns them by priority. The normal one goes first:
// before priorities existed it read every jobs.<provider>.> subject, and
// the others' filters may only be added once it no longer overlaps them.
// An update keeps the consumer's pause: without that, a replica starting
// up would resume a provider another replica paused.
func EnsureConsumers(ctx context.Context, js jetstream.JetStream, provider string, s ConsumerSettings) (map[reelq.Priority]jetstream.Consumer, error) {
	out := map[reelq.Priority]jetstream.Consumer{}
	for _, p := range []reelq.Priority{reelq.Normal, reelq.High, reelq.Low} {
		c, err := ensureConsumer(ctx, js, ConsumerConfig(provider, p, s))
		if err != nil {
			return nil, err
		}
		out[p] = c
	}
	return out, nil
}

func ensureConsumer(ctx context.Context, js jetstream.JetStream, want jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := js.Consumer(ctx, StreamJobs, want.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		c, err = js.CreateConsumer(ctx, StreamJobs, want)
		if errors.Is(err, jetstream.ErrConsumerExists) {
			return js.Consumer(ctx, StreamJobs, want.Durable)
		}
		if err != nil {
			return nil, fmt.Errorf("create consumer %s: %w", want.Durable, err)
		}
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("consumer %s: %w", want.Durable, err)
	}
	have := c.CachedInfo().Config
	if have.MaxAckPending == want.MaxAckPending && have.AckWait == want.AckWait && have.MaxDeliver == want.MaxDeliver &&
		slices.Equal(have.FilterSubjects, want.FilterSubjects) && have.Description == want.Description &&
		sameMetadata(have.Metadata, want.Metadata) {
		return c, nil
	}
	want.PauseUntil = have.PauseUntil
	c, err = js.UpdateConsumer(ctx, StreamJobs, want)
	if err != nil {
		return nil, fmt.Errorf("update consumer %s: %w", want.Durable, err)
	}
	return c, nil
}

// sameMetadata reports whether have carries want's keys with the same
// values (the server adds keys of its own, such as _nats.created.*).
func sameMetadata(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// ConsumerNames lists the consumers that carry provider's jobs, one per
// priority.
func ConsumerNames(provider string) []string {
	out := make([]string, 0, len(reelq.Priorities))
	for _, p := range reelq.Priorities {
		out = append(out, wire.ConsumerName(provider, p))
	}
	return out
}
