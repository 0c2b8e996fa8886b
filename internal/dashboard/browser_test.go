package dashboard_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/dashboard"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/worker"
)

// chromium finds a Chromium or Chrome to drive. Without one the browser
// tests skip, saying how to install it; under CI=true that is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("REELQ_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium found for the browser tests: install it (Debian/Ubuntu: apt-get install -y chromium) or set REELQ_CHROMIUM to its path"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// artifacts is where the screenshots go: $REELQ_ARTIFACTS, or a directory
// kept under the system's temporary directory.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("REELQ_ARTIFACTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "reelq-dashboard-screenshots-"); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newTab starts a headless Chromium (closed when the test ends) that
// accepts every confirm() the page asks.
func newTab(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)), chromedp.NoSandbox,
		chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1280, 900),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancel()
		cancelAlloc()
		t.Fatalf("start %s: %v", chromium(t), err)
	}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, err := range dialogs {
			if err != nil {
				return
			}
			if _, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true}); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx)
		cancel()
		cancelAlloc()
		<-done
	})
	return ctx
}

// do runs the steps. The page's live updates replace whole fragments
// (outerHTML), so a node chromedp found for a Click or SendKeys can be gone
// when it acts on it ("Could not find node with given id"): the steps then
// run again from the first, whose queries find the new nodes. Such an error
// comes before the action's input events, so nothing was clicked or typed;
// any other error fails the test.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := chromedp.Do(sctx, steps...)
	for staleNode(err) {
		t.Logf("%s: %v; again with the re-rendered page", what, err)
		err = chromedp.Do(sctx, steps...)
	}
	if err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		t.Fatalf("%s: %v (at %s)\n%s", what, err, loc, html)
	}
}

// click waits for the element sel selects and clicks it as it is when the
// click lands: the query and the click run in one turn of the page's
// script, so a live update cannot replace the element in between.
// chromedp.Click finds the node, then sends mouse events at its position,
// and an update between the two lost the click without an error (the
// resume in TestBrowserEndToEnd, 1 run in 10 beside stress-ng --cpu 2).
func click(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := chromedp.WaitVisible(chromedp.CSS(sel))(ctx, t); err != nil {
			return err
		}
		_, err := chromedp.Evaluate[chromedp.Void](`document.querySelector(`+strconv.Quote(sel)+`).click()`)(ctx, t)
		return err
	})
}

// staleNode reports whether err is the browser's answer for a node id
// that no longer exists in the document.
func staleNode(err error) bool {
	var e *cdproto.Error
	return errors.As(err, &e) && e.Message == "Could not find node with given id"
}

