package store

import (
	"context"
	"encoding/json"
	"strconv"
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

// CounterValue is the value of a JetStream counter message ({"val":"N"});
// 0 when it is not one.
func CounterValue(data []byte) uint64 {
	var v struct {
		Val string `json:"val"`
	}
	if json.Unmarshal(data, &v) != nil {
		return 0
	}
	n, _ := strconv.ParseUint(v.Val, 10, 64)
	return n
}
