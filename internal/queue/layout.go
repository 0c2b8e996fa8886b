package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream, bucket and subject names: the public contract in DESIGN.md.
const (
	StreamJobs       = "JOBS"
	StreamResults    = "RESULTS"
	StreamEvents     = "EVENTS"
	StreamDLQ        = "DLQ"
	StreamAdvisories = "JOBS_ADVISORIES"

	BucketJobs      = "reelq_jobs"
	BucketProviders = "reelq_providers"
	BucketRateLimit = "reelq_ratelimit"

	// MaxDeliveriesAdvisory is the subject the server publishes when a JOBS
	// message reached its consumer's MaxDeliver.
	MaxDeliveriesAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + StreamJobs + ".>"
)

// JobSubject is where a job for provider is published. With an id the
// job has its own subject, so it can be found and purged (cancel).
func JobSubject(provider, id string) string {
	if id == "" {
		return "jobs." + provider
	}
	return "jobs." + provider + "." + id
}

// ResultSubject is where a job's terminal result event is published.
func ResultSubject(provider, id string) string { return "results." + provider + "." + id }

// ResultMsgID is the Nats-Msg-Id of a job's result event.
func ResultMsgID(id string) string { return "result:" + id }

// EventSubject is where progress and operator events about provider go.
func EventSubject(provider, kind string) string { return "events." + provider + "." + kind }

// DLQSubject is where a dead-lettered job's original payload goes.
func DLQSubject(provider, id string) string { return "dlq.jobs." + provider + "." + id }

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
	return l
}

