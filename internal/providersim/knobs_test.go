package providersim_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/reelq/reelq/internal/providers/all"
	"github.com/reelq/reelq/internal/providersim"
)

// createFor submits one job mentioning text to the named provider over
// real HTTP, the way its adapter does.
func createFor(t *testing.T, f *fixture, provider, text string) reply {
	t.Helper()
	switch provider {
	case "segmind":
		return f.do(t, "POST", segmindPath, segmindJSON, strings.NewReader(fmt.Sprintf(`{"prompt":%q}`, text)))
	case "samsar":
		return f.do(t, "POST", "/v1/video/create_movie", map[string]string{"Authorization": "Bearer sk", "Content-Type": "application/json"},
			strings.NewReader(fmt.Sprintf(`{"input":{"prompt":%q,"image_model":"FLUX1.1PRO","video_model":"LUMA","duration":10}}`, text)))
	case "vimmerse":
		return vimmerseCreate(t, f, text)
	case "camb":
		return cambCreate(t, f, [][2]string{{"source_language", "1"}}, text)
	case "fal":
		return f.do(t, "POST", "/fal/fal-ai/veo3", map[string]string{"Authorization": "Key id:secret", "Content-Type": "application/json"},
			strings.NewReader(fmt.Sprintf(`{"prompt":%q,"duration":"4s"}`, text)))
	case "replicate":
		return f.do(t, "POST", "/replicate/v1/models/google/veo-3/predictions", map[string]string{"Authorization": "Bearer r8", "Content-Type": "application/json"},
			strings.NewReader(fmt.Sprintf(`{"input":{"prompt":%q,"duration":4}}`, text)))
	}
	t.Fatalf("unknown provider %s", provider)
	return reply{}
}

// taskIDOf is the documented task id of a create answer, or "".
func taskIDOf(provider string, r reply) string {
	switch provider {
	case "segmind", "samsar":
		return str(r.body["request_id"])
	case "vimmerse":
		d, _ := r.body["data"].(map[string]any)
		return str(d["id"])
	case "camb":
		return str(r.body["task_id"])
	case "fal":
		return str(r.body["request_id"])
	case "replicate":
		return str(r.body["id"])
	}
	return ""
}

// createdStatus is the status of an accepted create.
func createdStatus(provider string) int {
	if provider == "replicate" {
		return http.StatusCreated
	}
	return http.StatusOK
}

func samsarCreateRequest(ctx context.Context, prompt string) *http.Request {
	req := httptest.NewRequestWithContext(ctx, "POST", "/v1/video/create_movie",
		strings.NewReader(fmt.Sprintf(`{"input":{"prompt":%q,"image_model":"FLUX1.1PRO","video_model":"LUMA","duration":10}}`, prompt)))
	req.Header.Set("Authorization", "Bearer sk")
	req.Header.Set("Content-Type", "application/json")
	return req
}

// TestCreateDelay checks that a slow create charges the task when the
// request arrives and answers after a delay within [min, max].
func TestCreateDelay(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const lo, hi = 300 * time.Millisecond, time.Second
		s := all.Simulator(map[string]providersim.Knobs{"samsar": {CreateDelayMin: providersim.Duration(lo), CreateDelayMax: providersim.Duration(hi), CompleteAfter: providersim.Duration(time.Hour)}}, 3)
		seen := map[time.Duration]bool{}
		for i := range 6 {
			rec := httptest.NewRecorder()
			done := make(chan struct{})
			start := time.Now()
			go func() {
				defer close(done)
				s.ServeHTTP(rec, samsarCreateRequest(context.Background(), fmt.Sprintf("slow %d", i)))
			}()
			synctest.Wait()
			select {
			case <-done:
				t.Fatal("the create answered without the delay")
			default:
			}
			if st := s.Stats(0)["samsar"]; st.Tasks != i+1 || st.Submissions[fmt.Sprintf("slow %d", i)] != 1 {
				t.Fatalf("while the answer is held: %d tasks, submissions %v; want the task already charged", st.Tasks, st.Submissions)
			}
			<-done
			d := time.Since(start)
			if d < lo || d > hi || rec.Code != http.StatusOK {
				t.Errorf("create %d answered %d after %v, want 200 within [%v, %v]", i, rec.Code, d, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("every delay was the same (%v): not drawn from the range", seen)
		}

		// A client that hangs up during the hold has still paid.
		ctx, cancel := context.WithCancel(context.Background())
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ServeHTTP(rec, samsarCreateRequest(ctx, "hung up"))
		}()
		synctest.Wait()
		cancel()
		<-done
		st := s.Stats(0)["samsar"]
		if rec.Body.Len() != 0 || st.Submissions["hung up"] != 1 || st.Requests["submit 499"] != 1 {
			t.Errorf("after a hang-up: body %q, submissions %v, requests %v", rec.Body.String(), st.Submissions, st.Requests)
		}
	})
}

