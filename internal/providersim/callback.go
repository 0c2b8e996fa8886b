package providersim

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"time"
)

// Callbacks: a provider's API that takes a callback URL at submit calls
// it back when the task is done, as the real one does (see each API's
// sim.go for the body and the signature). A task's callback is sent once
// its DoneAt has passed, in real time from the submit (the simulator's
// clock, SetNow, does not move it); a cancelled task is not called back.
// Each callback is counted in the stats as op "callback" with the status
// the receiver answered (0: no answer).

// callbacks owns the pending and running callbacks; Close stops them.
type callbacks struct {
	mu      sync.Mutex
	ctx     context.Context
	stop    context.CancelFunc
	pending map[*time.Timer]struct{}
	wg      sync.WaitGroup
	client  *http.Client
}

func (cb *callbacks) init() {
	cb.ctx, cb.stop = context.WithCancel(context.Background())
	cb.pending = map[*time.Timer]struct{}{}
	cb.client = &http.Client{Timeout: 10 * time.Second}
}

// CallBack runs send once t is done (at once if it is), unless t was
// cancelled by then or the simulator was closed. send gets the task's
// view and a context that ends when the simulator is closed.
func (c *Call) CallBack(t *Task, send func(ctx context.Context, v TaskView)) {
	cb := &c.s.cb
	cb.mu.Lock()
	defer cb.mu.Unlock()
	if cb.ctx.Err() != nil {
		return
	}
	var tm *time.Timer
	cb.wg.Add(1)
	tm = time.AfterFunc(max(time.Until(c.s.realDone(t)), 0), func() {
		defer cb.wg.Done()
		cb.mu.Lock()
		delete(cb.pending, tm)
		cb.mu.Unlock()
		v, ok := c.Peek(t.ID)
		if !ok || c.Cancelled(t) || cb.ctx.Err() != nil {
			return
		}
		v.Done, v.Fail = true, t.Fail
		send(cb.ctx, v)
	})
	cb.pending[tm] = struct{}{}
}

// realDone is when t is done in real time.
func (s *Server) realDone(t *Task) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Now().Add(t.DoneAt.Sub(s.now()))
}

// Post sends a callback: POST body to url with the headers h, counting
// the answer's status (0 when there was none) as op "callback".
func (c *Call) Post(ctx context.Context, url string, h http.Header, body []byte) {
	status := 0
	defer func() { c.Count("callback", status) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.s.cb.client.Do(req)
	if err != nil {
		return
	}
	resp.Body.Close()
	status = resp.StatusCode
}

// Close stops the callbacks not yet sent and waits for those being sent.
// The simulator serves on (without callbacks) after it.
func (s *Server) Close() {
	cb := &s.cb
	cb.mu.Lock()
	cb.stop()
	for tm := range cb.pending {
		if tm.Stop() {
			cb.wg.Done()
		}
		delete(cb.pending, tm)
	}
	cb.mu.Unlock()
	cb.wg.Wait()
	cb.client.CloseIdleConnections()
}
