package reelq_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/reelqtest"
)

func goodSamsar() reelq.SamsarInput {
	return reelq.SamsarInput{Prompt: "a red kite over dunes", ImageModel: "FLUX1.1PRO", VideoModel: "LUMA", Duration: 10}
}

func goodCamb() reelq.CambInput {
	return reelq.CambInput{Text: "Once upon a time, a lighthouse keeper found a bottle.", SourceLanguage: 1}
}

// Each typed input is checked with the worker's own rules; an invalid one
// is refused with an error that names the field as the docs do.
func TestInputValidate(t *testing.T) {
	t.Parallel()
	with := func(f func(*reelq.SamsarInput)) reelq.SamsarInput { in := goodSamsar(); f(&in); return in }
	withCamb := func(f func(*reelq.CambInput)) reelq.CambInput { in := goodCamb(); f(&in); return in }
	for _, tc := range []struct {
		name string
		in   reelq.Input
		want string // "" valid; else the whole error message
	}{
		{"samsar minimal", goodSamsar(), ""},
		{"samsar every field", reelq.SamsarInput{Prompt: "a lighthouse", ImageModel: "IMAGEN3", VideoModel: "VEOI2V", Duration: 120,
			AspectRatio: "9:16", Tone: "calm", VideoModelSubType: "pro", WebhookURL: "https://hooks.example.com/samsar"}, ""},
		{"samsar no prompt", with(func(in *reelq.SamsarInput) { in.Prompt = " " }), "reelq: invalid job: input.prompt is required"},
		{"samsar long prompt", with(func(in *reelq.SamsarInput) { in.Prompt = strings.Repeat("é", 501) }),
			"reelq: invalid job: input.prompt is 501 characters; the limit is 500"},
		{"samsar no image model", with(func(in *reelq.SamsarInput) { in.ImageModel = "" }),
			"reelq: invalid job: input.image_model is required (one of FLUX1.1PRO, IMAGEN3)"},
		{"samsar unknown image model", with(func(in *reelq.SamsarInput) { in.ImageModel = "SDXL" }),
			`reelq: invalid job: input.image_model "SDXL" is not one of FLUX1.1PRO, IMAGEN3`},
		{"samsar unknown video model", with(func(in *reelq.SamsarInput) { in.VideoModel = "luma" }),
			`reelq: invalid job: input.video_model "luma" is not one of LUMA, KLINGIMGTOVIDPRO, PIXVERSEI2V, WAN2.1, VEOI2V`},
		{"samsar no duration", with(func(in *reelq.SamsarInput) { in.Duration = 0 }),
			"reelq: invalid job: input.duration is required (seconds, at most 120)"},
		{"samsar negative duration", with(func(in *reelq.SamsarInput) { in.Duration = -5 }),
			"reelq: invalid job: input.duration must be positive, got -5"},
		{"samsar long duration", with(func(in *reelq.SamsarInput) { in.Duration = 120.5 }),
			"reelq: invalid job: input.duration is 120.5 s; the limit is 120 s"},
		{"samsar aspect ratio", with(func(in *reelq.SamsarInput) { in.AspectRatio = "4:3" }),
			`reelq: invalid job: input.aspect_ratio "4:3" is not one of 16:9, 9:16`},
		{"samsar webhook", with(func(in *reelq.SamsarInput) { in.WebhookURL = "ftp://hooks.example.com" }),
			`reelq: invalid job: input.webhookUrl "ftp://hooks.example.com" is not an http(s) URL`},

		{"segmind default workflow", reelq.SegmindInput{}, ""},
		{"segmind workflow and inputs", reelq.SegmindInput{WorkflowID: "67ee7aecd4ffdb6b8c9315ea-v4",
			Inputs: map[string]any{"input_image": "https://example.com/a.png", "steps": 30, "styles": []string{"noir"}}}, ""},
		{"segmind bad workflow", reelq.SegmindInput{WorkflowID: "storyboard"},
			`reelq: invalid job: input.workflow_id "storyboard" is not a workflow id (24 hex digits, "-v", version, e.g. 67ee7aecd4ffdb6b8c9315ea-v4)`},
		{"segmind workflow in inputs", reelq.SegmindInput{Inputs: map[string]any{"workflow_id": "67ee7aecd4ffdb6b8c9315ea-v4"}},
			`reelq: invalid job: segmind input: set the workflow with WorkflowID, not Inputs["workflow_id"]`},
		{"segmind empty key", reelq.SegmindInput{Inputs: map[string]any{" ": 1}}, "reelq: invalid job: input has an empty key"},
		{"segmind value not JSON", reelq.SegmindInput{Inputs: map[string]any{"a": 1, "callback": func() {}}},
			"reelq: invalid job: segmind input: the value of input.callback cannot be sent as JSON: json: unsupported type: func()"},

		{"vimmerse default template", reelq.VimmerseInput{}, ""},
		{"vimmerse every field", reelq.VimmerseInput{TemplateID: "overlay_gray_5443", Title: "Spring walk", Description: "a walk",
			ImageURLs: []string{"https://example.com/person.png"}, VisibilityStatus: "0", WebhookURL: "https://hooks.example.com/v",
			Options: map[string]any{"background_urls": "https://example.com/bg.mp4", "prompt": "Person is smiling", "motion_type": "Auto"}}, ""},
		{"vimmerse template", reelq.VimmerseInput{TemplateID: "overlay gray"}, `reelq: invalid job: input.template_id "overlay gray" is not a template id`},
		{"vimmerse image url", reelq.VimmerseInput{ImageURLs: []string{"https://example.com/a.png", "person.png"}},
			`reelq: invalid job: input.image_urls[1] "person.png" is not an http(s) URL`},
		{"vimmerse visibility", reelq.VimmerseInput{VisibilityStatus: "public"},
			`reelq: invalid job: input.visibility_status "public" is not one of "0" (private), "1" (unlisted), "2" (public)`},
		{"vimmerse webhook", reelq.VimmerseInput{WebhookURL: "hooks.example.com"}, `reelq: invalid job: input.webhook_url "hooks.example.com" is not an http(s) URL`},
		{"vimmerse title tag", reelq.VimmerseInput{Title: "walk [reelq:x]"}, `reelq: invalid job: input.title must not contain "[reelq:": reelq adds that tag itself`},
		{"vimmerse options not JSON", reelq.VimmerseInput{Options: map[string]any{"ch": make(chan int)}},
			"reelq: invalid job: vimmerse input cannot be sent as JSON: json: unsupported type: chan int"},

		{"camb minimal", goodCamb(), ""},
		{"camb every field", reelq.CambInput{Text: "A story.", SourceLanguage: 148, Title: "The Lighthouse", Description: "a short story",
			NarratorVoiceID: 147320, ChosenDictionaries: []int{7}, FolderID: 3}, ""},
		{"camb no text", withCamb(func(in *reelq.CambInput) { in.Text = "" }), "reelq: invalid job: input.text is required (the story to narrate)"},
		{"camb no language", withCamb(func(in *reelq.CambInput) { in.SourceLanguage = 0 }),
			"reelq: invalid job: input.source_language is required (Camb language id, 1 = English)"},
		{"camb unknown language", withCamb(func(in *reelq.CambInput) { in.SourceLanguage = 149 }),
			"reelq: invalid job: input.source_language 149 is not a language id (1..148)"},
		{"camb short title", withCamb(func(in *reelq.CambInput) { in.Title = "Ab" }),
			"reelq: invalid job: input.title is 2 characters; it must be 3 to 255"},
		{"camb long description", withCamb(func(in *reelq.CambInput) { in.Description = strings.Repeat("x", 5001) }),
			"reelq: invalid job: input.description is 5001 characters; it must be 3 to 5000"},
		{"camb voice", withCamb(func(in *reelq.CambInput) { in.NarratorVoiceID = -1 }),
			"reelq: invalid job: input.narrator_voice_id must be a positive voice id"},
		{"camb folder", withCamb(func(in *reelq.CambInput) { in.FolderID = -2 }), "reelq: invalid job: input.folder_id must be a positive folder id"},
		{"fal kling", reelq.FalInput{Model: "fal-ai/kling-video/v2.1/master/text-to-video", Input: map[string]any{"prompt": "a kite", "duration": "10", "cfg_scale": 0.5}}, ""},
		{"fal schema", reelq.FalInput{Model: "fal-ai/veo3", Input: map[string]any{"prompt": "a kite", "duration": 8, "audio": true}},
			"reelq: invalid job: input.input.duration: got number, want string; input.input: additional properties 'audio' not allowed"},
		{"fal unknown model", reelq.FalInput{Model: "fal-ai/sora", Input: map[string]any{"prompt": "a kite"}},
			`reelq: invalid job: input.model "fal-ai/sora" has no input schema on this deployment (known: fal-ai/kling-video/v2.1/master/image-to-video, fal-ai/kling-video/v2.1/master/text-to-video, fal-ai/veo3, fal-ai/veo3/fast, fal-ai/wan/v2.2-5b/text-to-video/distill); add <FAL_SCHEMA_DIR>/fal-ai/sora.json, or set FAL_UNKNOWN_MODELS=pass`},
		{"replicate model", reelq.ReplicateInput{Model: "google/veo-3", Input: map[string]any{"prompt": "a kite", "duration": 8}}, ""},
		{"replicate no model", reelq.ReplicateInput{Input: map[string]any{"prompt": "a kite"}},
			"reelq: invalid job: input.model or input.version is required (owner/name, or a version id)"},
		{"replicate no input", reelq.ReplicateInput{Model: "minimax/video-01"}, "reelq: invalid job: input.input is required: the model's input object"},
		{"samsar input too large", with(func(in *reelq.SamsarInput) { in.Tone = strings.Repeat("x", reelq.MaxInputBytes) }),
			"reelq: invalid job: input is 32874 bytes; the limit is 32768"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.in.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Validate:\n got %v\nwant %s", err, tc.want)
			}
			if !errors.Is(err, reelq.ErrInvalidJob) {
				t.Errorf("%v does not match ErrInvalidJob", err)
			}
		})
	}
}