// TestMissingTaskID checks that each provider answers an accepted,
// charged create without its documented task id.
func TestMissingTaskID(t *testing.T) {
	t.Parallel()
	for _, name := range all.Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, name, providersim.Knobs{MissingTaskID: true})
			r := createFor(t, f, name, "no id please")
			wantStatus(t, "create", r, createdStatus(name))
			if id := taskIDOf(name, r); id != "" || !strings.Contains(r.raw, name+"-") {
				t.Errorf("answer %s: documented id %q, want it missing (renamed)", r.raw, id)
			}
			if name == "segmind" && r.body["poll_url"] != nil {
				t.Errorf("answer %s names the task in poll_url", r.raw)
			}
			if n := f.sim.Stats(0)[name].Tasks; n != 1 {
				t.Errorf("%d tasks, want the create charged", n)
			}
		})
	}
}

// TestForbiddenMarker checks the per-job 403 in each provider's form, and
// that nothing is charged.
func TestForbiddenMarker(t *testing.T) {
	t.Parallel()
	for _, name := range all.Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, name, providersim.Knobs{ForbiddenMarker: providersim.ForbiddenMarker})
			r := createFor(t, f, name, "Story "+providersim.ForbiddenMarker)
			if name == "camb" {
				wantStatus(t, "create", r, 200)
				r = f.do(t, "GET", "/apis/story/"+str(r.body["task_id"]), cambKey, nil)
				if r.body["status"] != "ERROR" || r.body["exception_reason"] != "FORBIDDEN" {
					t.Errorf("poll %v, want ERROR with exception_reason FORBIDDEN", r.body)
				}
			} else {
				wantStatus(t, "create", r, http.StatusForbidden)
			}
			if st := f.sim.Stats(0)[name]; st.Spent != 0 || len(st.Submissions) != 0 {
				t.Errorf("stats %+v: a refused job was charged", st)
			}
			wantStatus(t, "another job", createFor(t, f, name, "Story without the marker"), createdStatus(name))
		})
	}
}

// TestBalanceFaults checks the balance endpoint knobs.
func TestBalanceFaults(t *testing.T) {
	t.Parallel()
	paths := map[string]string{"segmind": "/v1/get-user-credits", "samsar": "/v1/credits"}
	auth := map[string]string{"Authorization": "Bearer k"}
	for name, path := range paths {
		for _, status := range []int{503, 404} {
			f := newFixture(t, name, providersim.Knobs{BalanceStatus: status})
			wantStatus(t, name+" balance", f.do(t, "GET", path, auth, nil), status)
		}
		f := newFixture(t, name, providersim.Knobs{BalanceMalformed: true})
		r := f.do(t, "GET", path, auth, nil)
		wantStatus(t, name+" malformed balance", r, 200)
		if r.body["credits"] != nil || r.body["remainingCredits"] != nil {
			t.Errorf("%s malformed balance %s has a balance field", name, r.raw)
		}
	}
}

