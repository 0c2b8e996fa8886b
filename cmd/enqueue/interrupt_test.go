package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/wire"
)

// Ctrl-C during validation stops it at the job it is on: nothing more is
// checked, nothing is published, and publish and --dry-run both exit 130.
func TestInterruptDuringValidation(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	const n = 2000
	var b strings.Builder
	for i := range n {
		b.WriteString(samsar(fmt.Sprint(i), 5) + "\n")
	}
	f := writeFile(t, "many.jsonl", b.String())
	for _, args := range [][]string{{f}, {"--dry-run", f}} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		after := 0 // validations started after the interrupt
		ctx = context.WithValue(ctx, validateHook{}, func(k int) {
			switch {
			case k == 10:
				cancel()
			case k > 10:
				after++
			}
		})
		r := c.runCtx(ctx, "", args...)
		cancel()
		if r.code != exitInterrupted || !strings.Contains(r.stderr, "interrupted while validating (10 of 2,000 jobs checked); nothing published") {
			t.Errorf("%q: want exit 130 naming the jobs checked:\n%s", args, r)
		}
		if after > 0 {
			t.Errorf("%q: %d jobs validated after the interrupt", args, after)
		}
		if strings.Contains(r.stdout, "dry run") {
			t.Errorf("%q: the dry run reported after the interrupt:\n%s", args, r)
		}
	}
	if q := jobsInQueue(t, c.env); q != 0 {
		t.Errorf("%d jobs published", q)
	}
}

// cancelOnWrite cancels its context at the first write: Ctrl-C once a
// result has been printed.
type cancelOnWrite struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	cancel context.CancelFunc
}

func (w *cancelOnWrite) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cancel()
	return w.buf.Write(p)
}

// results --follow ends with exit 130 on Ctrl-C, as the exit code table
// says for an interrupted command.
func TestResultsFollowInterruptedExits130(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	res, err := json.Marshal(reelq.Result{ID: "followed", Provider: "samsar", Status: reelq.StatusSucceeded, Run: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.env.JS.Publish(ctx, wire.ResultSubject("samsar", "followed"), res); err != nil {
		t.Fatal(err)
	}
	out := &cancelOnWrite{cancel: cancel}
	var errb bytes.Buffer
	err = run(ctx, []string{"results", "--follow"}, []string{"NATS_URL=" + c.url}, strings.NewReader(""), out, &errb)
	if code := exitCode(err); code != exitInterrupted {
		t.Errorf("results --follow interrupted: exit %d (%v), want %d\nstderr:\n%s", code, err, exitInterrupted, errb.String())
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	if !strings.Contains(out.buf.String(), `"id":"followed"`) {
		t.Errorf("the result was not printed:\n%s", out.buf.String())
	}
}
