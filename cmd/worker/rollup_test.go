package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/wire"
)

// publishSubjects are the subjects user may publish data to under the
// shipped permissions (API requests, acks and flow control left out), with
// each wildcard made concrete: "*" and ">" become the token "samsar".
func publishSubjects(t *testing.T, user string) []string {
	t.Helper()
	opts, err := server.ProcessConfigFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range opts.Users {
		if u.Username != user {
			continue
		}
		var out []string
		for _, s := range u.Permissions.Publish.Allow {
			if strings.HasPrefix(s, "$JS.API.") || strings.HasPrefix(s, "$JS.ACK.") || strings.HasPrefix(s, "$JS.FC.") || s == ">" {
				continue
			}
			toks := strings.Split(s, ".")
			for i, tok := range toks {
				if tok == "*" || tok == ">" {
					toks[i] = "samsar"
				}
			}
			out = append(out, strings.Join(toks, "."))
		}
		if len(out) == 0 {
			t.Fatalf("%s may publish no data subject", user)
		}
		return out
	}
	t.Fatalf("no user %s in %s", user, shippedConfig)
	return nil
}

// seeded is a message another identity wrote, which must survive.
type seeded struct {
	stream, subject string
	seq             uint64
	data            []byte
}

// No role can remove or rewrite what it may not write, whatever the
// headers (NATS permissions cannot filter them): every identity publishes,
// on every data subject it may publish to, with "Nats-Rollup: all",
// "Nats-Rollup: sub" and a KV purge ("KV-Operation: PURGE" with a subject
// rollup), and every message seeded on other subjects of every stream and
// bucket (job state, pause state, cancel requests, batch and provider
// limits, spend, the budgets witness, slots, rate limits, jobs, results,
// events, dead letters, the batch index, counters, operator requests) is
// still there, unchanged; no such publish is even stored (every bucket
// refuses rollups: none of reelq's writes needs one). The reviewer's producer erased every provider
// limit and all spend by publishing its allowed key
// $KV.reelq_budgets.limit.batch.zz with "Nats-Rollup: all".
func TestRollupHeadersChangeNothingElse(t *testing.T) {
	t.Parallel()
	s, _ := startShippedServer(t)
	admin := connectAs(t, s, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := queue.Setup(ctx, admin.js, queue.Layout{}); err != nil {
		t.Fatal(err)
	}
	var seeds []seeded
	seed := func(stream, subj string, data []byte, hdr nats.Header) {
		t.Helper()
		ack, err := admin.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: data, Header: hdr})
		if err != nil {
			t.Fatalf("seed %s: %v", subj, err)
		}
		seeds = append(seeds, seeded{stream, subj, ack.Sequence, data})
	}
	kv := func(bucket, key string) {
		seed("KV_"+bucket, "$KV."+bucket+"."+key, []byte(`{"seeded":"`+key+`"}`), nil)
	}
	kv(queue.BucketJobs, "seed")
	kv(queue.BucketProviders, "camb")
	kv(queue.BucketCancel, "seed")
	kv(queue.BucketSlots, "camb.seed")
	kv(queue.BucketRateLimit, "camb")
	kv(wire.BucketBudgets, wire.BudgetLimitKey(reelq.ScopeBatch, "seed"))
	kv(wire.BucketBudgets, wire.BudgetLimitKey(reelq.ScopeProvider, "camb"))
	kv(wire.BucketBudgets, wire.BudgetSpendKey(reelq.ScopeBatch, "seed", 0))
	kv(wire.BucketBudgets, wire.BudgetSpendKey(reelq.ScopeProvider, "camb", 1))
	seed(queue.StreamJobs, "jobs.camb.seed", []byte(`{"provider":"camb","input":{}}`), nil)
	seed(queue.StreamResults, wire.ResultSubject("camb", "seed"), []byte(`{"id":"seed"}`), nil)
	seed(queue.StreamEvents, wire.JobEventSubject("camb", reelq.EventSubmitted, "seed"), []byte(`{"kind":"submitted"}`), nil)
	seed(queue.StreamDLQ, wire.DLQSubject("camb", "seed"), []byte(`{}`), nil)
	seed(queue.StreamBatches, wire.BatchIndexSubject("seed"), []byte(`["seed"]`), nil)
	seed(queue.StreamControl, wire.ControlSubject("resolve", "seed"), []byte(`{"resubmit":true}`), nil)
	seed(queue.StreamCounters, wire.BatchCounterSubject("seed", "enqueued"), nil, nats.Header{"Nats-Incr": {"+1"}})
	budgets, err := admin.js.KeyValue(ctx, wire.BucketBudgets)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := budgets.Get(ctx, queue.EpochKey)
	if err != nil {
		t.Fatalf("the budgets witness: %v", err)
	}
	seeds = append(seeds, seeded{"KV_" + wire.BucketBudgets, "$KV." + wire.BucketBudgets + "." + queue.EpochKey, ep.Revision(), ep.Value()})
	for i := range seeds {
		if seeds[i].stream == queue.StreamCounters { // stored as the counter's value
			m, err := mustStream(ctx, t, admin.js, seeds[i].stream).GetMsg(ctx, seeds[i].seq)
			if err != nil {
				t.Fatal(err)
			}
			seeds[i].data = m.Data
		}
	}

	headers := map[string]nats.Header{
		"Nats-Rollup: all": {"Nats-Rollup": {"all"}},
		"Nats-Rollup: sub": {"Nats-Rollup": {"sub"}},
		"a KV purge":       {"Nats-Rollup": {"sub"}, "KV-Operation": {"PURGE"}},
	}
	tried := 0
	// The identities least trusted first, so a failure names the first
	// that could erase what it may not write.
	for _, u := range []string{"results", "producer", "forwarder", "dashboard", "operator", "worker"} {
		id := connectAs(t, s, u)
		var subjects []string
		if u != "results" { // it may publish nothing
			subjects = publishSubjects(t, u)
		}
		for _, subj := range subjects {
			if u == "worker" && strings.HasPrefix(subj, "$O.") {
				continue // the output archive is the workers' alone (an object store needs rollups)
			}
			for what, h := range headers {
				tried++
				pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := id.js.PublishMsg(pctx, &nats.Msg{Subject: subj, Data: []byte(`{}`), Header: nats.Header(http.Header(h).Clone())})
				pcancel()
				if err == nil {
					t.Errorf("%s published to %s with %s: stored", u, subj, what)
				}
			}
		}
		// What the identity may not write is unchanged (reported once).
		for i, sd := range seeds {
			if sd.data == nil {
				continue
			}
			m, err := mustStream(ctx, t, admin.js, sd.stream).GetMsg(ctx, sd.seq)
			switch {
			case err != nil:
				t.Errorf("after %s's rollups: %s %s (seq %d): %v", u, sd.stream, sd.subject, sd.seq, err)
			case m.Subject != sd.subject || !bytes.Equal(m.Data, sd.data):
				t.Errorf("after %s's rollups: %s seq %d: %s %q, want %s %q", u, sd.stream, sd.seq, m.Subject, m.Data, sd.subject, sd.data)
			default:
				continue
			}
			seeds[i].data = nil
		}
	}
	// Every bucket refuses rollups outright (none of reelq's writes needs
	// one; the output archive is an object store, written by workers only).
	names := admin.js.StreamNames(ctx)
	for name := range names.Name() {
		if !strings.HasPrefix(name, "KV_") {
			continue
		}
		info, err := mustStream(ctx, t, admin.js, name).Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.AllowRollup {
			t.Errorf("bucket stream %s allows rollup headers", name)
		}
	}
	if tried < 40 {
		t.Errorf("only %d publishes tried", tried)
	}
	if !slices.ContainsFunc(seeds, func(s seeded) bool { return s.stream == "KV_"+wire.BucketBudgets }) {
		t.Error("no budget seeded")
	}
}

func mustStream(ctx context.Context, t *testing.T, js jetstream.JetStream, name string) jetstream.Stream {
	t.Helper()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(fmt.Errorf("stream %s: %w", name, err))
	}
	return s
}
