package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/queue"
)

// buildEnqueue builds the enqueue command into a temporary directory.
func buildEnqueue(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "enqueue")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/reelq/reelq/cmd/enqueue").CombinedOutput()
	if err != nil {
		t.Fatalf("build enqueue: %v\n%s", err, out)
	}
	return bin
}

// cli runs the enqueue command as a shipped identity, configured as
// deploy/compose.yaml configures it (its reply prefix and consumer prefix).
type cli struct {
	t    *testing.T
	bin  string
	url  string
	user string
}

func (c cli) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = []string{"NATS_URL=" + c.url, "NATS_USER=" + c.user, "NATS_PASSWORD=" + shippedPasswords[c.user],
		"NATS_INBOX_PREFIX=_INBOX_" + c.user, "REELQ_CONSUMER_PREFIX=" + c.user, "HOME=" + c.t.TempDir(), "USER=" + c.user}
	return cmd
}

// run runs enqueue with args, fails the test unless it exits 0, and
// returns its output.
func (c cli) run(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.cmd(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		c.t.Errorf("%s: enqueue %s: %v\nstdout:\n%s\nstderr:\n%s", c.user, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// follow runs a following enqueue command until it printed a line with
// want, then interrupts it (Ctrl-C ends --follow: exit 130, the exit
// code of an interrupted command).
func (c cli) follow(want string, args ...string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.cmd(ctx, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	found := false
	for !found && sc.Scan() {
		found = strings.Contains(sc.Text(), want)
	}
	_ = cmd.Process.Signal(os.Interrupt)
	for sc.Scan() {
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !found || !ok || ee.ExitCode() != 130 {
		c.t.Errorf("%s: enqueue %s: saw %q: %v (%v), want it, then exit 130 on interrupt\nstderr:\n%s", c.user, strings.Join(args, " "), want, found, err, errb.String())
	}
}

// shippedCLI runs every enqueue command each role is documented to use
// (docs/cli.md, SECURITY.md) as that role: the producer and the operator
// publish (and wait), status (of a finished and of a queued job: the
// reviewer's status of any unfinished job failed for both), results
// (listed, followed, downloaded), cancel and retry (one job and a batch),
// stats, batch budgets and the budget list; the operator also pauses and
// resumes, sets a provider budget, resolves a held job and lists and
// re-drives dead letters; the results identity lists, follows and
// downloads results. The worker of TestShippedPermissions runs samsar
// (with the held submission of perm-cli-held); camb jobs stay queued.
func shippedCLI(t *testing.T, s interface{ ClientURL() string }, prod clients, admin *ident) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := buildEnqueue(t)
	jsonl := func(name string, jobs ...reelq.Job) string {
		var b strings.Builder
		for _, j := range jobs {
			line, _ := json.Marshal(j)
			b.Write(line)
			b.WriteByte('\n')
		}
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	waitStatus := func(id, want string) {
		t.Helper()
		if r, err := prod.Wait(ctx, id); err != nil || r.Status != want {
			t.Fatalf("%s: %+v %v, want %s", id, r, err, want)
		}
	}
	mustHave := func(what, out string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", what, w, out)
			}
		}
	}
	for _, u := range []string{"producer", "operator"} {
		c := cli{t: t, bin: bin, url: s.ClientURL(), user: u}
		b := "cli-" + u
		done, queued, other := u+"-cli-1", u+"-cli-q", u+"-cli-c"
		c.run("publish", "--batch", b, "--wait", jsonl("samsar.jsonl", samsarJob(done, "")))
		c.run("publish", "--batch", b+"-q", jsonl("camb.jsonl", cambJob(queued, "")))
		c.run("publish", "--batch", b+"-c", jsonl("camb.jsonl", cambJob(other, "")))
		mustHave("status of a queued job", c.run("status", queued), queued, "queued")
		mustHave("status of a finished job", c.run("status", done), done, "succeeded")
		mustHave("status of a batch", c.run("status", "--batch", b), done)
		mustHave("results", c.run("results", "--batch", b), done)
		dir := t.TempDir()
		c.run("results", "--download", dir, "--batch", b)
		if files, _ := os.ReadDir(dir); len(files) == 0 {
			t.Errorf("%s: results --download wrote nothing", u)
		}
		c.follow(done, "results", "--follow", "--provider", "samsar")
		c.run("cancel", queued)
		waitStatus(queued, reelq.StatusCancelled)
		mustHave("status of a cancelled job", c.run("status", queued), "cancelled")
		c.run("retry", queued)
		c.run("cancel", "--batch", b+"-c", "--reason", "cli test")
		waitStatus(other, reelq.StatusCancelled)
		c.run("retry", "--batch", b+"-c")
		c.run("stats")
		c.run("stats", "--batch", b)
		c.run("budget", "set", "--batch", b, "500usd")
		mustHave("budget list", c.run("budget", "list"), b)
	}

	op := cli{t: t, bin: bin, url: s.ClientURL(), user: "operator"}
	op.run("pause", "samsar", "--reason", "cli test")
	op.run("resume", "samsar")
	op.run("budget", "set", "--provider", "samsar", "1000000000credits")
	mustHave("budget list", op.run("budget", "list"), "samsar")
	if _, err := prod.Enqueue(ctx, samsarJob("perm-cli-held", "cli-ops")); err != nil {
		t.Fatal(err)
	}
	waitState(t, prod, "perm-cli-held", "held", func(st *reelq.JobState) bool { return st.Phase == reelq.PhaseHeld })
	op.run("resolve", "perm-cli-held", "--resubmit")
	waitStatus("perm-cli-held", reelq.StatusSucceeded)
	// A dead letter: the sweeper moves a queued job the server reports as
	// delivered too often.
	if _, err := prod.Enqueue(ctx, cambJob("perm-cli-poison", "cli-ops")); err != nil {
		t.Fatal(err)
	}
	st, err := prod.Get(ctx, "perm-cli-poison")
	if err != nil {
		t.Fatal(err)
	}
	adv, _ := json.Marshal(map[string]any{"type": "io.nats.jetstream.advisory.v1.max_deliver", "stream": queue.StreamJobs,
		"consumer": "camb", "stream_seq": st.Seq, "deliveries": 100})
	if _, err := admin.js.Publish(ctx, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.JOBS.camb", adv); err != nil {
		t.Fatal(err)
	}
	waitStatus("perm-cli-poison", reelq.StatusFailed)
	list := op.run("dlq", "list", "-o", "json")
	var dls []struct {
		Seq   uint64 `json:"seq"`
		JobID string `json:"job_id"`
	}
	_ = json.Unmarshal([]byte(list), &dls)
	var seq uint64
	for _, d := range dls {
		if d.JobID == "perm-cli-poison" {
			seq = d.Seq
		}
	}
	if seq == 0 {
		t.Fatalf("dlq list has no perm-cli-poison:\n%s", list)
	}
	op.run("dlq", "redrive", strconv.FormatUint(seq, 10))

	rc := cli{t: t, bin: bin, url: s.ClientURL(), user: "results"}
	mustHave("results as the results identity", rc.run("results", "--batch", "cli-producer"), "producer-cli-1")
	dir := t.TempDir()
	rc.run("results", "--download", dir, "--batch", "cli-producer")
	if files, _ := os.ReadDir(dir); len(files) == 0 {
		t.Error("results: results --download wrote nothing")
	}
	rc.follow("producer-cli-1", "results", "--follow")
}
