package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// runBullMQ runs node/bullmq.mjs against a fresh redis-server: Queue
// addBulk in batches of 1,000 with jobId (BullMQ's dedupe: an existing
// id is not added again; finished jobs are kept, BullMQ's default), then
// a Worker with concurrency o.conc and an async handler that returns at
// once; done is the n-th "completed" event. The script measures its own
// phases, its CPU (process.cpuUsage) and the server's (/proc).
func runBullMQ(o opts) result {
	dir, _ := os.MkdirTemp("", "peers-bullmq-")
	defer os.RemoveAll(dir)
	srv := startRedis(dir)
	defer srv.stop()
	cmd := exec.Command("node", filepath.Join(o.nodeDir, "bullmq.mjs"))
	cmd.Env = append(os.Environ(), "REDIS_ADDR="+srv.addr, fmt.Sprintf("REDIS_PID=%d", srv.pid()),
		fmt.Sprintf("JOBS=%d", o.jobs), fmt.Sprintf("CONCURRENCY=%d", o.conc))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		fatalf("node bullmq.mjs: %v", err)
	}
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		fatalf("bullmq.mjs printed %q: %v", out.String(), err)
	}
	return r
}
