package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/forwarder"
	"github.com/reelq/reelq/internal/netguard"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/webhook"
	"github.com/reelq/reelq/internal/wire"
)

// The forwarder identity (auth.conf's FORWARDER role) runs the real
// forwarder: it sets up its streams, delivers results through its
// declared durable (checking a job's earlier results), dead-letters a
// delivery, carries out an operator's re-drive and removes the dead
// letter, all with no permission violation; it cannot touch jobs, job
// state, results, others' consumers, streams or inboxes. The other client
// identities cannot write its dead letters (which it would sign and post)
// nor use its durable. SECURITY.md's forwarder table names these subtests.
func TestForwarderPermissions(t *testing.T) {
	t.Parallel()
	s, slog := startShippedServer(t)
	admin := connectAs(t, s, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := queue.Setup(ctx, admin.js, queue.Layout{Outputs: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.js.CreateOrUpdateConsumer(ctx, queue.StreamResults, jetstream.ConsumerConfig{Durable: "billing", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.js.CreateStream(ctx, jetstream.StreamConfig{Name: "SCRATCH_forwarder", Subjects: []string{"scratch.forwarder"}}); err != nil {
		t.Fatal(err)
	}

	var down atomic.Bool
	down.Store(true)
	got := make(chan string, 16)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("webhook-id")
		if id == "result:fw-down" && down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		got <- id
	}))
	defer recv.Close()
	secrets, _ := webhook.NewSecrets("whsec_dGVzdC1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg==")
	fw := connectAs(t, s, "forwarder")
	f, err := forwarder.New(ctx, fw.js, forwarder.Config{Routes: forwarder.Routes{Default: []string{recv.URL}}, Secrets: secrets,
		Network: netguard.Rules{AllowHosts: []string{"127.0.0.1"}}, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		RetryBudget: 300 * time.Millisecond})
	if err != nil {
		t.Fatalf("forwarder as the forwarder identity: %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = f.Run(runCtx) })
	defer wg.Wait()
	defer stop()
	publish := func(id string, run int) {
		b, _ := json.Marshal(reelq.Result{ID: id, Provider: "camb", Run: run, Status: reelq.StatusSucceeded, CompletedAt: time.Now().UTC()})
		m := nats.NewMsg(wire.ResultSubject("camb", id))
		m.Data = b
		m.Header.Set(nats.MsgIdHdr, wire.ResultMsgID(id, run))
		if _, err := admin.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(want string) error {
		for {
			select {
			case id := <-got:
				if id == want {
					return nil
				}
			case <-ctx.Done():
				return fmt.Errorf("%s never delivered", want)
			}
		}
	}
	operator := connectAs(t, s, "operator")
	var dlqSeq uint64

	allowed := []struct {
		slug string
		op   func() error
	}{
		{"deliver", func() error {
			publish("fw-1", 1)
			publish("fw-1", 2) // its order check reads the job's run 1 in RESULTS
			if err := wait("result:fw-1"); err != nil {
				return err
			}
			return wait("result:fw-1:2")
		}},
		{"dead_letter", func() error {
			publish("fw-down", 1)
			for {
				dls, err := forwarder.DeadLetters(ctx, operator.js) // the operator lists them
				if err != nil {
					return err
				}
				if len(dls) > 0 {
					dlqSeq = dls[0].Seq
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("no dead letter")
				case <-time.After(20 * time.Millisecond):
				}
			}
		}},
		{"redrive", func() error {
			down.Store(false)
			if err := forwarder.RequestRedrive(ctx, operator.js, dlqSeq); err != nil { // the operator asks
				return err
			}
			if err := wait("result:fw-down"); err != nil {
				return err
			}
			for { // the forwarder removes the delivered dead letter
				dls, err := forwarder.DeadLetters(ctx, operator.js)
				if err != nil || len(dls) == 0 {
					return err
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("the dead letter is still there")
				case <-time.After(20 * time.Millisecond):
				}
			}
		}},
	}
	for _, a := range allowed {
		t.Run(a.slug, func(t *testing.T) {
			if err := a.op(); err != nil {
				t.Error(err)
			}
		})
	}
	for _, who := range []string{`"reelq-test/forwarder"`, `"reelq-test/operator"`} {
		if v := violations(slog, who); len(v) > 0 {
			t.Errorf("permission violations:\n%s", strings.Join(v, "\n"))
		}
	}

	denied := []struct {
		slug, user string
		op         func(ctx context.Context, id *ident) error
	}{
		{"write_results", "forwarder", func(ctx context.Context, id *ident) error {
			_, err := id.js.Publish(ctx, wire.ResultSubject("camb", "fw-1"), []byte(`{"id":"fw-1","status":"succeeded"}`))
			return err
		}},
		{"publish_jobs", "forwarder", func(ctx context.Context, id *ident) error {
			_, err := id.js.Publish(ctx, wire.JobSubject("camb", "", "fw-job"), []byte(`{"id":"fw-job","provider":"camb"}`))
			return err
		}},
		{"job_state", "forwarder", func(ctx context.Context, id *ident) error {
			return directGet(ctx, id, "KV_reelq_jobs", `{"last_by_subj":"$KV.reelq_jobs.fw-1"}`)
		}},
		{"take_jobs", "forwarder", func(ctx context.Context, id *ident) error {
			_, err := id.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.JOBS.camb", []byte(`{"batch":1,"no_wait":true}`))
			return err
		}},
		{"others_consumers", "forwarder", func(ctx context.Context, id *ident) error {
			return id.js.DeleteConsumer(ctx, queue.StreamResults, "billing")
		}},
		{"delete_stream", "forwarder", func(ctx context.Context, id *ident) error {
			return id.js.DeleteStream(ctx, "SCRATCH_forwarder")
		}},
		{"other_inboxes", "forwarder", func(ctx context.Context, id *ident) error {
			sub, err := id.nc.SubscribeSync("_INBOX_operator.>")
			if err != nil {
				return err
			}
			defer func() { _ = sub.Unsubscribe() }()
			if err := id.nc.Flush(); err != nil {
				return err
			}
			select {
			case err := <-id.errs:
				return err
			case <-ctx.Done():
				return nil
			}
		}},
		{"operator_writes_dead_letter", "operator", func(ctx context.Context, id *ident) error {
			_, err := id.js.Publish(ctx, forwarder.DLQSubject("camb", "forged"), []byte(`{"url":"https://evil.example/","payload":{}}`))
			return err
		}},
		{"dashboard_writes_dead_letter", "dashboard", func(ctx context.Context, id *ident) error {
			_, err := id.js.Publish(ctx, forwarder.DLQSubject("camb", "forged"), []byte(`{"url":"https://evil.example/","payload":{}}`))
			return err
		}},
		{"results_pulls_its_durable", "results", func(ctx context.Context, id *ident) error {
			_, err := id.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.RESULTS.forwarder", []byte(`{"batch":1,"no_wait":true}`))
			return err
		}},
		{"producer_deletes_its_durable", "producer", func(ctx context.Context, id *ident) error {
			return id.js.DeleteConsumer(ctx, queue.StreamResults, forwarder.DefaultDurable)
		}},
	}
	type outcome struct {
		err  error
		name string
	}
	outcomes := make([]outcome, len(denied))
	var dwg sync.WaitGroup
	for i, dn := range denied {
		name := "reelq-forwarder-denied/" + dn.slug
		id := &ident{user: dn.user, errs: make(chan error, 16)}
		nc, err := nats.Connect(s.ClientURL(), connectGuard, nats.UserInfo(dn.user, shippedPasswords[dn.user]), nats.Name(name),
			nats.CustomInboxPrefix("_INBOX_"+dn.user),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				select {
				case id.errs <- err:
				default:
				}
			}))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		id.nc = nc
		id.js, _ = jetstream.New(nc)
		dwg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			outcomes[i] = outcome{err: dn.op(cctx, id), name: name}
		})
	}
	dwg.Wait()
	for i, dn := range denied {
		t.Run(dn.slug, func(t *testing.T) {
			err, name := outcomes[i].err, outcomes[i].name
			if err == nil {
				t.Errorf("the %s identity may %s", dn.user, dn.slug)
			}
			if len(violations(slog, name+`"`)) == 0 {
				t.Errorf("%s failed without a permission violation (the test does not test the permission): %v", dn.slug, err)
			}
		})
	}
}

var forwarderTableRow = regexp.MustCompile("^\\|\\s*([^|]+?)\\s*\\|\\s*(allowed|denied)\\s*\\|\\s*`(TestForwarderPermissions/[a-z_]+)`\\s*\\|\\s*$")

// SECURITY.md's forwarder table names exactly the subtests of
// TestForwarderPermissions, with what they check.
func TestForwarderSecurityTable(t *testing.T) {
	b, err := os.ReadFile("../../SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, s := range []string{"deliver", "dead_letter", "redrive"} {
		want["TestForwarderPermissions/"+s] = "allowed"
	}
	for _, s := range []string{"write_results", "publish_jobs", "job_state", "take_jobs", "others_consumers", "delete_stream", "other_inboxes",
		"operator_writes_dead_letter", "dashboard_writes_dead_letter", "results_pulls_its_durable", "producer_deletes_its_durable"} {
		want["TestForwarderPermissions/"+s] = "denied"
	}
	got := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if m := forwarderTableRow.FindStringSubmatch(line); m != nil {
			got[m[3]] = m[2]
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SECURITY.md's forwarder table says %v, TestForwarderPermissions checks %v", got, want)
	}
}