// poll waits until the page's JavaScript condition holds (through the
// page's own live updates), up to timeout.
func poll(t *testing.T, ctx context.Context, what, cond string, timeout time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatalf("waiting for %s (%s): %v", what, cond, err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) string {
	t.Helper()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
	return p
}

// End to end in a real browser while a batch runs against the simulator:
// progress advances on its own; pausing samsar from the page stops the
// worker calling it (the simulator's counts) and resuming starts it again;
// a job cancelled from its page shows its cancelled result; a job page
// plays its archived video.
func TestBrowserEndToEnd(t *testing.T) {
	chromium(t)
	dir := artifacts(t)
	const batch, n = "e2e", 30
	d := startDash(t, dashOptions{auth: dashboard.Auth{Token: testToken},
		knobs: map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(900 * time.Millisecond), Jitter: providersim.Duration(300 * time.Millisecond)}},
		worker: &reelqtest.WorkerOptions{Archive: true, Providers: map[string]reelqtest.Settings{
			"samsar": {MaxInflight: 2, PollInterval: 100 * time.Millisecond}}}})
	ctx := newTab(t)

	do(t, ctx, "sign in", chromedp.Navigate(d.URL+"/login"), chromedp.WaitVisible(chromedp.CSS(`input[name=secret]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=secret]`), testToken), chromedp.Submit(chromedp.CSS(`input[name=secret]`)),
		chromedp.WaitVisible(chromedp.CSS(`#providers article[data-provider=samsar]`)))
	poll(t, ctx, "the live connection", `document.getElementById("live-status").classList.contains("on")`, 10*time.Second)

	// The batch appears and advances without a reload.
	d.Enqueue(samsarJobs(batch, n)...)
	row := `document.querySelector('tr[data-batch="` + batch + `"] .done')`
	poll(t, ctx, "the batch row", row+` !== null`, 15*time.Second)
	first := eval[string](t, ctx, row+`.textContent`)
	poll(t, ctx, "progress", `parseInt(`+row+`.textContent.replace(/,/g, "")) >= 3`, 30*time.Second)
	poll(t, ctx, "the batch's own progress bar", `document.querySelector('tr[data-batch="`+batch+`"] progress').value >= 3`, 5*time.Second)
	t.Logf("progress advanced from %q to %q", first, eval[string](t, ctx, row+`.textContent`))
	shot := screenshot(t, ctx, dir, "overview.png")
	if os.Getenv("REELQ_UPDATE_SCREENSHOT") != "" {
		if b, err := os.ReadFile(shot); err == nil {
			_ = os.WriteFile("../../docs/img/dashboard.png", b, 0o644)
		}
	}

	// Pause samsar from its card; running jobs finish, then the worker
	// calls samsar no more while jobs wait.
	card := `article[data-provider=samsar]`
	do(t, ctx, "pause", chromedp.SendKeys(chromedp.CSS(card+` input[name=reason]`), "e2e pause"), click(card+` button.pause`),
		chromedp.WaitVisible(chromedp.CSS(card+` button.resume`)))
	if st := eval[string](t, ctx, `document.querySelector('`+card+` .state').textContent`); st != "paused" {
		t.Fatalf("samsar shows %q after pausing", st)
	}
	poll(t, ctx, "in-flight jobs to finish", `document.querySelector('`+card+` .running').textContent === "0"`, 30*time.Second)
	sim := func() (tasks, active int) {
		s := d.Sim.Stats(0)["samsar"]
		return s.Tasks, s.Active
	}
	tasks, active := sim()
	waiting := eval[int](t, ctx, `parseInt(document.querySelector('`+card+` .queued').textContent) + parseInt(document.querySelector('`+card+` .waiting').textContent)`)
	if active != 0 || waiting == 0 {
		t.Fatalf("after the pause: %d tasks active at samsar, %d jobs waiting", active, waiting)
	}
	// An observation window: nothing is submitted while paused.
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
		if now, _ := sim(); now != tasks {
			t.Fatalf("samsar got a new task while paused (%d, was %d)", now, tasks)
		}
		time.Sleep(100 * time.Millisecond)
	}
	screenshot(t, ctx, dir, "paused.png")

	// Cancel a queued job from its page: its cancelled result shows up live.
	var victim string
	for i := n; i > 0 && victim == ""; i-- {
		id := fmt.Sprintf("%s-%02d", batch, i)
		if st, err := d.Client.Get(context.Background(), id); err == nil && st.Phase == reelq.PhaseQueued {
			victim = id
		}
	}
	if victim == "" {
		t.Fatal("no queued job left to cancel")
	}
	do(t, ctx, "cancel "+victim, chromedp.Navigate(d.URL+"/jobs/"+victim), click(`button.cancel-job`), chromedp.WaitVisible(chromedp.CSS(`p.flash`)))
	poll(t, ctx, "the cancelled result", `document.getElementById("status").textContent === "cancelled"`, 20*time.Second)
	// Each Wait has its own hang guard: one shared with the steps between
	// them expired during the resume on a loaded machine.
	wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r, err := d.Client.Wait(wctx, victim); err != nil || r.Status != reelq.StatusCancelled || r.ProviderTaskID != "" {
		t.Fatalf("%s: %+v %v, want cancelled without reaching the provider", victim, r, err)
	}
	screenshot(t, ctx, dir, "cancelled.png")

	// Resume: the worker calls samsar again and the batch moves on.
	do(t, ctx, "resume", chromedp.Navigate(d.URL+"/"), click(card+` button.resume`), chromedp.WaitVisible(chromedp.CSS(card+` button.pause`)))
	done := eval[string](t, ctx, row+`.textContent`)
	poll(t, ctx, "progress after resuming", `parseInt(`+row+`.textContent.replace(/,/g, "")) > `+strconv.Quote(done)+`.replace(/,/g, "").split(" ")[0]*1`, 30*time.Second)
	if now, _ := sim(); now <= tasks {
		t.Fatalf("samsar tasks %d after resuming, %d before", now, tasks)
	}

	// A job page plays its archived video, served by the dashboard.
	wctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := d.Client.Wait(wctx, batch+"-01")
	if err != nil || r.Status != reelq.StatusSucceeded {
		t.Fatalf("%s-01: %+v %v", batch, r, err)
	}
	do(t, ctx, "job page", chromedp.Navigate(d.URL+"/jobs/"+batch+"-01"), chromedp.WaitVisible(chromedp.CSS(`#job-outputs video`)))
	eval[bool](t, ctx, `(() => { const v = document.querySelector("#job-outputs video"); v.muted = true; v.play().catch(() => {}); return true })()`)
	poll(t, ctx, "the video to load", `(() => { const v = document.querySelector("#job-outputs video"); return !v.error && v.readyState >= 2 && v.duration > 0 })()`, 20*time.Second)
	if task := eval[string](t, ctx, `document.getElementById("task").textContent`); task != r.ProviderTaskID {
		t.Errorf("job page shows task %q, the result %q", task, r.ProviderTaskID)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#job-timeline li").length`); n < 2 {
		t.Errorf("timeline has %d events", n)
	}
	screenshot(t, ctx, dir, "job.png")

	// And on a phone.
	do(t, ctx, "phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile), chromedp.Navigate(d.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#providers`)))
	if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 400 {
		t.Errorf("the overview is %dpx wide on a 390px phone", w)
	}
	screenshot(t, ctx, dir, "overview-phone.png")
}

