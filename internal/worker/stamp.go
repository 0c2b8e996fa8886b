package worker

import "time"

// stamp is an instant as nanoseconds since epoch: 8 bytes where a
// time.Time takes 24, for the instants every job in flight holds (its
// timer's due time, its last poll, its last rate-limit token). Measured
// from epoch's monotonic reading, a stamp of time.Now() follows the
// monotonic clock as the time.Time did, so a wall-clock step moves no due
// time and makes no rate-limit token look fresh. The zero stamp is the
// zero time.
type stamp int64

// epoch is when the process started, with its monotonic reading.
var epoch = time.Now()

// stampOf is t as a stamp.
func stampOf(t time.Time) stamp {
	if t.IsZero() {
		return 0
	}
	if d := t.Sub(epoch); d != 0 {
		return stamp(d)
	}
	return 1 // epoch itself: one nanosecond later, not the zero time
}

// time is s as a time.Time (with a monotonic reading, as time.Now's).
func (s stamp) time() time.Time {
	if s == 0 {
		return time.Time{}
	}
	return epoch.Add(time.Duration(s))
}
