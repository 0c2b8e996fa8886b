package worker

// SetAfterReserve runs f after each budget reservation of w and before
// the state write that records it (nil: nothing).
func (w *Worker) SetAfterReserve(f func(jobID string)) {
	if f == nil {
		w.afterReserve.Store(nil)
		return
	}
	w.afterReserve.Store(&f)
}

// An illegal job state move panics under the package's tests.
func init() { strictMoves = true }