// NewJob encodes the input as the provider's section of docs/providers.md
// shows it, and checks the envelope, not the provider's rules.
func TestNewJob(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in       reelq.Input
		provider string
		json     string
	}{
		{reelq.SamsarInput{Prompt: "a <red> kite & dunes", ImageModel: "FLUX1.1PRO", VideoModel: "LUMA", Duration: 10, AspectRatio: "16:9"},
			"samsar", `{"prompt":"a <red> kite & dunes","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":10,"aspect_ratio":"16:9"}`},
		{reelq.SegmindInput{}, "segmind", `{}`},
		{reelq.SegmindInput{WorkflowID: "67ee7aecd4ffdb6b8c9315ea-v4", Inputs: map[string]any{"b": 2, "a": "x"}},
			"segmind", `{"a":"x","b":2,"workflow_id":"67ee7aecd4ffdb6b8c9315ea-v4"}`},
		{reelq.VimmerseInput{TemplateID: "each_ugcproduct_0226", ImageURLs: []string{"https://example.com/p.png"}, Options: map[string]any{"prompt": "burger"}},
			"vimmerse", `{"template_id":"each_ugcproduct_0226","options":{"prompt":"burger"},"image_urls":["https://example.com/p.png"]}`},
		{reelq.CambInput{Text: "Once.", SourceLanguage: 1, NarratorVoiceID: 147320},
			"camb", `{"text":"Once.","source_language":1,"narrator_voice_id":147320}`},
	} {
		j, err := reelq.NewJob("order-1", tc.in)
		if err != nil {
			t.Fatalf("NewJob(%#v): %v", tc.in, err)
		}
		if j.ID != "order-1" || j.Provider != tc.provider || string(j.Input) != tc.json {
			t.Errorf("NewJob(%#v) = %s %s %s\nwant order-1 %s %s", tc.in, j.ID, j.Provider, j.Input, tc.provider, tc.json)
		}
	}
	for _, tc := range []struct {
		id   string
		in   reelq.Input
		want string
	}{
		{"order 1", goodSamsar(), `reelq: invalid job: id "order 1" must be 1-128 characters of letters, digits, '-' or '_'`},
		{"seq-1", goodSamsar(), `reelq: invalid job: id "seq-1": the seq- prefix is reserved for messages the worker names itself`},
		{"a", nil, "reelq: invalid job: input is required"},
	} {
		_, err := reelq.NewJob(tc.id, tc.in)
		if err == nil || err.Error() != tc.want || !errors.Is(err, reelq.ErrInvalidJob) {
			t.Errorf("NewJob(%q, %#v): %v\nwant %s", tc.id, tc.in, err, tc.want)
		}
	}
	// The provider's rules are the client's business (they depend on the
	// deployment), not NewJob's.
	if _, err := reelq.NewJob("", reelq.SamsarInput{Prompt: "x"}); err != nil {
		t.Errorf("NewJob checked the provider's rules: %v", err)
	}
}

