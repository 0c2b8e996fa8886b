package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// Amounts are decimals: "1e3usd" and "1,0,0,0usd" are refused saying why,
// and sums are exact, so three $0.10 jobs fit --max-cost 0.3usd and total
// 0.3, not 0.30000000000000004.
func TestMoneyIsExact(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	f := writeFile(t, "cheap.jsonl", lines(`{"provider":"segmind","input":{"prompt":"a"}}`, `{"provider":"segmind","input":{"prompt":"b"}}`,
		`{"provider":"segmind","input":{"prompt":"c"}}`))
	run := func(args ...string) res {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var out, errb bytes.Buffer
		err := run(ctx, args, []string{"NATS_URL=" + c.url, "SEGMIND_PRICE_PER_RUN=0.1"}, strings.NewReader(""), &out, &errb)
		if msg := errorText(err); msg != "" {
			errb.WriteString("enqueue: " + msg + "\n")
		}
		return res{exitCode(err), out.String(), errb.String()}
	}
	r := run("--dry-run", "-o", "json", "--max-cost", "0.3usd", f)
	if r.code != 0 || !strings.Contains(r.stdout, `"usd": 0.3`) || strings.Contains(r.stdout, "0.30000000000000004") {
		t.Errorf("three $0.10 jobs under --max-cost 0.3usd:\n%s", r)
	}
	for flag, why := range map[string]string{
		"1e3usd":     `amount "1e3": not a decimal amount`,
		"1,0,0,0usd": `a thousands separator ',' goes between groups of three digits`,
		"-5usd":      `amount "-5": not a decimal amount`,
	} {
		r := run("--dry-run", "--max-cost", flag, f)
		if r.code != exitUsage || !strings.Contains(r.stderr, why) {
			t.Errorf("--max-cost %s: want exit 2 saying %q:\n%s", flag, why, r)
		}
		r = run("budget", "set", "--batch", "b", "--", flag)
		if r.code != exitUsage || !strings.Contains(r.stderr, why) {
			t.Errorf("budget set %s: want exit 2 saying %q:\n%s", flag, why, r)
		}
	}
}
