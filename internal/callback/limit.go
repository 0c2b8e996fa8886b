package callback

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxSources bounds the per-source limiters kept; past it, those idle
// for a minute are dropped.
const maxSources = 10000

// sourceLimits rate-limits requests per source address (the peer's IP;
// forwarding headers are not trusted).
type sourceLimits struct {
	rate  rate.Limit
	burst int

	mu   sync.Mutex
	srcs map[string]*source
}

type source struct {
	lim  *rate.Limiter
	seen time.Time
}

func newSourceLimits(perSecond float64, burst int) *sourceLimits {
	return &sourceLimits{rate: rate.Limit(perSecond), burst: max(burst, 1), srcs: map[string]*source{}}
}

// allow reports whether r's source may send a request now.
func (l *sourceLimits) allow(r *http.Request, now time.Time) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.srcs[host]
	if s == nil {
		if len(l.srcs) >= maxSources {
			for k, v := range l.srcs {
				if now.Sub(v.seen) > time.Minute {
					delete(l.srcs, k)
				}
			}
			if len(l.srcs) >= maxSources {
				return false // a flood of sources: refuse new ones until some go idle
			}
		}
		s = &source{lim: rate.NewLimiter(l.rate, l.burst)}
		l.srcs[host] = s
	}
	s.seen = now
	return s.lim.AllowN(now, 1)
}
