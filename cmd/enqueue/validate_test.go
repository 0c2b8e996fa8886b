package main

import "testing"

// A job with several bad fields is told all of them at once, envelope and
// provider rules alike, so it is fixed in one round.
func TestValidationNamesEveryBadField(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	f := writeFile(t, "bad.jsonl", lines(
		`{"provider":"samsar","batch":"no spaces","priority":"urgent","input":{"prompt":"","image_model":"SDXL","video_model":"LUMA","duration":600}}`,
		`{"provider":"vimmerse","input":{"visibility_status":"9","image_urls":["ftp://x"]}}`,
	))
	r := c.run("--dry-run", f)
	if r.code != exitUsage {
		t.Fatalf("want exit 2:\n%s", r)
	}
	mustContain(t, "stderr", r.stderr,
		`line 1: batch "no spaces" must be 1-128 characters of letters, digits, '-' or '_'; priority "urgent" must be high, normal or low; `+
			`input.prompt is required; input.image_model "SDXL" is not one of`,
		`; input.duration is 600 s; the limit is`,
		`line 2: input.image_urls[0] "ftp://x" is not an http(s) URL; input.visibility_status "9" is not one of`,
	)
}
