package models_test

import (
	"encoding/json"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/reelq/reelq/internal/providers/models"
)

// replicateDoc is the shape of a Replicate version's openapi_schema: the
// input under components.schemas.Input, its enum in another schema
// referred to with allOf, OpenAPI 3.0's x-order and nullable keywords.
const replicateDoc = `{"openapi":"3.0.2","info":{"title":"Cog","version":"0.1.0"},"paths":{},
"components":{"schemas":{
 "Input":{"type":"object","title":"Input","required":["prompt"],"properties":{
  "prompt":{"type":"string","title":"Prompt","x-order":0},
  "aspect_ratio":{"allOf":[{"$ref":"#/components/schemas/aspect_ratio"}],"default":"16:9","x-order":1},
  "seed":{"type":"integer","nullable":true,"x-order":2}}},
 "aspect_ratio":{"enum":["16:9","9:16"],"type":"string","title":"aspect_ratio","description":"An enumeration."},
 "Output":{"type":"string","format":"uri"}}}}`

func TestOpenAPIDocuments(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{"acme/model.json": {Data: []byte(replicateDoc)}}
	c, err := models.Load("replicate", fsys, nil, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Known("acme/model") || c.Known("acme") {
		t.Fatalf("models %v, want acme/model", c.Models())
	}
	for in, want := range map[string]string{
		`{"prompt":"p","aspect_ratio":"9:16","seed":3}`: "",
		`{"prompt":"p","aspect_ratio":"4:3"}`:           "input.aspect_ratio: value must be one of '16:9', '9:16'",
		`{"aspect_ratio":"16:9"}`:                       "input: missing property 'prompt'",
		`{"prompt":"p","seed":1.5}`:                     "input.seed: got number, want integer",
	} {
		got := strings.Join(c.Check("acme/model", json.RawMessage(in), "input"), "; ")
		if got != want {
			t.Errorf("Check(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestBadFiles(t *testing.T) {
	t.Parallel()
	for name, fsys := range map[string]fstest.MapFS{
		"not JSON":       {"a/b.json": {Data: []byte(`{`)}},
		"bad schema":     {"a/b.json": {Data: []byte(`{"type":"objekt"}`)}},
		"external ref":   {"a/b.json": {Data: []byte(`{"$ref":"https://example.com/s.json"}`)}},
		"openapi no inp": {"a/b.json": {Data: []byte(`{"openapi":"3.0.0","paths":{}}`)}},
	} {
		if _, err := models.Load("fal", fsys, nil, "", "", ""); err == nil || !strings.Contains(err.Error(), "a/b.json") {
			t.Errorf("%s: Load = %v, want an error naming the file", name, err)
		}
	}
	for _, prices := range []string{`{"a/b":{"usd":"0","per":"run"}}`, `{"a/b":{"usd":"1","per":"second"}}`, `{"a/b":{"usd":"1","per":"minute","seconds":"d"}}`, `{"a/b":{"usd":1,"per":"run"}}`, `{"a/b":{"usd":"1","per":"run","typo":1}}`} {
		if _, err := models.Load("fal", nil, []byte(prices), "", "", ""); err == nil {
			t.Errorf("prices %s accepted", prices)
		}
	}
}
