package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures the dashboard.
type Config struct {
	// API is the REST API's handler, which every page calls in-process with
	// the browser's session cookie. Required.
	API http.Handler
	// Logger receives failures of pages; default discards.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// LivePoll is how often an open approvals queue asks the API again
	// without being told of a change: changes themselves wake it at once
	// (ApprovalsChanged, fed by PostgreSQL notifications), so this only
	// bounds how long a revoked session keeps a queue open. Default 5 s.
	LivePoll time.Duration
	// SecureCookies marks the dashboard's own cookie (the chosen org)
	// Secure, as the API does its session cookie: everywhere but on
	// http://localhost.
	SecureCookies bool
	// LiveMax ends a live stream after this long; the browser reconnects at
	// once, which re-checks the session. Default 10 min.
	LiveMax time.Duration
	// PublicURL is the API's externally visible base URL, shown in the
	// Quickstart and written into generated scripts. Default
	// http://localhost:8080.
	PublicURL string
	// SlackInstall says the server has a Slack app (SLACK_CLIENT_ID,
	// SLACK_CLIENT_SECRET), so Settings offers "Add to Slack".
	SlackInstall bool
	// OpenSignUp says anyone may sign up with an e-mail code (a team of
	// their own), so the sign-in page tells a new person so.
	OpenSignUp bool
	// DevMailbox is the path where a development server shows the mail it
	// "sends" ("" on a real one): the code page points there, since no code
	// reaches an inbox.
	DevMailbox string
}

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	if c.API == nil {
		return errors.New("web: API handler is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.LivePoll == 0 {
		c.LivePoll = 5 * time.Second
	}
	if c.LiveMax == 0 {
		c.LiveMax = 10 * time.Minute
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://localhost:8080"
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.LivePoll < 50*time.Millisecond || c.LiveMax < c.LivePoll {
		return errors.New("web: LivePoll must be ≥ 50 ms and LiveMax ≥ LivePoll")
	}
	return nil
}

// Dashboard serves the pages.
type Dashboard struct {
	cfg   Config
	log   *slog.Logger
	pages map[string]*template.Template
	// assetVersion is a digest of the static files, appended to their URLs
	// so a new binary's browsers fetch them afresh.
	assetVersion string
	static       http.Handler
	stopOnce     sync.Once
	stopping     chan struct{}
	hub          hub
}

// csp is every page's Content-Security-Policy: scripts and styles only
// from our own files, no inline code, Trusted Types for the one place a
// script inserts HTML (the live queue), no framing, forms only to us.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types oakallow"

// New builds the dashboard.
func New(cfg Config) (*Dashboard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Dashboard{cfg: cfg, log: cfg.Logger, pages: map[string]*template.Template{}, stopping: make(chan struct{})}
	h := sha256.New()
	err := fs.WalkDir(staticFS, "static", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		raw, err := staticFS.ReadFile(path)
		h.Write([]byte(path))
		h.Write(raw)
		return err
	})
	if err != nil {
		return nil, err
	}
	d.assetVersion = hex.EncodeToString(h.Sum(nil))[:12]
	sub, _ := fs.Sub(staticFS, "static")
	d.static = http.StripPrefix("/static/", http.FileServerFS(sub))
	funcs := template.FuncMap{
		"static":   func(name string) string { return "/static/" + name + "?v=" + d.assetVersion },
		"timeLeft": timeLeft,
		"when":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"label":    label,
	}
	entries, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := strings.TrimSuffix(strings.TrimPrefix(e, "templates/"), ".html")
		if name == "layout" || strings.HasPrefix(name, "_") {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/_*.html", e)
		if err != nil {
			return nil, err
		}
		d.pages[name] = t
	}
	return d, nil
}

// Register mounts the dashboard's routes on mux.
func (d *Dashboard) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", d.home)
	mux.HandleFunc("GET /sign-in", d.signInPage)
	mux.HandleFunc("POST /sign-in", d.signInStart)
	mux.HandleFunc("POST /sign-in/code", d.signInCode)
	mux.HandleFunc("POST /sign-out", d.signOut)
	mux.HandleFunc("GET /enroll", d.enrollPage)
	mux.HandleFunc("GET /approvals", d.approvalsPage)
	mux.HandleFunc("GET /approvals/events", d.approvalsEvents)
	mux.HandleFunc("GET /approvals/{ref}", d.approvalPage)
	mux.HandleFunc("GET /static/", d.serveStatic)
	d.registerConsent(mux)
	d.registerManage(mux)
	d.registerAuth(mux)
}

// Stop ends the live streams, so a graceful shutdown does not wait for them.
func (d *Dashboard) Stop() { d.stopOnce.Do(func() { close(d.stopping) }) }

func (d *Dashboard) serveStatic(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=86400")
	d.static.ServeHTTP(w, r)
}

// pageHeaders are the headers of every page: the CSP, no framing (also for
// browsers without CSP 3), no referrer leaving the site, and no caching —
// pages show reasoning and parameters.
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// view is what every page template receives.
type view struct {
	Title string
	// Nav is the current section ("approvals", …) for aria-current.
	Nav string
	Me  *me
	// Error is a problem to show above the page's content.
	Error string
	Data  any
	// Org is the org the pages act in (nil when the person must choose
	// one), shown in the header.
	Org *org
}

// render writes a page.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, page string, v view) {
	t, ok := d.pages[page]
	if !ok {
		panic("web: no page " + page)
	}
	if v.Me != nil && v.Org == nil {
		v.Org = v.Me.currentOrg(selectedOrg(r))
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		d.log.ErrorContext(r.Context(), "render page", "page", page, "err", err)
		d.fail(w, r)
		return
	}
	pageHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail answers a page that could not be built with a plain 500; the cause
// was logged by the caller.
func (d *Dashboard) fail(w http.ResponseWriter, _ *http.Request) {
	pageHeaders(w)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte("Something went wrong on our side. Try again in a moment.\n"))
}

// labels are the words people read for the API's enum values.
var labels = map[string]string{
	"email_code": "an e-mail code", "passkey": "a passkey", "recovery_code": "a recovery code",
	"browser": "Browser", "app": "App",
}

// label is an API enum value in words (the value itself when it has none).
func label(v string) string {
	if l, ok := labels[v]; ok {
		return l
	}
	return v
}

// timeLeft is a short human duration until t ("expired" once past).
func timeLeft(t, now time.Time) string {
	left := t.Sub(now)
	switch {
	case left <= 0:
		return "expired"
	case left < time.Minute:
		return "under a minute left"
	case left < time.Hour:
		return plural(int(left/time.Minute), "minute") + " left"
	case left < 48*time.Hour:
		return plural(int(left/time.Hour), "hour") + " " + plural(int(left%time.Hour/time.Minute), "minute") + " left"
	default:
		return plural(int(left/(24*time.Hour)), "day") + " left"
	}
}

func plural(n int, unit string) string {
	s := strconv.Itoa(n) + " " + unit
	if n != 1 {
		s += "s"
	}
	return s
}
