package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/reelq/reelq"
)

// actionFunc does one operator action and says what it did.
type actionFunc func(ctx context.Context, r *http.Request, v viewer) (string, error)

// action guards an action: credentials configured, a signed-in viewer,
// and for a browser session the same origin and the session's CSRF token.
// The outcome goes back as a flash message on the page the form was on
// (or as plain text to a bearer-token script).
func (s *Server) action(name string, f actionFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.cfg.Auth.Enabled() {
			http.Error(w, "this dashboard is read-only: start it with a token or basic-auth file to act", http.StatusForbidden)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		v := s.viewerOf(r)
		if !v.signedIn() {
			http.Error(w, "sign in to act", http.StatusUnauthorized)
			return
		}
		if !v.bearer {
			if !sameOrigin(r) || !constantEq(r.PostFormValue("csrf"), v.sess.csrf) {
				http.Error(w, "this form is stale or came from another site: reload the page and try again", http.StatusForbidden)
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
		defer cancel()
		msg, err := f(ctx, r, v)
		attrs := []any{"action", name, "user", v.user, "target", target(r)}
		if err != nil {
			s.log.Warn("dashboard: action failed", append(attrs, "err", err)...)
			msg = name + " failed: " + err.Error()
		} else {
			s.log.Info("dashboard: action", append(attrs, "outcome", msg)...)
		}
		if v.bearer {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if err != nil {
				w.WriteHeader(statusOf(err))
			}
			_, _ = fmt.Fprintln(w, msg)
			return
		}
		s.sessions.setFlash(v.sess, msg)
		http.Redirect(w, r, localPath(r.PostFormValue("back")), http.StatusSeeOther)
	}
}

func target(r *http.Request) string {
	for _, k := range []string{"provider", "batch", "id", "seq"} {
		if v := r.PathValue(k); v != "" {
			return k + " " + v
		}
	}
	return ""
}

// errUnknownProvider is an action on a provider reelq does not have.
var errUnknownProvider = errors.New("unknown provider")

// statusOf is the HTTP status of an action's error: a bad name 400, a
// name nothing has 404, an action the job's state does not allow 409;
// only the dashboard's own failures (NATS unreachable, say) are 500.
func statusOf(err error) int {
	switch {
	case errors.Is(err, reelq.ErrInvalidJob):
		return http.StatusBadRequest
	case errors.Is(err, reelq.ErrNotFound), errors.Is(err, errUnknownProvider):
		return http.StatusNotFound
	case errors.Is(err, reelq.ErrSucceeded), errors.Is(err, reelq.ErrNotFinished):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// provider is the action's provider, or errUnknownProvider.
func provider(r *http.Request) (string, error) {
	p := r.PathValue("provider")
	if !reelq.KnownProvider(p) {
		return p, fmt.Errorf("%w %q (one of %s)", errUnknownProvider, p, strings.Join(reelq.Providers, ", "))
	}
	return p, nil
}

// localPath keeps a redirect on this site: a path of its own, or "/".
func localPath(p string) string {
	u, err := url.Parse(p)
	if err != nil || p == "" || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return u.RequestURI()
}

func (s *Server) pause(ctx context.Context, r *http.Request, v viewer) (string, error) {
	p, err := provider(r)
	if err != nil {
		return "", err
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		reason = "paused from the dashboard"
	}
	if len(reason) > 200 {
		reason = reason[:200]
	}
	changed, err := s.i.Pause(ctx, p, reason+" ("+v.user+")")
	if err != nil {
		return "", err
	}
	if !changed {
		return p + " was already paused", nil
	}
	return p + " paused: its jobs wait in the queue until resumed (running ones finish)", nil
}

func (s *Server) resume(ctx context.Context, r *http.Request, _ viewer) (string, error) {
	p, err := provider(r)
	if err != nil {
		return "", err
	}
	changed, err := s.i.Resume(ctx, p)
	if err != nil {
		return "", err
	}
	if !changed {
		return p + " was not paused", nil
	}
	return p + " resumed", nil
}

func (s *Server) cancelBatch(ctx context.Context, r *http.Request, v viewer) (string, error) {
	b := r.PathValue("batch")
	n, billed := 0, 0
	for o, err := range s.c.CancelBatch(ctx, b, "cancelled from the dashboard ("+v.user+")") {
		switch {
		case err != nil && o.ID == "":
			return "", fmt.Errorf("%d cancels requested before: %w", n, err)
		case err == nil && o.Status == reelq.CancelRequested:
			n++
			if o.StillBilled {
				billed++
			}
		}
	}
	msg := fmt.Sprintf("cancel requested for %d unfinished jobs of %s", n, b)
	if billed > 0 {
		msg += fmt.Sprintf(" (%d already running at a provider without a cancel API: the provider still bills them)", billed)
	}
	return msg, nil
}

func (s *Server) retryBatch(ctx context.Context, r *http.Request, _ viewer) (string, error) {
	b := r.PathValue("batch")
	n := 0
	for o, err := range s.c.RetryBatch(ctx, b, []string{reelq.StatusFailed}) {
		switch {
		case err != nil && o.ID == "":
			return "", fmt.Errorf("%d retried before: %w", n, err)
		case err == nil:
			n++
		}
	}
	return fmt.Sprintf("%d failed jobs of %s retried", n, b), nil
}

func (s *Server) cancelJob(ctx context.Context, r *http.Request, _ viewer) (string, error) {
	id := r.PathValue("id")
	o, err := s.c.Cancel(ctx, id)
	if err != nil {
		return "", err
	}
	switch {
	case o.Status == reelq.CancelAlreadyFinished:
		return id + " had already finished", nil
	case o.StillBilled:
		return "cancel requested for " + id + "; it is running at a provider without a cancel API, which still bills it", nil
	}
	return "cancel requested for " + id, nil
}

func (s *Server) retryJob(ctx context.Context, r *http.Request, _ viewer) (string, error) {
	id := r.PathValue("id")
	run, err := s.c.Retry(ctx, id)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s runs again as run %d", id, run), nil
}

func (s *Server) redrive(ctx context.Context, r *http.Request, _ viewer) (string, error) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		return "", fmt.Errorf("%w: dead letter %q: want its DLQ sequence number", reelq.ErrInvalidJob, r.PathValue("seq"))
	}
	d, err := s.r.deadLetterAt(ctx, seq)
	if err != nil {
		return "", err
	}
	out, err := s.i.Redrive(ctx, d, false)
	if err != nil {
		return "", err
	}
	s.hub.notify(func(k viewKey) bool { return k.kind == viewDLQ || k.kind == viewOverview })
	return out.String(), nil
}

// loginForm shows the sign-in form, with a CSRF token of its own in a
// cookie (double submit) since there is no session yet.
func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Auth.Enabled() {
		http.Error(w, "this dashboard is read-only: it has no credentials to sign in with", http.StatusNotFound)
		return
	}
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/login", HttpOnly: true, Secure: s.cfg.Secure,
		SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	p := s.newPage(r, s.viewerOf(r))
	p.Title, p.Nav, p.CSRF = "Sign in", "login", tok
	p.Back = localPath(r.URL.Query().Get("back"))
	p.Data = loginData{Users: len(s.cfg.Auth.Users) > 0, Error: r.URL.Query().Get("failed") != ""}
	s.render(w, http.StatusOK, "login", p)
}

type loginData struct {
	Users bool
	Error bool
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Auth.Enabled() {
		http.Error(w, "this dashboard is read-only", http.StatusNotFound)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	c, err := r.Cookie(loginCookie)
	if err != nil || !sameOrigin(r) || !constantEq(r.PostFormValue("csrf"), c.Value) {
		http.Error(w, "this form is stale or came from another site: reload the sign-in page", http.StatusForbidden)
		return
	}
	// Every attempt takes its token before the (slow, with bcrypt) check,
	// in one step: requests sent at once cannot all pass a look at the
	// tokens left and then be checked.
	if !s.sessions.attempts.Allow() {
		http.Error(w, "too many sign-in attempts: wait a few seconds", http.StatusTooManyRequests)
		return
	}
	back := localPath(r.PostFormValue("back"))
	user, ok := s.cfg.Auth.check(r.PostFormValue("user"), r.PostFormValue("secret"))
	if !ok {
		s.log.Warn("dashboard: sign-in failed", "remote", r.RemoteAddr)
		http.Redirect(w, r, "/login?failed=1&back="+url.QueryEscape(back), http.StatusSeeOther)
		return
	}
	id, _ := s.sessions.create(user)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: s.cfg.Secure,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL / time.Second)})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/login", MaxAge: -1})
	s.log.Info("dashboard: signed in", "user", user, "remote", r.RemoteAddr)
	http.Redirect(w, r, back, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	v := s.viewerOf(r)
	if v.sess == nil || !sameOrigin(r) || !constantEq(r.PostFormValue("csrf"), v.sess.csrf) {
		http.Error(w, "this form is stale: reload the page", http.StatusForbidden)
		return
	}
	s.sessions.drop(r)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