// finished creates a task on f's provider and moves the clock past its
// end, returning the output URL the provider hands out.
func finished(t *testing.T, f *fixture) string {
	t.Helper()
	r := createFor(t, f, "samsar", "outputs")
	id := str(r.body["request_id"])
	f.clock.advance(time.Minute)
	r = f.do(t, "GET", "/v1/video/status?request_id="+id, map[string]string{"Authorization": "Bearer sk"}, nil)
	u := str(r.body["url"])
	if u == "" {
		if res, ok := r.body["result"].(map[string]any); ok {
			u = str(res["url"])
		}
	}
	if u == "" {
		u = str(r.body["result_url"])
	}
	if !strings.HasPrefix(u, f.url+"/outputs/samsar/"+id+"/") {
		t.Fatalf("output URL %q does not point at the simulator", u)
	}
	return u
}

func get(t *testing.T, u string) (*http.Response, []byte, error) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// TestOutputFiles checks the files behind the output URLs: type, length
// and signature, for each kind, and the download counters.
func TestOutputFiles(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "samsar", providersim.Knobs{})
	u := finished(t, f)
	base := u[:strings.LastIndex(u, "/")+1]
	for file, ct := range map[string]string{"video.mp4": providersim.TypeMP4, "story.wav": providersim.TypeWAV, "board.png": providersim.TypePNG} {
		resp, b, err := get(t, base+file)
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ct || resp.ContentLength != int64(len(b)) {
			t.Fatalf("%s: HTTP %d %s, %d of %d bytes, %v", file, resp.StatusCode, resp.Header.Get("Content-Type"), len(b), resp.ContentLength, err)
		}
		checkMedia(t, ct, b)
	}
	resp, _, _ := get(t, base+"notes.txt")
	if resp.StatusCode != 404 {
		t.Errorf("unknown file type: HTTP %d, want 404", resp.StatusCode)
	}
	resp, _, _ = get(t, f.url+"/outputs/samsar/samsar-999999-0000/video.mp4")
	if resp.StatusCode != 404 {
		t.Errorf("unknown task: HTTP %d, want 404", resp.StatusCode)
	}
	st := f.sim.Stats(0)["samsar"]
	if len(st.Downloads) != 3 || st.DownloadRequests["200"] != 3 || st.DownloadRequests["404"] != 2 || st.DownloadBytes == 0 {
		t.Errorf("download stats %v %v %d", st.Downloads, st.DownloadRequests, st.DownloadBytes)
	}
}

// checkMedia checks a file's structure: MP4 top-level boxes that add up
// to the file, starting with ftyp; a WAV header that matches the size; a
// PNG signature.
func checkMedia(t *testing.T, ct string, b []byte) {
	t.Helper()
	switch ct {
	case providersim.TypeMP4:
		var boxes []string
		for off := int64(0); off < int64(len(b)); {
			size := int64(binary.BigEndian.Uint32(b[off:]))
			typ := string(b[off+4 : off+8])
			if size == 1 {
				size = int64(binary.BigEndian.Uint64(b[off+8:]))
			}
			if size < 8 || off+size > int64(len(b)) {
				t.Fatalf("MP4 box %q at %d has size %d in a %d-byte file", typ, off, size, len(b))
			}
			boxes = append(boxes, typ)
			off += size
		}
		if boxes[0] != "ftyp" || !strings.Contains(strings.Join(boxes, " "), "moov") || !strings.Contains(strings.Join(boxes, " "), "mdat") {
			t.Errorf("MP4 boxes %v", boxes)
		}
	case providersim.TypeWAV:
		if string(b[:4]) != "RIFF" || string(b[8:16]) != "WAVEfmt " || string(b[36:40]) != "data" ||
			int(binary.LittleEndian.Uint32(b[4:])) != len(b)-8 || int(binary.LittleEndian.Uint32(b[40:])) != len(b)-44 {
			t.Errorf("WAV header % x for %d bytes", b[:44], len(b))
		}
	case providersim.TypePNG:
		if !strings.HasPrefix(string(b), "\x89PNG\r\n\x1a\n") {
			t.Errorf("PNG signature % x", b[:8])
		}
	}
}

