package worker

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unique"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/jobstate"
	"github.com/reelq/reelq/internal/slots"
	"github.com/reelq/reelq/internal/wire"
)

// level is the waiting-queue level of j: resumeLevel for a redelivery
// whose task runs at the provider, else its priority's rank.
func (j *job) level() int {
	if j.lvl > 0 {
		return int(j.lvl)
	}
	return j.priority().Rank()
}

// priority is j's priority: the subject's (normal when the message cannot
// be attributed to a job).
func (j *job) priority() reelq.Priority { return j.env.Priority.Or() }

// job is one delivered JOBS message and what the engine knows of it.
// Fields marked loop are read and written only by the engine's loop;
// step fields only by the one step running for the job (a job has at most
// one step running at a time, and the loop does not touch step fields
// while it runs).
type job struct {
	msg jetstream.Msg
	seq uint64 // JOBS stream sequence
	// deliveries is the message's delivery count.
	deliveries uint64

	// Envelope, read at intake.
	id          string
	env         reelq.Job
	run         int
	digest      string // its content digest, packed (packDigest)
	fkh         string // the slots.KeyHash of its fairness key (env.FairKey)
	traceparent string
	span        trace.Span // the delivery's span (see startDelivery)
	// rejected is why the job cannot run (see bad and invalid); unnamed
	// (below, with the small fields) tells which of the two it is.
	rejected error
	// est is the estimated cost of one submission (nil: unknown).
	est *reelq.Cost

	// The small fields of the loop and the step sit together: 100,000
	// jobs in flight each pay for the padding between them.

	// loop
	due stamp // when it leaves the timer heap
	// polledAt is when its last poll began.
	polledAt stamp
	heapIdx  int32 // its place on the timer heap (polling, waking), or -1
	sched    sched // where the job is in its engine; only move changes it
	lvl      int8  // waiting queue level when not its priority's (resumeLevel); 0: the priority's
	// woken: a callback's wake came while the job was not waiting for a
	// poll; the next poll it asks for runs at once (see wake).
	woken bool
	// probe is the role of the job a paused provider's probe rides on: set
	// by dispatch, cleared by the step that gets the probe's verdict.
	probe bool

	// step
	exhausted bool
	// unstored is set when st holds a task the bucket does not (its
	// record failed): the job keeps its state in memory (see shed).
	unstored bool
	// unnamed is set with rejected when the message cannot be attributed
	// to a job (bad).
	unnamed bool
	// cancel is set by the loop when a cancel request for the job arrives;
	// steps read it.
	cancel  atomic.Bool
	st      *jobstate.State
	rev     uint64
	poll    *pollState
	hold    *budgetHold // the budget reservation of the paid call in progress
	tokenAt stamp       // when the step's last rate-limit token came

	// A job waiting for a poll sheds its message and state (shed.go): it
	// is then settled and heartbeated by its reply subject, and polled
	// from shed. Set by the loop (done), cleared by the poll step
	// (unshed); reply stays set.
	reply string
	shed  *shedState
}

// envelopeID is a job's id: every place that names it (the body, the
// subject, the message id) must agree; a job none names is anonymous,
// named by its stream sequence.
func envelopeID(body, subject, msgID string, seq uint64) (string, error) {
	id := body
	for _, c := range []struct{ what, id string }{{"the subject", subject}, {"Nats-Msg-Id", msgID}} {
		switch {
		case c.id == "":
		case id == "":
			id = c.id
		case c.id != id:
			return "", fmt.Errorf("%w: the body's id %q disagrees with %s (%q)", reelq.ErrInvalidJob, id, c.what, c.id)
		}
	}
	if id != "" && subject != "" && subject != id {
		return "", fmt.Errorf("%w: the body's id %q disagrees with the subject (%q)", reelq.ErrInvalidJob, id, subject)
	}
	if id == "" {
		return wire.SeqID(seq), nil // the documented name of an anonymous job
	}
	if !reelq.ValidID(id) || strings.HasPrefix(id, "seq-") {
		return "", fmt.Errorf("%w: id %q must be 1-128 characters of letters, digits, '-' or '_', not starting with seq-", reelq.ErrInvalidJob, id)
	}
	return id, nil
}