func TestSegmindInputJSON(t *testing.T) {
	t.Parallel()
	in := reelq.SegmindInput{WorkflowID: "67ee7aecd4ffdb6b8c9315ea-v4", Inputs: map[string]any{"input_image": "https://example.com/a.png", "steps": 30.0}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var back reelq.SegmindInput
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, in) {
		t.Errorf("round trip %s: %#v, want %#v", b, back, in)
	}
	if err := json.Unmarshal([]byte(`{"workflow_id": 4}`), &back); err == nil || !strings.Contains(err.Error(), "workflow_id must be a string") {
		t.Errorf("numeric workflow_id: %v", err)
	}
	if err := json.Unmarshal([]byte(`[]`), &back); err == nil {
		t.Error("an array read as a Segmind input")
	}
}

// A client validates with its own provider options (a deployment with
// other Samsar models), and a typed job is the same job as its
// hand-written JSON: enqueueing either under one id pays once.
func TestTypedInputsWithClient(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := reelq.NewClient(ctx, env.NC, reelq.Options{ProviderEnv: map[string]string{"SAMSAR_VIDEO_MODELS": "LUMA,SORA9"}})
	if err != nil {
		t.Fatal(err)
	}
	validate := func(in reelq.Input) error {
		j, err := reelq.NewJob("", in)
		if err != nil {
			return err
		}
		return c.Validate(j)
	}
	in := goodSamsar()
	in.VideoModel = "SORA9"
	if err := validate(in); err != nil {
		t.Errorf("client with SAMSAR_VIDEO_MODELS=LUMA,SORA9: %v", err)
	}
	if err := in.Validate(); err == nil || !strings.Contains(err.Error(), `input.video_model "SORA9" is not one of`) {
		t.Errorf("default rules accepted SORA9: %v", err)
	}
	in.VideoModel = "WAN2.1"
	if err := validate(in); err == nil || err.Error() != `reelq: invalid job: input.video_model "WAN2.1" is not one of LUMA, SORA9` {
		t.Errorf("client with SAMSAR_VIDEO_MODELS=LUMA,SORA9 on WAN2.1: %v", err)
	}
	if err := validate(nil); !errors.Is(err, reelq.ErrInvalidJob) {
		t.Errorf("nil input: %v", err)
	}

	j, err := reelq.NewJob("typed-1", goodSamsar())
	if err != nil {
		t.Fatal(err)
	}
	j.Batch = "typed"
	if r, err := env.Client.Enqueue(ctx, j); err != nil || r.Status != reelq.Published {
		t.Fatalf("enqueue: %+v %v", r, err)
	}
	byHand := reelq.Job{ID: "typed-1", Provider: "samsar", Batch: "typed",
		Input: json.RawMessage(`{"duration": 10, "video_model": "LUMA", "image_model": "FLUX1.1PRO", "prompt": "a red kite over dunes"}`)}
	if r, err := env.Client.Enqueue(ctx, byHand); err != nil || r.Status != reelq.Known {
		t.Errorf("the same job written by hand: %+v %v, want known", r, err)
	}
	other := goodSamsar()
	other.Duration = 20
	j2, _ := reelq.NewJob("typed-1", other)
	if _, err := env.Client.Enqueue(ctx, j2); !errors.Is(err, reelq.ErrConflict) {
		t.Errorf("other content under the same id: %v, want ErrConflict", err)
	}
	st, err := env.Client.Get(ctx, "typed-1")
	if err != nil {
		t.Fatal(err)
	}
	var back reelq.SamsarInput
	if err := json.Unmarshal(st.Input, &back); err != nil || back != goodSamsar() {
		t.Errorf("queued input %s reads back as %+v (%v)", st.Input, back, err)
	}
}
