// Command providersim serves the simulated API of every provider reelq
// knows (internal/providers/all) on one port, for the demo and for tests. Every provider starts with
// the same knobs (flags below); -knobs FILE sets per-provider knobs as JSON
// ({"samsar": {"complete_after": "2s", "fail_rate": 0.1}, ...}; a
// provider named there gets exactly those knobs), and the admin API
// changes them at runtime (see package providersim). Output links point at
// this server (/outputs/...) and serve small playable MP4, WAV and PNG
// files, or broken ones on demand (-output-broken).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/reelq/reelq/internal/buildinfo"
	"github.com/reelq/reelq/internal/logging"
	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providersim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "providersim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("providersim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr("PROVIDERSIM_ADDR", "127.0.0.1:8089"), "listen address (env PROVIDERSIM_ADDR)")
	knobsFile := fs.String("knobs", "", "JSON file with knobs per provider")
	apiKey := fs.String("api-key", "", "API key every provider expects (empty: any non-empty key)")
	complete := fs.Duration("complete-after", 2*time.Second, "how long a task runs")
	jitter := fs.Duration("jitter", time.Second, "extra random task time, up to this much")
	failRate := fs.Float64("fail-rate", 0, "fraction of tasks that fail")
	errorRate := fs.Float64("error-rate", 0, "fraction of calls answered with a 5xx")
	rateLimit := fs.Float64("rate-limit", 0, "requests per second per provider before 429 (0 = none)")
	delayMin := fs.Duration("create-delay-min", 0, "hold every accepted create's answer at least this long (the task is charged first)")
	delayMax := fs.Duration("create-delay-max", 0, "hold it at most this long (a delay is drawn from [min, max])")
	outputTTL := fs.Duration("output-ttl", 0, "output links expire this long after the task finished (0 = never)")
	outputSize := fs.Int64("output-size", 0, "serve every MP4 and WAV output as a file of this many bytes (0 = a few KB)")
	outputDuration := fs.Duration("output-duration", 0, "every MP4 and WAV output lasts this long (0 = the duration a job asked for, else 1 s)")
	outputBroken := fs.String("output-broken", "", "serve every output broken: truncated, html, empty, no_audio or wrong_duration")
	seed := fs.Uint64("seed", 1, "random seed")
	version := fs.Bool("version", false, "print the version and exit (also: providersim version)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version || fs.Arg(0) == "version" {
		buildinfo.Print(stdout, "providersim")
		return nil
	}
	base := providersim.Knobs{APIKey: *apiKey, CompleteAfter: providersim.Duration(*complete), Jitter: providersim.Duration(*jitter),
		FailRate: *failRate, ErrorRate: *errorRate, RateLimit: *rateLimit, RateBurst: 5, RetryAfter: providersim.Duration(time.Second),
		CreateDelayMin: providersim.Duration(*delayMin), CreateDelayMax: providersim.Duration(*delayMax),
		OutputTTL: providersim.Duration(*outputTTL), OutputSize: *outputSize,
		OutputDuration: providersim.Duration(*outputDuration), OutputBroken: *outputBroken}
	knobs := map[string]providersim.Knobs{}
	for _, p := range all.Names() {
		knobs[p] = base
	}
	if *knobsFile != "" {
		b, err := os.ReadFile(*knobsFile)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &knobs); err != nil {
			return fmt.Errorf("%s: %w", *knobsFile, err)
		}
	}
	sim := all.Simulator(knobs, *seed)
	for _, p := range all.Names() {
		if err := sim.SetKnobs(p, knobs[p]); err != nil { // checks the values
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	log := logging.New(stderr, envOr("LOG_FORMAT", "text"), slog.LevelInfo, nil, true)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	u := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "providersim listening on %s\n ", u)
	for _, s := range all.Specs {
		fmt.Fprintf(stdout, " %sBASE_URL=%s%s", s.Kind.Prefix(), u, s.Sim.Base)
	}
	fmt.Fprintf(stdout, "\n  admin: %s/admin/stats\n", u)
	log.Info("providersim started", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer sim.Close() // the callbacks not yet sent
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