// The pages operators compare with asynqmon and River UI, in a real
// browser: the job list filtered from its form (and a job finishing after
// the page was drawn appears on it live), the activity charts, the
// workers view, and a batch that waits on a paused provider saying so.
// Each page's screenshot is kept (REELQ_ARTIFACTS).
func TestBrowserJobListChartsWorkers(t *testing.T) {
	chromium(t)
	dir := artifacts(t)
	d := startDash(t, dashOptions{auth: dashboard.Auth{Token: testToken},
		knobs: map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(200 * time.Millisecond)}}})
	d.StartWorker(reelqtest.WorkerOptions{ID: "replica-1", Config: worker.Config{HeartbeatEvery: 200 * time.Millisecond},
		Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: 3, PollInterval: 50 * time.Millisecond}}})
	d.Enqueue(samsarJobs("browse", 12)...)
	d.Results(12, 60*time.Second)
	ctx := newTab(t)

	do(t, ctx, "job list", chromedp.Navigate(d.URL+"/jobs"), chromedp.WaitVisible(chromedp.CSS(`#job-list tr[data-job]`)))
	poll(t, ctx, "the live connection", `document.getElementById("live-status").classList.contains("on")`, 10*time.Second)
	d.Enqueue(samsarJobs("late", 1)...)
	poll(t, ctx, "a job finished after the page was drawn", `document.querySelector('#job-list tr[data-job="late-01"] .status-succeeded') !== null`, 30*time.Second)
	do(t, ctx, "filter", chromedp.SetValue(chromedp.CSS(`#job-filter select[name=state]`), "succeeded"),
		chromedp.SetValue(chromedp.CSS(`#job-filter input[name=batch]`), "browse"),
		chromedp.Submit(chromedp.CSS(`#job-filter input[name=batch]`)), chromedp.WaitVisible(chromedp.CSS(`#job-list tr[data-job]`)))
	if loc := eval[string](t, ctx, `location.search`); loc != "?state=succeeded&provider=&batch=browse&since=&until=" {
		t.Errorf("the filter form went to %q", loc)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#job-list tr[data-job^="browse-"] .status-succeeded').length`); n != 12 {
		t.Errorf("the filtered list shows %d succeeded jobs of browse, want 12", n)
	}
	screenshot(t, ctx, dir, "jobs.png")

	do(t, ctx, "activity", chromedp.Navigate(d.URL+"/activity"), chromedp.WaitVisible(chromedp.CSS(`article[data-provider=samsar] svg.chart`)))
	poll(t, ctx, "the charts to count the jobs", `parseInt(document.querySelector('article[data-provider=samsar] .succeeded').textContent) >= 13`, 20*time.Second)
	if n := eval[int](t, ctx, `document.querySelectorAll('article[data-provider=samsar] path.line').length`); n < 2 {
		t.Errorf("samsar's charts draw %d lines", n)
	}
	screenshot(t, ctx, dir, "activity.png")

	do(t, ctx, "workers", chromedp.Navigate(d.URL+"/workers"), chromedp.WaitVisible(chromedp.CSS(`tr[data-worker="replica-1"]`)))
	if st := eval[string](t, ctx, `document.querySelector('tr[data-worker="replica-1"] .badge').textContent`); st != "up" {
		t.Errorf("replica-1 shows %q", st)
	}
	screenshot(t, ctx, dir, "workers.png")

	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.Inspector.Pause(cctx, "samsar", "credits topped up at noon"); err != nil {
		t.Fatal(err)
	}
	d.Enqueue(samsarJobs("waits", 5)...)
	do(t, ctx, "paused batch", chromedp.Navigate(d.URL+"/batches/waits"))
	poll(t, ctx, "the batch to say samsar is paused", `(document.querySelector('.waiting-on[data-provider=samsar]') || {textContent: ""}).textContent.includes("paused")`, 20*time.Second)
	screenshot(t, ctx, dir, "batch-paused.png")
	if os.Getenv("REELQ_UPDATE_SCREENSHOT") != "" {
		for _, name := range []string{"jobs.png", "activity.png", "workers.png"} {
			if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
				_ = os.WriteFile("../../docs/img/dashboard-"+name, b, 0o644)
			}
		}
	}
}
