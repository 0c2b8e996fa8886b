package forwarder_test

import (
	"testing"
	"time"

	"github.com/reelq/reelq/internal/forwarder"
)

// BenchmarkHalfFailingReceiver: 1,000 results (400 jobs, 1 to 4 runs) to a
// loopback receiver that fails every other request, one forwarder
// (FORWARDER_CONCURRENCY 16, back-off 5-40 ms), on an embedded JetStream
// server. Reports accepted deliveries per second and requests per
// accepted delivery (2: each result fails once, then succeeds).
//
//	go test -run '^$' -bench HalfFailing -benchtime 3x ./internal/forwarder/
func BenchmarkHalfFailingReceiver(b *testing.B) {
	var elapsed time.Duration
	var requests int
	for range b.N {
		b.StopTimer()
		e := newEnv(b)
		r := newReceiver(b, halfFailing)
		cfg := e.config(b, forwarder.Routes{Default: []string{r.srv.URL}})
		cfg.Concurrency = 16
		e.start(b, cfg)
		b.StartTimer()
		start := time.Now()
		want := publishJobs(b, e, 1000)
		r.waitAccepted(b, e.ctx, len(want))
		elapsed += time.Since(start)
		b.StopTimer()
		r.check(b)
		r.mu.Lock()
		for _, n := range r.attempts {
			requests += n
		}
		r.mu.Unlock()
	}
	b.ReportMetric(float64(1000*b.N)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(requests)/float64(1000*b.N), "requests/delivery")
	b.ReportMetric(0, "ns/op")
}
