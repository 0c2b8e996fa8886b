package store

import (
	"context"
	"strings"
)

// KVValues reads the current values of keys in bucket in batched direct
// gets; deleted, purged and empty keys are absent from the result.
func (s *Store) KVValues(ctx context.Context, bucket string, keys []string) (map[string][]byte, error) {
	prefix := "$KV." + bucket + "."
	subjects := make([]string, len(keys))
	for i, k := range keys {
		subjects[i] = prefix + k
	}
	cctx, cancel := s.ReqCtx(ctx)
	defer cancel()
	msgs, err := s.LastMsgs(cctx, "KV_"+bucket, subjects)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(msgs))
	for subj, m := range msgs {
		if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" || len(m.Data) == 0 {
			continue
		}
		out[strings.TrimPrefix(subj, prefix)] = m.Data
	}
	return out, nil
}
