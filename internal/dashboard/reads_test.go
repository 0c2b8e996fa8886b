package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/wire"
)

// BatchIndex pages through a batch's index chunk by chunk, cutting chunks
// where a page ends, skipping ids already on the page, and reads only the
// batch's own chunks.
func TestBatchIndexPages(t *testing.T) {
	env := reelqtest.New(t, nil)
	r := newReads(env.NC, env.JS)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var want []string
	chunks := [][]string{}
	began := time.Now()
	for c, size := range []int{150, 30, 120} {
		var chunk []string
		for i := range size {
			id := fmt.Sprintf("b-%d-%03d", c, i)
			chunk = append(chunk, id)
			want = append(want, id)
		}
		if c == 1 {
			chunk = append(chunk, "b-0-000") // redelivered: indexed again
		}
		chunks = append(chunks, chunk)
	}
	for i, chunk := range chunks {
		data, _ := json.Marshal(chunk)
		if _, err := env.JS.Publish(ctx, wire.BatchIndexSubject("pages"), data); err != nil {
			t.Fatal(err)
		}
		other, _ := json.Marshal([]string{fmt.Sprintf("other-%d", i)})
		if _, err := env.JS.Publish(ctx, wire.BatchIndexSubject("other"), other); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	var cur indexCursor
	pages := 0
	for {
		ids, next, more, err := r.batchIndex(ctx, "pages", cur, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) > 100 {
			t.Fatalf("page of %d ids, limit 100", len(ids))
		}
		pages++
		got = append(got, ids...)
		if !more {
			break
		}
		cur = next
		if pages > 10 {
			t.Fatal("no end")
		}
	}
	seen := map[string]int{}
	var order []string
	for _, id := range got {
		if seen[id]++; seen[id] == 1 {
			order = append(order, id)
		}
	}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("ids in order: %d of %d, first %v", len(order), len(want), order[:min(5, len(order))])
	}
	if pages < 3 || pages > 5 {
		t.Errorf("%d pages for 300 ids by 100", pages)
	}
	started, err := r.batchStarted(ctx, "pages")
	if err != nil || started.Before(began) || started.After(time.Now()) {
		t.Errorf("started %v %v, want the time of the first index message (published from %v on)", started, err, began)
	}
	if s, err := r.batchStarted(ctx, "nothing"); err != nil || !s.IsZero() {
		t.Errorf("an unknown batch started %v %v", s, err)
	}
}

// The dead letters read by page and by sequence.
func TestDeadLetterPages(t *testing.T) {
	env := reelqtest.New(t, nil)
	r := newReads(env.NC, env.JS)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var seqs []uint64
	for i := range 7 {
		ack, err := env.JS.Publish(ctx, wire.DLQSubject("samsar", fmt.Sprintf("d-%d", i)), []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	n, err := r.deadLetterCount(ctx)
	if err != nil || n != 7 {
		t.Fatalf("count %d %v", n, err)
	}
	page, err := r.deadLettersPage(ctx, 0, 5)
	if err != nil || len(page) != 5 || page[0].Seq != seqs[0] {
		t.Fatalf("first page %d %v", len(page), err)
	}
	rest, err := r.deadLettersPage(ctx, page[4].Seq, 5)
	if err != nil || len(rest) != 2 || rest[1].Seq != seqs[6] {
		t.Fatalf("second page %d %v", len(rest), err)
	}
	if d, err := r.deadLetterAt(ctx, seqs[3]); err != nil || d.Seq != seqs[3] {
		t.Errorf("at %d: %+v %v", seqs[3], d, err)
	}
	if _, err := r.deadLetterAt(ctx, 9999); err == nil {
		t.Error("a missing dead letter was found")
	}
}
