// Package providerstate records whether a provider is paused, why and
// since when, in a NATS KV bucket shared by every replica. Every replica
// follows the record (Watch, View) and starts no new paid call while it
// lasts; jobs whose task already runs at the provider (submitted,
// archiving) are still polled and archived, by whichever replica holds
// them, redeliveries included. So the provider's JOBS consumers are not
// paused on the server: an older release did that, which froze those
// redeliveries with the rest, and Enforce lifts such a pause.
//
// A pause is either automatic (credits exhausted: a probe checks again at
// NextProbeAt, backing off while the account stays empty) or manual (auth
// failures and `enqueue pause`: only `enqueue resume` ends it, since a bad
// key will not fix itself). Writes are compare-and-set, so concurrent
// pausers merge instead of overwriting each other.
package providerstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/changes"
	"github.com/reelq/reelq/internal/kvwatch"
)

// Pause codes.
const (
	CodeCredits = "credits_exhausted"
	CodeAuth    = "auth"
	CodeManual  = "manual"
	// CodeAmbiguous: several submissions in a short window got no answer
	// (the provider may be creating tasks it does not report).
	CodeAmbiguous = "ambiguous_submits"
	// CodeUnknownSubmission: a submission was accepted without a task id.
	CodeUnknownSubmission = "unknown_submission"
)

// State is one provider's record.
type State struct {
	Provider string `json:"provider"`
	Paused   bool   `json:"paused"`
	// Code says why: credits_exhausted, auth or manual.
	Code   string     `json:"code,omitempty"`
	Reason string     `json:"reason,omitempty"`
	Since  *time.Time `json:"since,omitempty"`
	// NextProbeAt is when a replica may check whether the cause is gone;
	// nil for a pause that only an operator ends.
	NextProbeAt *time.Time `json:"next_probe_at,omitempty"`
	// ProbeInterval is the current wait between probes; it doubles while
	// probes keep failing.
	ProbeInterval time.Duration `json:"probe_interval,omitempty"`
	// ProbeOwner is the replica running the current probe, until ProbeUntil.
	ProbeOwner string     `json:"probe_owner,omitempty"`
	ProbeUntil *time.Time `json:"probe_until,omitempty"`
	// By is who paused or resumed last (a replica id or "enqueue").
	By string `json:"by,omitempty"`
	// Ambiguous holds the times of recent submissions that got no answer
	// (see NoteAmbiguous); it survives pauses and resumes.
	Ambiguous []time.Time `json:"ambiguous,omitempty"`
	// Limiter is set while the provider's rate limiter cannot write its
	// shared state (see SetLimiterAlarm); it survives pauses and resumes.
	Limiter   *LimiterAlarm `json:"limiter,omitempty"`
	UpdatedAt time.Time     `json:"updated_at"`
}

// LimiterAlarm says a provider's rate limiter has found its shared state
// unwritable for longer than its bound: no call to the provider goes out
// until a write works again (or the bucket is repaired).
type LimiterAlarm struct {
	Bucket string    `json:"bucket"`
	Error  string    `json:"error"` // the server's error, as the replica saw it
	Since  time.Time `json:"since"`
	By     string    `json:"by"` // the replica that raised it
}

// Auto reports whether a probe may end the pause.
func (s State) Auto() bool { return s.Paused && s.NextProbeAt != nil }

// Store manages provider state for the consumers of one stream.
type Store struct {
	kv        jetstream.KeyValue
	js        jetstream.JetStream
	stream    string
	consumers func(provider string) []string
	now       func() time.Time
	// MaxProbeInterval caps the probe back-off. Zero means 10 minutes.
	MaxProbeInterval time.Duration

	mu    sync.Mutex
	cache map[string]cached
	ver   changes.Version // of cache, bumped under mu
}

// cached is a provider's record in the local view, with its KV revision.
type cached struct {
	st  State
	rev uint64
}

// New returns a Store for the consumers of stream, keeping state in kv.
// consumers names the consumers that carry a provider's jobs (nil: one,
// named after the provider); a pause applies to all of them.
func New(js jetstream.JetStream, kv jetstream.KeyValue, stream string, consumers func(provider string) []string) *Store {
	if consumers == nil {
		consumers = func(p string) []string { return []string{p} }
	}
	return &Store{kv: kv, js: js, stream: stream, consumers: consumers, now: time.Now, cache: map[string]cached{}}
}

// Get reads provider's state from the bucket; a provider never paused has
// the zero state.
func (s *Store) Get(ctx context.Context, provider string) (State, uint64, error) {
	e, err := s.kv.Get(ctx, provider)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return State{Provider: provider}, 0, nil
	}
	if err != nil {
		return State{}, 0, fmt.Errorf("provider state %s: %w", provider, err)
	}
	var st State
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return State{}, 0, fmt.Errorf("decode provider state %s: %w", provider, err)
	}
	return st, e.Revision(), nil
}

