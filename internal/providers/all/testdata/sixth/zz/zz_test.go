package zz_test

import (
	"encoding/json"
	"testing"

	"github.com/reelq/reelq/internal/providers/providertest"
	"github.com/reelq/reelq/internal/providers/zz"
	"github.com/reelq/reelq/internal/providersim"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, zz.Spec, providertest.Harness{
		ValidInput:     json.RawMessage(`{"prompt":"a kite","seconds":3}`),
		ForbiddenInput: json.RawMessage(`{"prompt":"a kite ` + providersim.ForbiddenMarker + `","seconds":3}`),
		InvalidInputs: map[string]json.RawMessage{
			"no prompt":    json.RawMessage(`{"seconds":3}`),
			"too long":     json.RawMessage(`{"prompt":"p","seconds":61}`),
			"unknown key":  json.RawMessage(`{"prompt":"p","seconds":3,"x":1}`),
			"not a object": json.RawMessage(`[]`),
		},
	})
}
