package worker

import "time"

// stamp is an instant as Unix nanoseconds: 8 bytes where a time.Time
// takes 24, for the instants every job in flight holds (its timer's due
// time, its last poll, its last rate-limit token). It reads the wall
// clock only: a clock step moves these instants with it, as it moves a
// poll interval's end already. The zero stamp is the zero time.
type stamp int64

// stampOf is t as a stamp.
func stampOf(t time.Time) stamp {
	if t.IsZero() {
		return 0
	}
	return stamp(t.UnixNano())
}

// time is s as a time.Time.
func (s stamp) time() time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(s))
}
