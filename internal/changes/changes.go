// Package changes lets a goroutine sleep until shared data changes
// without missing a change made between its reading the data and its
// going to sleep.
//
// The data's owner keeps a [Version] beside the data and calls Bump, under
// the lock that guards the data, after each change. A reader takes Load
// under that same lock when it reads the data, so the number names the
// view it read; when what it read tells it to wait, it waits on
// Changed(seen), which is closed already if the data changed since. (A
// channel taken when the reader goes to sleep, the pattern this replaces,
// misses every change between the read and the sleep.) A decision made on
// another goroutine carries its number with it to the one that sleeps.
package changes

import "sync"

// Version counts the changes of some data. The zero value is ready to
// use.
type Version struct {
	mu sync.Mutex
	n  uint64
	ch chan struct{} // closed at the next Bump; nil until someone waits
}

var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Bump records a change. Call it with the data's lock held, after the
// change.
func (v *Version) Bump() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.n++
	if v.ch != nil {
		close(v.ch)
		v.ch = nil
	}
}

// Load returns the current version. Call it with the data's lock held,
// when reading the data the version is to name.
func (v *Version) Load() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.n
}

// Changed returns a channel that is closed once the version differs from
// seen: at once if it does already.
func (v *Version) Changed(seen uint64) <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.n != seen {
		return closed
	}
	if v.ch == nil {
		v.ch = make(chan struct{})
	}
	return v.ch
}