// checkRoute checks the body's provider and priority against the
// subject's (subject, parsed as subj); a body without a provider takes
// the subject's.
func checkRoute(env *reelq.Job, subj wire.ParsedSubject, provider, subject, id string) error {
	if env.Provider == "" {
		env.Provider = provider
	} else if env.Provider != provider {
		return fmt.Errorf("%w: provider %q does not match the subject %s", reelq.ErrInvalidJob, env.Provider, subject)
	}
	switch {
	case subj.Priority != "" && env.Priority != "" && env.Priority != reelq.Priority(subj.Priority):
		return fmt.Errorf("%w: priority %q disagrees with the subject %s", reelq.ErrInvalidJob, env.Priority, subject)
	case subj.Priority == "" && env.Priority != "" && env.Priority != reelq.Normal:
		return fmt.Errorf("%w: priority %q needs the subject %s", reelq.ErrInvalidJob, env.Priority, wire.JobSubject(provider, env.Priority, id))
	}
	return nil
}

// decodeEnvelope reads a JOBS message for provider. The body id, the
// subject's id token and the Nats-Msg-Id must agree (a run or resolve
// suffix on the message id is allowed), the provider must be the
// subject's and the priority the subject's; anything else is a message
// that cannot be attributed to a job. A job its producer did not stamp
// (EnqueuedAt) was enqueued at the stream's timestamp.
func decodeEnvelope(msg jetstream.Msg, provider string, lim reelq.Limits, v reelq.Validator) (j *job) {
	j = &job{msg: msg, heapIdx: -1, run: 1}
	md, err := msg.Metadata()
	var stamp time.Time
	if err == nil {
		j.seq, j.deliveries, stamp = md.Sequence.Stream, md.NumDelivered, md.Timestamp
	}
	defer func() {
		if j.env.EnqueuedAt == nil {
			t := stamp.UTC()
			j.env.EnqueuedAt = &t
		}
	}()
	j.traceparent = msg.Headers().Get(wire.HeaderTraceparent)
	fail := func(err error) *job {
		j.rejected, j.unnamed, j.id = err, true, wire.SeqID(j.seq)
		if j.env.Provider == "" || j.env.Provider != provider {
			j.env.Provider = provider
		}
		j.env.Priority = "" // normal
		return j
	}
	if err != nil {
		return fail(fmt.Errorf("%w: message without metadata: %v", reelq.ErrInvalidJob, err))
	}
	subj, ok := wire.ParseJobSubject(msg.Subject())
	if !ok || subj.Provider != provider {
		return fail(fmt.Errorf("%w: subject %s is not a job subject of %s", reelq.ErrInvalidJob, msg.Subject(), provider))
	}
	env, err := reelq.DecodeJob(msg.Data())
	j.env = env
	if err != nil {
		return fail(err)
	}
	env.Input, env.Metadata = within(msg.Data(), env.Input), within(msg.Data(), env.Metadata)
	if h := msg.Headers().Get(wire.HeaderRun); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n < 1 {
			return fail(fmt.Errorf("%w: header %s %q must be a run number from 1", reelq.ErrInvalidJob, wire.HeaderRun, h))
		}
		j.run = n
	}
	id, err := envelopeID(env.ID, subj.ID, msgIDJob(msg.Headers().Get(wire.HeaderMsgID)), j.seq)
	if err != nil {
		return fail(err)
	}
	if err := checkRoute(&env, subj, provider, msg.Subject(), id); err != nil {
		return fail(err)
	}
	prio := reelq.Priority(subj.Priority).Or()
	env.ID, env.Priority = id, prio
	if env.Priority == reelq.Normal {
		env.Priority = "" // stored and echoed as the default
	}
	// The envelope's own fields (not the input): a bad batch or fairness
	// key cannot be stored or indexed.
	envOnly := env
	envOnly.Input, envOnly.Metadata, envOnly.ID = []byte(`{}`), nil, "" // the id is checked above
	if err := envOnly.Validate(nil, lim); err != nil {
		return fail(err)
	}
	// The jobs of a batch share its name, fairness key and their hash,
	// and every job its provider's name: one copy each, not one per job
	// in flight.
	env.Provider, env.Batch, env.FairnessKey = provider, intern(env.Batch), intern(env.FairnessKey)
	j.id, j.env = id, env
	j.fkh = intern(slots.KeyHash(env.FairKey()))
	digest := env.Digest()
	j.digest = packDigest(digest)
	if err := wire.CheckContentID(id, digest); err != nil {
		// Answered under seq-<n>: the id stays free for its content.
		return fail(err)
	}
	full := env
	if id == wire.SeqID(j.seq) {
		full.ID = ""
	}
	if err := full.Validate(map[string]reelq.Validator{provider: v}, lim); err != nil {
		j.rejected = err
	}
	if err := lim.CheckMessage(len(msg.Data())); err != nil && j.rejected == nil {
		j.rejected = err
	}
	return j
}