// TestOutputLarge checks OutputSize: files of exactly that size that
// are still valid.
func TestOutputLarge(t *testing.T) {
	t.Parallel()
	const size = 5<<20 + 3
	f := newFixture(t, "samsar", providersim.Knobs{OutputSize: size})
	u := finished(t, f)
	for _, file := range []string{"video.mp4", "story.wav"} {
		resp, b, err := get(t, u[:strings.LastIndex(u, "/")+1]+file)
		if err != nil || resp.StatusCode != 200 || len(b) != size || resp.ContentLength != size {
			t.Fatalf("%s: HTTP %d, %d bytes (Content-Length %d), %v; want %d", file, resp.StatusCode, len(b), resp.ContentLength, err, size)
		}
		checkMedia(t, resp.Header.Get("Content-Type"), b)
	}
}

// TestOutputExpiry checks OutputTTL: 404 (Segmind, Samsar) or 403
// (Vimmerse, Camb) once the link has expired, and OutputNotFound.
func TestOutputExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "samsar", providersim.Knobs{OutputTTL: providersim.Duration(time.Hour)})
	u := finished(t, f)
	if resp, _, _ := get(t, u); resp.StatusCode != 200 {
		t.Fatalf("fresh link: HTTP %d", resp.StatusCode)
	}
	f.clock.advance(time.Hour)
	if resp, _, _ := get(t, u); resp.StatusCode != 404 {
		t.Errorf("expired Samsar link: HTTP %d, want 404", resp.StatusCode)
	}
	for name, want := range map[string]int{"camb": 403, "vimmerse": 403, "segmind": 404} {
		if s, _ := all.Lookup(name); s.LinkExpiry.Status != want {
			t.Errorf("%s: expired links answer %d, want %d", name, s.LinkExpiry.Status, want)
		}
	}
	f = newFixture(t, "samsar", providersim.Knobs{OutputNotFound: true})
	if resp, _, _ := get(t, finished(t, f)); resp.StatusCode != 404 {
		t.Errorf("OutputNotFound: HTTP %d", resp.StatusCode)
	}
}

// TestOutputCut checks OutputCutAfter: the client gets that many bytes
// and then an unexpected EOF, short of Content-Length.
func TestOutputCut(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "samsar", providersim.Knobs{OutputCutAfter: 1000})
	resp, err := http.Get(finished(t, f))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(b) != 1000 || resp.ContentLength != int64(providersim.ClipSize()) {
		t.Errorf("read %d bytes of %d, err %v; want 1000 and an unexpected EOF", len(b), resp.ContentLength, err)
	}
	// The handler records the cut after the client has seen it; the
	// server's Close waits for the handler.
	srvStats := func() int { return f.sim.Stats(0)["samsar"].DownloadRequests["cut"] }
	f.close()
	if n := srvStats(); n != 1 {
		t.Errorf("cut downloads counted %d, want 1", n)
	}
}

// TestOutputRate checks OutputRate: the file takes at least size/rate to
// serve (fake time), in several writes.
func TestOutputRate(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const rate = 2000 // bytes per second
		s := all.Simulator(map[string]providersim.Knobs{"samsar": {OutputRate: rate}}, 1)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, samsarCreateRequest(context.Background(), "slow download"))
		id := strings.Trim(strings.TrimPrefix(strings.TrimSpace(rec.Body.String()), `{"request_id":`), `"}`)
		time.Sleep(time.Second) // fake time: the task completes
		start := time.Now()
		rec = httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", "/outputs/samsar/"+id+"/video.mp4", nil))
		d := time.Since(start)
		want := time.Duration(float64(providersim.ClipSize()-rate/20) / rate * float64(time.Second))
		if rec.Code != 200 || rec.Body.Len() != providersim.ClipSize() || d < want {
			t.Errorf("HTTP %d, %d bytes in %v; want %d bytes in at least %v", rec.Code, rec.Body.Len(), d, providersim.ClipSize(), want)
		}
	})
}
