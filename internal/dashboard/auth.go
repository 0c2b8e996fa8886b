package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// Auth is what lets a person act (pause, cancel, retry, redrive): a token
// or users with passwords. The zero value allows no action: the dashboard
// is read-only.
type Auth struct {
	// Token is a shared secret, typed into the sign-in form or sent as
	// "Authorization: Bearer <token>" by scripts.
	Token string
	// Users maps user names to passwords or bcrypt hashes ("$2a$..."),
	// typed into the sign-in form.
	Users map[string]string
}

// Enabled reports whether any credential is configured.
func (a Auth) Enabled() bool { return a.Token != "" || len(a.Users) > 0 }

// Secrets lists the credential values, for tests and log redaction.
func (a Auth) Secrets() []string {
	out := []string{a.Token}
	for _, p := range a.Users {
		out = append(out, p)
	}
	return out
}

// LoadAuth reads a token file (its first line) or a basic-auth file (lines
// "user:password" or "user:$2a$..." bcrypt hashes; blank lines and lines
// starting with '#' are skipped). Neither: a read-only dashboard.
func LoadAuth(tokenFile, basicFile string) (Auth, error) {
	var a Auth
	if tokenFile != "" && basicFile != "" {
		return a, errors.New("give a token file or a basic-auth file, not both")
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return a, fmt.Errorf("token file: %w", err)
		}
		a.Token = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
		if len(a.Token) < 16 {
			return a, fmt.Errorf("token file %s: the token must be at least 16 characters", tokenFile)
		}
	}
	if basicFile != "" {
		b, err := os.ReadFile(basicFile)
		if err != nil {
			return a, fmt.Errorf("basic-auth file: %w", err)
		}
		a.Users = map[string]string{}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			user, pw, ok := strings.Cut(line, ":")
			if !ok || user == "" || pw == "" {
				return a, fmt.Errorf("basic-auth file %s line %d: want user:password", basicFile, i+1)
			}
			a.Users[user] = pw
		}
		if len(a.Users) == 0 {
			return a, fmt.Errorf("basic-auth file %s: no users", basicFile)
		}
	}
	return a, nil
}

// check reports the user a credential signs in (the token's user is
// "token").
func (a Auth) check(user, secret string) (string, bool) {
	if a.Token != "" {
		if subtle.ConstantTimeCompare([]byte(secret), []byte(a.Token)) == 1 {
			return "token", true
		}
		return "", false
	}
	want, ok := a.Users[user]
	if !ok {
		// The same work as a wrong password, so timing tells no names.
		want = "\x00" + randomToken()
		for _, p := range a.Users {
			if strings.HasPrefix(p, "$2") {
				want = dummyHash()
			}
		}
	}
	var good bool
	if strings.HasPrefix(want, "$2") {
		good = bcrypt.CompareHashAndPassword([]byte(want), []byte(secret)) == nil
	} else {
		good = subtle.ConstantTimeCompare([]byte(secret), []byte(want)) == 1
	}
	return user, ok && good
}

// dummyHash is a bcrypt hash compared against for unknown users.
var dummyHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(randomToken()), bcrypt.DefaultCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

// session is one signed-in browser.
type session struct {
	user    string
	csrf    string
	expires time.Time
	flash   string
}

const (
	sessionCookie = "reelq_dash"
	loginCookie   = "reelq_dash_login"
	sessionTTL    = 12 * time.Hour
)

// sessions are kept in memory: a restart signs everyone out.
type sessions struct {
	mu sync.Mutex
	m  map[string]*session
	// attempts limits sign-in attempts (all clients together): 5 at
	// once, then one a second.
	attempts *rate.Limiter
}

func newSessions() *sessions {
	return &sessions{m: map[string]*session{}, attempts: rate.NewLimiter(rate.Every(time.Second), 5)}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create(user string) (string, *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for id, ss := range s.m {
		if now.After(ss.expires) {
			delete(s.m, id)
		}
	}
	id := randomToken()
	ss := &session{user: user, csrf: randomToken(), expires: now.Add(sessionTTL)}
	s.m[id] = ss
	return id, ss
}

func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[c.Value]
	if ss == nil || time.Now().After(ss.expires) {
		delete(s.m, c.Value)
		return nil
	}
	return ss
}

func (s *sessions) drop(r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		delete(s.m, c.Value)
		s.mu.Unlock()
	}
}

func (s *sessions) setFlash(ss *session, msg string) {
	s.mu.Lock()
	ss.flash = msg
	s.mu.Unlock()
}

func (s *sessions) takeFlash(ss *session) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := ss.flash
	ss.flash = ""
	return f
}

// viewer is who makes a request: signed in (a session, or a bearer token)
// or not.
type viewer struct {
	user   string
	sess   *session
	bearer bool
}

func (v viewer) signedIn() bool { return v.user != "" }

// viewerOf identifies r's sender. A bearer token counts only with a token
// configured; a basic-auth header is never accepted (a browser resends
// cached basic credentials on its own, which would let another site's
// form act), users sign in through the form.
func (s *Server) viewerOf(r *http.Request) viewer {
	if ss := s.sessions.get(r); ss != nil {
		return viewer{user: ss.user, sess: ss}
	}
	if s.cfg.Auth.Token != "" {
		if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			if _, good := s.cfg.Auth.check("", strings.TrimSpace(h)); good {
				return viewer{user: "token", bearer: true}
			}
		}
	}
	return viewer{}
}

// sameOrigin rejects a POST another site's page sent: the browser's
// Sec-Fetch-Site and Origin headers, when present, must say it came from
// this origin.
func sameOrigin(r *http.Request) bool {
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" && sfs != "same-origin" && sfs != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// hostAllowed guards against DNS rebinding: a dashboard on loopback
// answers only requests addressed to a loopback name, so a web page whose
// name was re-pointed at 127.0.0.1 cannot read it.
func (s *Server) hostAllowed(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	h = strings.Trim(strings.ToLower(h), "[]")
	if len(s.cfg.AllowedHosts) > 0 {
		for _, a := range s.cfg.AllowedHosts {
			if strings.EqualFold(a, h) {
				return true
			}
		}
		return false
	}
	if !isLoopbackHost(s.cfg.ListenHost) {
		return true
	}
	return isLoopbackHost(h)
}

func isLoopbackHost(h string) bool {
	h = strings.Trim(strings.ToLower(h), "[]")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
