package reelq

import (
	"encoding/json"
	"testing"
	"time"
)

func TestEncodeJobMatchesMarshal(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	five, yes := 5.0, true
	for _, j := range []Job{
		{ID: "a", Provider: "samsar", Input: json.RawMessage(`{"prompt":"x"}`)},
		{ID: "a-b_C", Provider: "samsar", Batch: "b1", Priority: High, FairnessKey: "t1", Input: json.RawMessage(`{"prompt":"x \u00e9 <"}`), Metadata: json.RawMessage(`{"k":[1,2]}`), EnqueuedAt: &ts},
		// The job's expect travels too (the fast path once dropped it).
		{ID: "e", Provider: "samsar", Input: json.RawMessage(`{"prompt":"x"}`), Expect: &Expect{Types: []string{"video/*"}, Duration: &five, Audio: &yes}},
	} {
		got, _ := encodeJob(&j)
		want, _ := json.Marshal(&j)
		var a, b any
		_ = json.Unmarshal(got, &a)
		_ = json.Unmarshal(want, &b)
		ga, _ := json.Marshal(a)
		gb, _ := json.Marshal(b)
		if string(ga) != string(gb) {
			t.Errorf("encodeJob = %s\nwant %s", got, want)
		}
		back, err := DecodeJob(got)
		if err != nil || back.Digest() != j.Digest() {
			t.Errorf("decode: %v %v", err, back)
		}
	}
}
