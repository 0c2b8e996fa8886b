// Package providerstate records whether a provider is paused, why and
// since when, in a NATS KV bucket shared by every replica, and enforces the
// pause on the server with PauseConsumer so no replica receives that
// provider's jobs while it lasts.
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
)

// Pause codes.
const (
	CodeCredits = "credits_exhausted"
	CodeAuth    = "auth"
	CodeManual  = "manual"
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
	By        string    `json:"by,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Auto reports whether a probe may end the pause.
func (s State) Auto() bool { return s.Paused && s.NextProbeAt != nil }

// Store manages provider state for the consumers of one stream.
type Store struct {
	kv     jetstream.KeyValue
	js     jetstream.JetStream
	stream string
	now    func() time.Time
	// MaxProbeInterval caps the probe back-off. Zero means 10 minutes.
	MaxProbeInterval time.Duration

	mu      sync.Mutex
	cache   map[string]State
	changed chan struct{}
}

// New returns a Store for the consumers of stream (named after providers),
// keeping state in kv.
func New(js jetstream.JetStream, kv jetstream.KeyValue, stream string) *Store {
	return &Store{kv: kv, js: js, stream: stream, now: time.Now, cache: map[string]State{}, changed: make(chan struct{})}
}

// farFuture is the server-side pause of a manual pause.
const farFuture = 10 * 365 * 24 * time.Hour

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
// false to skip the write.
func (s *Store) mutate(ctx context.Context, provider string, fn func(st *State) bool) (State, bool, error) {
	for range 100 {
		st, rev, err := s.Get(ctx, provider)
		if err != nil {
			return st, false, err
		}
		if !fn(&st) {
			return st, false, nil
		}
		st.Provider = provider
		st.UpdatedAt = s.now().UTC()
		data, _ := json.Marshal(st)
		if rev == 0 {
			_, err = s.kv.Create(ctx, provider, data)
		} else {
			_, err = s.kv.Update(ctx, provider, data, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return st, false, fmt.Errorf("write provider state %s: %w", provider, err)
		}
		s.store(st)
		return st, true, nil
	}
	return State{}, false, fmt.Errorf("provider state %s: too many concurrent writers", provider)
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
	st, changed, err := s.mutate(ctx, provider, func(st *State) bool {
		manual := probeAfter <= 0
		switch {
		case !st.Paused:
			*st = State{Paused: true, Code: code, Reason: reason, Since: &now, By: by}
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
	if err != nil {
		return st, false, err
	}
	return st, changed, s.enforce(ctx, st)
}

// enforce applies st's pause to the provider's consumer on the server.
func (s *Store) enforce(ctx context.Context, st State) error {
	if !st.Paused {
		return nil
	}
	until := s.now().Add(farFuture)
	if st.NextProbeAt != nil {
		until = *st.NextProbeAt
	}
	if _, err := s.js.PauseConsumer(ctx, s.stream, st.Provider, until); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("pause consumer %s: %w", st.Provider, err)
	}
	return nil
}

// Enforce re-applies provider's recorded pause on the server (a replica
// does this at start-up, after creating or updating the consumer).
func (s *Store) Enforce(ctx context.Context, provider string) (State, error) {
	st, _, err := s.Get(ctx, provider)
	if err != nil {
		return st, err
	}
	s.store(st)
	return st, s.enforce(ctx, st)
}

// Resume ends provider's pause for every replica. It reports whether the
// provider was paused.
func (s *Store) Resume(ctx context.Context, provider, by string) (bool, error) {
	_, changed, err := s.mutate(ctx, provider, func(st *State) bool {
		if !st.Paused {
			return false
		}
		*st = State{By: by}
		return true
	})
	if err != nil {
		return false, err
	}
	if _, err := s.js.ResumeConsumer(ctx, s.stream, provider); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return changed, fmt.Errorf("resume consumer %s: %w", provider, err)
	}
	return changed, nil
}

// ClaimProbe lets one replica (owner) check whether an automatic pause can
// end: it succeeds only if the probe time has come and no other replica
// holds an unexpired claim. The claim lasts ttl.
func (s *Store) ClaimProbe(ctx context.Context, provider, owner string, ttl time.Duration) (bool, error) {
	now := s.now().UTC()
	_, changed, err := s.mutate(ctx, provider, func(st *State) bool {
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
	_, _, err := s.mutate(ctx, provider, func(st *State) bool {
		if st.ProbeOwner != owner {
			return false
		}
		st.ProbeOwner, st.ProbeUntil = "", nil
		return true
	})
	return err
}

// Watch keeps the local view (View, Changed) current until ctx ends. It
// returns once the initial values are loaded; the watcher goroutine it
// starts stops with ctx.
func (s *Store) Watch(ctx context.Context) error {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch provider state: %w", err)
	}
	ready := make(chan struct{})
	go func() {
		defer func() { _ = w.Stop() }()
		initial := true
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					if initial {
						initial = false
						close(ready)
					}
					continue
				}
				var st State
				if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &st) == nil {
					st.Provider = e.Key()
				} else {
					st = State{Provider: e.Key()}
				}
				s.store(st)
			}
		}
	}()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (s *Store) store(st State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.cache[st.Provider]; ok && old.UpdatedAt.After(st.UpdatedAt) {
		return // an older write arriving late through the watcher
	}
	s.cache[st.Provider] = st
	close(s.changed)
	s.changed = make(chan struct{})
}

// View returns the local view of provider's state and a channel closed at
// the next change of any provider's state.
func (s *Store) View(provider string) (State, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.cache[provider]
	if !ok {
		st = State{Provider: provider}
	}
	return st, s.changed
}
