package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/forwarder"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/netguard"
	"github.com/reelq/reelq/internal/webhook"
	"github.com/reelq/reelq/internal/wire"
)

// A webhook the receiver refused for the whole retry budget is listed by
// 'hooks list' (redacted URL, status, attempts, payload) and delivered by
// 'hooks redrive' once the receiver answers, then leaves the list.
func TestHooksListAndRedrive(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	_, js := natstest.Connect(t, s)
	natstest.Setup(t, js)
	c := cli{t: t, url: s.ClientURL()}
	if r := c.run("hooks", "list"); r.code != 0 || !strings.Contains(r.stdout, "no undelivered webhook") {
		t.Fatalf("hooks list before any forwarder:\n%s", r)
	}

	var up atomic.Bool
	got := make(chan string, 4)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "receiver down", http.StatusServiceUnavailable)
			return
		}
		got <- r.Header.Get("webhook-id")
	}))
	defer recv.Close()
	secrets, _ := webhook.NewSecrets("whsec_dGVzdC1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg==")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f, err := forwarder.New(ctx, js, forwarder.Config{Routes: forwarder.Routes{Default: []string{recv.URL + "/hook?token=s3cret"}},
		Secrets: secrets, Network: netguard.Rules{AllowHosts: []string{"127.0.0.1"}}, RetryBase: 5 * time.Millisecond,
		RetryMax: 20 * time.Millisecond, RetryBudget: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = f.Run(rctx) })
	defer wg.Wait()
	defer stop()

	body, _ := json.Marshal(reelq.Result{ID: "hk-1", Provider: "camb", Run: 1, Status: reelq.StatusFailed, CompletedAt: time.Now().UTC()})
	m := nats.NewMsg(wire.ResultSubject("camb", "hk-1"))
	m.Data = body
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	var ls []forwarder.DeadLetter
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for len(ls) == 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("no dead letter")
		}
		parseJSON(t, "hooks list", c.run("hooks", "list", "-o", "json").stdout, &ls)
	}
	l := ls[0]
	var compact bytes.Buffer
	_ = json.Compact(&compact, l.Payload) // -o json indents it
	if len(ls) != 1 || l.JobID != "hk-1" || l.WebhookID != "result:hk-1" || l.URL != recv.URL+"/hook?…" || l.LastStatus != 503 ||
		l.Attempts < 1 || !strings.Contains(l.LastError, "receiver down") || compact.String() != string(body) {
		t.Fatalf("hooks list: %+v (payload %s)", ls, l.Payload)
	}
	r := c.run("hooks", "list")
	mustContain(t, "hooks list", r.stdout, "1 undelivered webhook;", "camb/hk-1", "status 503")
	mustNotContain(t, "hooks list", r.stdout+r.stderr, "s3cret")
	r = c.run("hooks", "redrive", "--all", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("%d: would redrive hk-1 run 1 to %s/hook?…", l.Seq, recv.URL)) {
		t.Errorf("redrive --dry-run:\n%s", r)
	}
	if r := c.run("hooks", "redrive", "999"); r.code != exitFailure || !strings.Contains(r.stderr, "999: no such dead letter") {
		t.Errorf("redrive of an unknown seq:\n%s", r)
	}
	if r := c.run("hooks", "redrive", "x"); r.code != exitUsage {
		t.Errorf("redrive x:\n%s", r)
	}
	if r := c.run("hooks", "redrive"); r.code != exitUsage {
		t.Errorf("redrive without SEQ or --all:\n%s", r)
	}

	up.Store(true)
	var rl []redriveLine
	parseJSON(t, "hooks redrive", c.run("hooks", "redrive", fmt.Sprint(l.Seq), "-o", "json").stdout, &rl)
	if len(rl) != 1 || rl[0].Error != "" || !strings.Contains(rl[0].Result, "redrive requested") {
		t.Fatalf("hooks redrive: %+v", rl)
	}
	select {
	case id := <-got:
		if id != "result:hk-1" {
			t.Errorf("re-driven webhook-id %q", id)
		}
	case <-ctx.Done():
		t.Fatal("the re-drive was never delivered")
	}
	for {
		r := c.run("hooks", "list")
		if strings.Contains(r.stdout, "no undelivered webhook") {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("the delivered dead letter is still listed:\n%s", r)
		}
	}
}
