package media

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// jsonKeep is how much of a JSON document is kept and checked: a larger
// one is reported as JSON unchecked.
const jsonKeep = 1 << 20

// jsonDoc is a JSON document (Camb's dialogue, say).
type jsonDoc struct {
	b    []byte
	over bool
}

func newJSON() *jsonDoc { return &jsonDoc{} }

func (d *jsonDoc) feed(p []byte) {
	if len(d.b)+len(p) > jsonKeep {
		d.over, d.b = true, nil
	}
	if !d.over {
		d.b = append(d.b, p...)
	}
}

func (d *jsonDoc) end(r *Report) {
	r.Kind = JSON
	if d.over {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(d.b))
	var v json.RawMessage
	switch err := dec.Decode(&v); {
	case errors.Is(err, io.ErrUnexpectedEOF):
		r.Complete, r.Cut = false, "the JSON document ends early"
	case err != nil:
		r.Malformed = fmt.Sprintf("invalid JSON: %v", err)
	case len(bytes.TrimSpace(d.b[dec.InputOffset():])) > 0:
		r.Malformed = fmt.Sprintf("data after the JSON value at offset %d", dec.InputOffset())
	}
}
