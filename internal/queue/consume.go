package queue

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Msg is the part of jetstream.Msg a handler uses.
type Msg interface {
	Data() []byte
	Headers() nats.Header
	Subject() string
	Metadata() (*jetstream.MsgMetadata, error)
	DoubleAck(ctx context.Context) error
	Nak() error
	NakWithDelay(delay time.Duration) error
	InProgress() error
	TermWithReason(reason string) error
}

// HandlerFunc processes one delivered message and settles it.
type HandlerFunc func(ctx context.Context, m Msg)

// Puller feeds a handler from one consumer: it pulls only as many
// messages as it has free slots (so nothing waits in a client buffer while
// its AckWait runs), runs each message on its own goroutine, and sends
// InProgress heartbeats until the handler returns.
type Puller struct {
	Consumer jetstream.Consumer
	// Slots is how many messages this replica handles at once.
	Slots int
	// Heartbeat is the InProgress interval; keep it well under AckWait.
	Heartbeat time.Duration
	// PullWait bounds one pull request. Zero means 5s.
	PullWait time.Duration
	// Gate, if set, is called before each pull, once a slot is free, and
	// blocks until pulling is allowed (e.g. while the provider is paused).
	// It returns a limit: how many of the messages pulled while the gate
	// returns a limit may run at once (a probe: 1), not counting those
	// still running from before; 0 or less means as many as slots allow.
	// It returns an error only when ctx ended.
	Gate func(ctx context.Context) (limit int, err error)
	// Handle processes a message.
	Handle HandlerFunc
	Logger *slog.Logger
}

// Run pulls until intake ends, then waits for every running handler to
// return. Handlers run under work, which the caller cancels (with a cause)
// when the shutdown grace period is over; handlers must then settle their
// message (normally Nak) and return promptly.
func (p *Puller) Run(intake, work context.Context) error {
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	slots := max(p.Slots, 1)
	sem := make(chan struct{}, slots)
	// limited counts the running messages that were pulled under a limit.
	var limited atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()

	pullWait := p.PullWait
	if pullWait <= 0 {
		pullWait = 5 * time.Second
	}
	errBackoff := backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(0))

	for intake.Err() == nil {
		// Reserve one slot (blocking), then any others free right now, up
		// to the limit, and pull exactly that many messages: nothing is ever
		// pulled without a free slot, so nothing waits in a client buffer
		// while its AckWait runs. The gate is asked once a slot is free, so
		// its answer is fresh when the pull goes out, not from before a long
		// wait for a slot (by then a probe claim may have expired).
		select {
		case sem <- struct{}{}:
		case <-intake.Done():
			return nil
		}
		limit, capped := slots, false
		if p.Gate != nil {
			l, err := p.Gate(intake)
			if err != nil {
				<-sem
				return nil
			}
			if l > 0 {
				running := int(limited.Load())
				if running >= l {
					// As many as allowed are running (the probe job): wait
					// for one to end, then ask the gate again. Jobs still
					// running from before the limit do not count, so a long
					// job being polled does not hold up the probe.
					<-sem
					if !waitFor(intake, func() bool { return int(limited.Load()) < l }) {
						return nil
					}
					continue
				}
				limit, capped = l-running, true
			}
		}
		reserved := 1
	reserve:
		for reserved < limit {
			select {
			case sem <- struct{}{}:
				reserved++
			default:
				break reserve
			}
		}
		fctx, cancel := context.WithTimeout(intake, pullWait)
		batch, err := p.Consumer.Fetch(reserved, jetstream.FetchContext(fctx))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				got++
				if capped {
					limited.Add(1)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					if capped {
						defer limited.Add(-1)
					}
					p.run(work, msg, log)
				}()
			}
			err = batch.Error()
		}
		cancel()
		for range reserved - got {
			<-sem
		}
		if err != nil && got == 0 {
			if intake.Err() != nil {
				return nil
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
				errBackoff.Reset()
				continue
			}
			d := errBackoff.NextBackOff()
			log.WarnContext(intake, "pull failed", "err", err, "retry_in", d)
			if !sleep(intake, d) {
				return nil
			}
			continue
		}
		errBackoff.Reset()
	}
	return nil
}

func (p *Puller) run(ctx context.Context, msg jetstream.Msg, log *slog.Logger) {
	hbCtx, stop := context.WithCancel(ctx)
	var hb sync.WaitGroup
	hb.Add(1)
	go func() {
		defer hb.Done()
		Heartbeat(hbCtx, msg, p.Heartbeat, log)
	}()
	defer func() {
		stop()
		hb.Wait()
	}()
	p.Handle(ctx, msg)
}

// Heartbeat sends InProgress on m every interval until ctx ends.
func Heartbeat(ctx context.Context, m interface{ InProgress() error }, every time.Duration, log *slog.Logger) {
	if every <= 0 {
		every = 15 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.InProgress(); err != nil && log != nil {
				log.WarnContext(ctx, "heartbeat failed", "err", err)
			}
		}
	}
}

// sleep waits d or until ctx ends; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// waitFor polls cond every 50ms until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() bool) bool {
	for !cond() {
		if !sleep(ctx, 50*time.Millisecond) {
			return false
		}
	}
	return true
}
