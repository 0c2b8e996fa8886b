// Package bench holds reelq's throughput benchmarks. They compare reelq's
// publish and job paths with the raw JetStream operations underneath, on
// the same embedded server in one run, so the ratio is reelq's overhead:
//
//	go test -run '^$' -bench Pipeline -benchtime 1x ./internal/bench
//
// REELQ_BENCH_JOBS (default 100000) sets the publish count,
// REELQ_BENCH_E2E_JOBS (default 20000) the end-to-end count, and
// REELQ_BENCH_SYNC=always makes the server fsync every write (the
// worker's embedded default), and REELQ_BENCH_LIMITER=off replaces the
// cluster-wide rate limiter with one that grants every call, to show its
// share of the cost.
package bench