// bad is why the message cannot be attributed to a job (the envelope is
// unreadable or contradicts itself; its id is then SeqID), or nil.
func (j *job) bad() error {
	if j.unnamed {
		return j.rejected
	}
	return nil
}

// invalid is why a job whose envelope is fine cannot run (its input breaks
// the provider's rules or the size limits: it fails under its id), or nil.
func (j *job) invalid() error {
	if j.unnamed {
		return nil
	}
	return j.rejected
}

// within returns b as a part of data when data holds the same bytes (a
// json.RawMessage decoded from data always does), else b. A job keeps its
// message until it is settled (to ack it and keep it alive), and with it
// the input: the decoded input, and the job state's (see shareInput), are
// then that same copy, not two more. Neither is dropped once the job is
// submitted: a job in flight reads its input again to submit it again
// within the delivery (an output check's retry, an unknown outcome), to
// check its outputs against it and in every job-state write, which stores
// the whole state. The capacity ends with b, so an append copies.
func within(data, b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	if i := bytes.Index(data, b); i >= 0 {
		return data[i : i+len(b) : i+len(b)]
	}
	return b
}

// shareInput makes the job state st, read from the bucket, share the
// message's copy of the input and metadata when they are the same bytes.
func shareInput(j *job, st *jobstate.State) {
	if bytes.Equal(st.Input, j.env.Input) {
		st.Input = j.env.Input
	}
	if bytes.Equal(st.Metadata, j.env.Metadata) {
		st.Metadata = j.env.Metadata
	}
}

// packDigest is a content digest ("sha256:" and 64 hex digits) as its 32
// bytes: a job in flight keeps it in 32 bytes rather than 80. Any other
// form is kept as it is.
func packDigest(d string) string {
	var raw [sha256.Size]byte
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 2*sha256.Size {
		return d
	}
	if _, err := hex.Decode(raw[:], []byte(h)); err != nil {
		return d
	}
	return string(raw[:])
}

// digestOf is j's content digest as the job state stores it.
func (j *job) digestOf() string {
	if len(j.digest) != sha256.Size {
		return j.digest
	}
	return "sha256:" + hex.EncodeToString([]byte(j.digest))
}

// sameContent reports whether a job state's digest d is j's (a state
// without one, from before digests were kept, matches any).
func (j *job) sameContent(d string) bool { return d == "" || packDigest(d) == j.digest }

// intern is the canonical copy of s.
func intern(s string) string {
	if s == "" {
		return s
	}
	return unique.Make(s).Value()
}

// msgIDJob is the job id a Nats-Msg-Id names: the id itself, or the part
// before a ":" suffix (<id>:run:<n>, <id>:resolve:<seq>).
func msgIDJob(h string) string {
	id, _, _ := strings.Cut(h, ":")
	return id
}

// errDuplicateMsg marks a message for a job whose current run another
// message carries.
var errDuplicateMsg = errors.New("another message carries this job")