// mutate applies fn with compare-and-set, retrying on conflict. fn returns
// false to skip the write. It returns the resulting state, its revision
// and whether it wrote.
func (s *Store) mutate(ctx context.Context, provider string, fn func(st *State) bool) (State, uint64, bool, error) {
	for range 100 {
		st, rev, err := s.Get(ctx, provider)
		if err != nil {
			return st, 0, false, err
		}
		read := st
		if !fn(&st) {
			// What we read may be newer than the local view (the watcher
			// lags, or stopped): refresh it, so a replica does not keep
			// acting on a state that is gone.
			s.store(read, rev)
			return read, rev, false, nil
		}
		st.Provider = provider
		st.UpdatedAt = s.now().UTC()
		data, _ := json.Marshal(st)
		var nrev uint64
		if rev == 0 {
			nrev, err = s.kv.Create(ctx, provider, data)
		} else {
			nrev, err = s.kv.Update(ctx, provider, data, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return st, 0, false, fmt.Errorf("write provider state %s: %w", provider, err)
		}
		s.store(st, nrev)
		return st, nrev, true, nil
	}
	return State{}, 0, false, fmt.Errorf("provider state %s: too many concurrent writers", provider)
}

// Pause pauses provider for every replica. With probeAfter > 0 the pause is
// automatic: a probe may end it after probeAfter (doubling on each failed
// probe up to MaxProbeInterval); with 0 only Resume ends it. Pausing an
// already paused provider never shortens the pause, and a manual pause
// overrides an automatic one. It reports whether the state changed.
func (s *Store) Pause(ctx context.Context, provider, code, reason, by string, probeAfter time.Duration) (State, bool, error) {
	now := s.now().UTC()
	maxProbe := s.MaxProbeInterval
	if maxProbe <= 0 {
		maxProbe = 10 * time.Minute
	}
	st, _, changed, err := s.mutate(ctx, provider, func(st *State) bool {
		manual := probeAfter <= 0
		switch {
		case !st.Paused:
			*st = State{Paused: true, Code: code, Reason: reason, Since: &now, By: by, Ambiguous: st.Ambiguous, Limiter: st.Limiter}
			if !manual {
				next := now.Add(probeAfter)
				st.NextProbeAt, st.ProbeInterval = &next, probeAfter
			}
			return true
		case !st.Auto():
			return false // a manual pause stays until an operator resumes
		case manual:
			st.Code, st.Reason, st.By = code, reason, by
			st.NextProbeAt, st.ProbeInterval, st.ProbeOwner, st.ProbeUntil = nil, 0, "", nil
			return true
		case st.NextProbeAt.After(now) && st.ProbeOwner == "":
			return false // paused already, no probe has run since
		default:
			// A probe (or a job admitted by it) failed: back off.
			iv := min(max(st.ProbeInterval*2, probeAfter), maxProbe)
			next := now.Add(iv)
			st.NextProbeAt, st.ProbeInterval, st.ProbeOwner, st.ProbeUntil = &next, iv, "", nil
			st.Reason, st.By = reason, by
			return true
		}
	})
	return st, changed, err
}

// liftServerPause resumes the provider's consumers on the server where
// they are paused (by an older release, or by hand): a pause holds paid
// calls in the replicas, never deliveries.
func (s *Store) liftServerPause(ctx context.Context, provider string) error {
	for _, name := range s.consumers(provider) {
		c, err := s.js.Consumer(ctx, s.stream, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("consumer %s: %w", name, err)
		}
		if !c.CachedInfo().Paused {
			continue
		}
		if _, err := s.js.ResumeConsumer(ctx, s.stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("resume consumer %s: %w", name, err)
		}
	}
	return nil
}

// NoteAmbiguous records a submission of provider that got no answer and
// returns how many were recorded within window (this one included),
// cluster-wide.
func (s *Store) NoteAmbiguous(ctx context.Context, provider string, window time.Duration) (int, error) {
	now := s.now().UTC()
	st, _, _, err := s.mutate(ctx, provider, func(st *State) bool {
		keep := st.Ambiguous[:0:0]
		for _, t := range st.Ambiguous {
			if now.Sub(t) < window {
				keep = append(keep, t)
			}
		}
		st.Ambiguous = append(keep, now)
		return true
	})
	if err != nil {
		return 0, err
	}
	return len(st.Ambiguous), nil
}

// Enforce reads provider's record into the local view and lifts a pause
// of its consumers on the server (a replica does this at start-up, after
// creating or updating the consumers).
func (s *Store) Enforce(ctx context.Context, provider string) (State, error) {
	st, rev, err := s.Get(ctx, provider)
	if err != nil {
		return st, err
	}
	s.store(st, rev)
	return st, s.liftServerPause(ctx, provider)
}

// Resume ends provider's pause, whatever its kind, for every replica, and
// lifts a pause of its consumers on the server (even if the record was
// not paused, so an operator can always get deliveries going). It reports
// whether the provider was paused.
func (s *Store) Resume(ctx context.Context, provider, by string) (bool, error) {
	return s.resume(ctx, provider, by, false)
}

// EndAuto ends provider's pause only if it is automatic (credits): a probe
// found the account working again. A manual or auth pause, which may have
// replaced the automatic one since the caller looked, stays.
func (s *Store) EndAuto(ctx context.Context, provider, by string) (bool, error) {
	return s.resume(ctx, provider, by, true)
}

func (s *Store) resume(ctx context.Context, provider, by string, autoOnly bool) (bool, error) {
	_, _, changed, err := s.mutate(ctx, provider, func(st *State) bool {
		if !st.Paused || (autoOnly && !st.Auto()) {
			return false
		}
		*st = State{By: by, Limiter: st.Limiter}
		return true
	})
	if err != nil || autoOnly {
		return changed, err
	}
	return changed, s.liftServerPause(ctx, provider)
}

// SetLimiterAlarm raises (a set) or clears (nil) the provider's limiter
// alarm for every reader (stats, the dashboard). Raising keeps an alarm
// already raised (and its start); clearing clears whoever raised it: a
// write that worked proves the bucket writable. It reports whether the
// record changed.
func (s *Store) SetLimiterAlarm(ctx context.Context, provider string, a *LimiterAlarm) (bool, error) {
	_, _, changed, err := s.mutate(ctx, provider, func(st *State) bool {
		if (a == nil) == (st.Limiter == nil) {
			return false
		}
		st.Limiter = a
		return true
	})
	return changed, err
}

// ClaimProbe lets one replica (owner) check whether an automatic pause can
// end: it succeeds only if the probe time has come and no other replica
// holds an unexpired claim. The claim lasts ttl.
func (s *Store) ClaimProbe(ctx context.Context, provider, owner string, ttl time.Duration) (bool, error) {
	now := s.now().UTC()
	_, _, changed, err := s.mutate(ctx, provider, func(st *State) bool {
		if !st.Auto() || st.NextProbeAt.After(now) {
			return false
		}
		if st.ProbeOwner != "" && st.ProbeOwner != owner && st.ProbeUntil != nil && st.ProbeUntil.After(now) {
			return false
		}
		until := now.Add(ttl)
		st.ProbeOwner, st.ProbeUntil = owner, &until
		return true
	})
	return changed, err
}

// ReleaseProbe gives up owner's probe claim without a verdict (the probe
// job did not reach the paid call), so another probe may run at once.
func (s *Store) ReleaseProbe(ctx context.Context, provider, owner string) error {
	_, _, _, err := s.mutate(ctx, provider, func(st *State) bool {
		if st.ProbeOwner != owner {
			return false
		}
		st.ProbeOwner, st.ProbeUntil = "", nil
		return true
	})
	return err
}

// Watch keeps the local view (View, Changed) current until ctx ends. It
// returns once the initial values are loaded, with a channel closed when
// the watcher goroutine it started stops: with ctx, or on its own when the
// server ends the watch (the caller restarts it then).
func (s *Store) Watch(ctx context.Context) (<-chan struct{}, error) {
	return kvwatch.Follow(ctx, s.kv, "provider state", func(e jetstream.KeyValueEntry, _ bool) {
		var st State
		if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &st) == nil {
			st.Provider = e.Key()
		} else {
			st = State{Provider: e.Key()}
		}
		s.store(st, e.Revision())
	})
}

// store puts st, the record at revision rev, in the local view unless the
// view already has that revision or a later one (the watcher delivers
// writes this process made or read itself, late). Revisions, not
// UpdatedAt, order the records: they come from the server, while
// UpdatedAt comes from each writer's clock, and with clock skew a resume
// written "earlier" than the pause it ends would be dropped.
func (s *Store) store(st State, rev uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.cache[st.Provider]; ok && old.rev >= rev {
		return
	}
	s.cache[st.Provider] = cached{st: st, rev: rev}
	s.ver.Bump()
}

// View returns the local view of provider's state and the version of the
// view: a caller that waits for the state to change waits on
// Changed(version), so a change made since the read is not missed.
func (s *Store) View(provider string) (State, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cache[provider]
	if !ok {
		c.st = State{Provider: provider}
	}
	return c.st, s.ver.Load()
}

// Changed returns a channel closed once any provider's state changed
// after the view of version seen (from View): at once if one has already.
func (s *Store) Changed(seen uint64) <-chan struct{} { return s.ver.Changed(seen) }