// StreamConfigs returns the configuration of every stream reelq uses.
func (l Layout) StreamConfigs() []jetstream.StreamConfig {
	l = l.withDefaults()
	return []jetstream.StreamConfig{
		{
			Name:        StreamJobs,
			Description: "reelq job requests, one subject per provider",
			Subjects:    []string{"jobs.>"},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    l.Replicas,
			Duplicates:  l.DedupeWindow,
			Discard:     jetstream.DiscardNew,
		},
		{
			Name:        StreamResults,
			Description: "reelq result events, one per job",
			Subjects:    []string{"results.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    l.Replicas,
			MaxAge:      l.ResultsMaxAge,
			Duplicates:  l.DedupeWindow,
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
	}
}

// KeyValueConfigs returns the configuration of every bucket reelq uses.
func (l Layout) KeyValueConfigs() []jetstream.KeyValueConfig {
	l = l.withDefaults()
	return []jetstream.KeyValueConfig{
		{Bucket: BucketJobs, Description: "reelq job state", History: 1, TTL: l.JobStateTTL, Storage: jetstream.FileStorage, Replicas: l.Replicas},
		{Bucket: BucketProviders, Description: "reelq provider state (paused, reason)", History: 5, Storage: jetstream.FileStorage, Replicas: l.Replicas},
		{Bucket: BucketRateLimit, Description: "reelq cluster-wide rate limits", History: 1, Storage: jetstream.FileStorage, Replicas: l.Replicas},
	}
}

// Setup creates or updates every stream and bucket. It is idempotent and
// safe to run from every replica and from enqueue.
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
		if kv, err := js.KeyValue(ctx, cfg.Bucket); err == nil {
			if st, err := kv.Status(ctx); err == nil {
				if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && sameBucket(bs.StreamInfo().Config, cfg) {
					continue // unchanged: no update (see sameStream)
				}
			}
		}
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}

// sameBucket reports whether a bucket's stream already has cfg's settings.
func sameBucket(have jetstream.StreamConfig, cfg jetstream.KeyValueConfig) bool {
	return have.MaxMsgsPerSubject == int64(cfg.History) && have.MaxAge == cfg.TTL && have.Replicas == cfg.Replicas &&
		have.Description == cfg.Description
}

// sameStream reports whether have already has want's settings. Setup only
// updates a stream that differs: every replica runs Setup at start, and an
// update racing a consumer creation triggers a data race in nats-server
// v2.15.2 (fileStore.UpdateConfig), found by the fault tests.
func sameStream(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention &&
		have.Storage == want.Storage && have.Replicas == want.Replicas && have.Duplicates == want.Duplicates &&
		have.MaxAge == want.MaxAge && have.Discard == want.Discard && have.Description == want.Description
}

// Ensure creates the streams and buckets that do not exist yet, leaving
// existing ones as they are. enqueue uses it so that a producer with
// default settings never rewrites a cluster's configuration (e.g. its
// replica count).
func Ensure(ctx context.Context, js jetstream.JetStream, l Layout) error {
	for _, cfg := range l.StreamConfigs() {
		if _, err := js.Stream(ctx, cfg.Name); err == nil {
			continue
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
		if _, err := js.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
	}
	for _, cfg := range l.KeyValueConfigs() {
		if _, err := js.KeyValue(ctx, cfg.Bucket); err == nil {
			continue
		} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
		}
		if _, err := js.CreateKeyValue(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("create bucket %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}

// Ready checks that the streams and buckets exist, for readiness probes.
func Ready(ctx context.Context, js jetstream.JetStream) error {
	for _, name := range []string{StreamJobs, StreamResults, StreamEvents, StreamDLQ} {
		if _, err := js.Stream(ctx, name); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	for _, b := range []string{BucketJobs, BucketProviders, BucketRateLimit} {
		if _, err := js.KeyValue(ctx, b); err != nil {
			return fmt.Errorf("bucket %s: %w", b, err)
		}
	}
	return nil
}

// ConsumerSettings are the per-provider consumer tunables.
type ConsumerSettings struct {
	// MaxInflight is the cluster-wide cap on jobs in flight (MaxAckPending).
	MaxInflight int
	// AckWait is how long a delivery may go without an ack or heartbeat
	// before the server redelivers it.
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one message; past it the server stops
	// delivering and the dead-letter sweeper moves the job out. reelq counts
	// real attempts itself; this only stops crash loops.
	MaxDeliver int
}

// ConsumerConfig is the durable pull consumer for provider.
func ConsumerConfig(provider string, s ConsumerSettings) jetstream.ConsumerConfig {
	if s.MaxInflight <= 0 {
		s.MaxInflight = 1
	}
	if s.AckWait <= 0 {
		s.AckWait = time.Minute
	}
	if s.MaxDeliver == 0 {
		s.MaxDeliver = 100
	}
	return jetstream.ConsumerConfig{
		Durable:        provider,
		Description:    "reelq jobs for " + provider,
		FilterSubjects: []string{JobSubject(provider, ""), JobSubject(provider, ">")},
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        s.AckWait,
		MaxAckPending:  s.MaxInflight,
		MaxDeliver:     s.MaxDeliver,
		Metadata:       map[string]string{"reelq_provider": provider},
	}
}

// EnsureConsumer creates provider's consumer, or updates it when the
// settings changed. An update keeps the consumer's pause: without that, a
// replica starting up would resume a provider another replica paused.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, provider string, s ConsumerSettings) (jetstream.Consumer, error) {
	want := ConsumerConfig(provider, s)
	c, err := js.Consumer(ctx, StreamJobs, provider)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		c, err = js.CreateConsumer(ctx, StreamJobs, want)
		if errors.Is(err, jetstream.ErrConsumerExists) {
			return js.Consumer(ctx, StreamJobs, provider)
		}
		if err != nil {
			return nil, fmt.Errorf("create consumer %s: %w", provider, err)
		}
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("consumer %s: %w", provider, err)
	}
	have := c.CachedInfo().Config
	if have.MaxAckPending == want.MaxAckPending && have.AckWait == want.AckWait && have.MaxDeliver == want.MaxDeliver &&
		len(have.FilterSubjects) == len(want.FilterSubjects) {
		return c, nil
	}
	want.PauseUntil = have.PauseUntil
	c, err = js.UpdateConsumer(ctx, StreamJobs, want)
	if err != nil {
		return nil, fmt.Errorf("update consumer %s: %w", provider, err)
	}
	return c, nil
}
