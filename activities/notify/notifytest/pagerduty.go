package notifytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// pagerDutyAccept is the only Accept header the REST API v2 fake serves.
const pagerDutyAccept = "application/vnd.pagerduty+json;version=2"

// PagerDuty is a fake of the PagerDuty REST API v2 incident endpoints:
// POST /incidents, GET /incidents (incident_key, statuses[], service_ids[],
// date_range filters) and PUT /incidents/{id}.
type PagerDuty struct {
	// APIKey is the only key accepted ("Authorization: Token token=<key>").
	APIKey string
	// FromEmail is the only requester accepted in the From header of writes.
	FromEmail string
	// ServiceID is the only service incidents can be opened on.
	ServiceID string

	server *httptest.Server

	mu         sync.Mutex
	incidents  []*Incident
	requests   []Request
	rejections []string
	failures   []failure
}

// Incident is an incident as the fake keeps it.
type Incident struct {
	ID          string
	Title       string
	ServiceID   string
	IncidentKey string
	// Urgency is as requested: "" means the service default.
	Urgency string
	// Status is "triggered", "acknowledged" or "resolved".
	Status     string
	Details    string
	Resolution string
}

// Request is one request the fake received, whatever its outcome.
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
}

// NewPagerDuty starts a fake PagerDuty REST API, closed when the test ends.
func NewPagerDuty(t testing.TB) *PagerDuty {
	t.Helper()
	p := &PagerDuty{
		APIKey:    "u+" + randomHex(10),
		FromEmail: "oncall@example.com",
		ServiceID: "PSVC" + strings.ToUpper(randomHex(2)),
	}
	p.server = httptest.NewServer(http.HandlerFunc(p.handle))
	t.Cleanup(p.server.Close)
	return p
}

// URL is the API base URL for notify.PagerDutyChannel.BaseURL.
func (p *PagerDuty) URL() string { return p.server.URL }

// Incidents returns copies of all incidents in creation order.
func (p *PagerDuty) Incidents() []Incident {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Incident, len(p.incidents))
	for i, inc := range p.incidents {
		out[i] = *inc
	}
	return out
}

// Incident returns the most recent incident with key.
func (p *PagerDuty) Incident(key string) (Incident, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.incidents) - 1; i >= 0; i-- {
		if p.incidents[i].IncidentKey == key {
			return *p.incidents[i], true
		}
	}
	return Incident{}, false
}

// Resolve resolves the open incident with key as a person in the PagerDuty
// UI would; it reports whether there was one.
func (p *PagerDuty) Resolve(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if inc := p.openLocked(key); inc != nil {
		inc.Status = "resolved"
		return true
	}
	return false
}

// Requests returns every request received, in arrival order.
func (p *PagerDuty) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// Rejections returns why refused requests were refused.
func (p *PagerDuty) Rejections() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.rejections...)
}

// FailNext answers the next request with status and a PagerDuty error body.
func (p *PagerDuty) FailNext(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures = append(p.failures, failure{status: status})
}

func (p *PagerDuty) openLocked(key string) *Incident {
	for _, inc := range p.incidents {
		if inc.IncidentKey == key && inc.Status != "resolved" {
			return inc
		}
	}
	return nil
}

// pdError answers like the REST API does:
// {"error":{"message":…,"code":…,"errors":[…]}}.
func (p *PagerDuty) pdError(w http.ResponseWriter, status, code int, message string, details ...string) {
	p.mu.Lock()
	p.rejections = append(p.rejections, fmt.Sprintf("%d %s %v", status, message, details))
	p.mu.Unlock()
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": message, "code": code, "errors": details}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (p *PagerDuty) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "unreadable body")
		return
	}
	p.mu.Lock()
	p.requests = append(p.requests, Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body})
	if len(p.failures) > 0 {
		f := p.failures[0]
		p.failures = p.failures[1:]
		p.mu.Unlock()
		p.pdError(w, f.status, 0, "canned failure")
		return
	}
	p.mu.Unlock()

	if r.Header.Get("Authorization") != "Token token="+p.APIKey {
		p.pdError(w, http.StatusUnauthorized, 2006, "Unauthorized")
		return
	}
	if r.Header.Get("Accept") != pagerDutyAccept {
		p.pdError(w, http.StatusNotAcceptable, 2001, "Invalid Input Provided", "Accept must be "+pagerDutyAccept)
		return
	}
	write := r.Method == http.MethodPost || r.Method == http.MethodPut
	if write {
		if r.Header.Get("From") != p.FromEmail {
			p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Requester User Not Found")
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			p.pdError(w, http.StatusUnsupportedMediaType, 2001, "Invalid Input Provided", "Content-Type must be application/json")
			return
		}
	}
	switch {
	case r.URL.Path == "/incidents" && r.Method == http.MethodPost:
		p.create(w, body)
	case r.URL.Path == "/incidents" && r.Method == http.MethodGet:
		p.list(w, r)
	case strings.HasPrefix(r.URL.Path, "/incidents/") && r.Method == http.MethodPut:
		p.update(w, strings.TrimPrefix(r.URL.Path, "/incidents/"), body)
	default:
		p.pdError(w, http.StatusNotFound, 2100, "Not Found")
	}
}

// decodeStrict decodes exactly one JSON value with no unknown members.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

type pdRef struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

func (p *PagerDuty) create(w http.ResponseWriter, body []byte) {
	var req struct {
		Incident *struct {
			Type        string `json:"type"`
			Title       string `json:"title"`
			Service     *pdRef `json:"service"`
			Urgency     string `json:"urgency"`
			IncidentKey string `json:"incident_key"`
			Body        *struct {
				Type    string `json:"type"`
				Details string `json:"details"`
			} `json:"body"`
		} `json:"incident"`
	}
	if err := decodeStrict(body, &req); err != nil {
		p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", err.Error())
		return
	}
	in := req.Incident
	switch {
	case in == nil:
		p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "incident is required")
	case in.Type != "incident":
		p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "incident type must be incident")
	case in.Title == "" || utf8.RuneCountInString(in.Title) > 1024:
		p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "title must be 1-1024 characters")
	case in.Service == nil || in.Service.Type != "service_reference":
		p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "service must be a service_reference")
	case in.Service.ID != p.ServiceID:
		p.pdError(w, http.StatusNotFound, 2100, "Not Found", "service not found")
	case in.Urgency != "" && in.Urgency != "high" && in.Urgency != "low":
		p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "urgency must be high or low")
	case in.Body != nil && (in.Body.Type != "incident_body" || in.Body.Details == ""):
		p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "body must be an incident_body with details")
	default:
		p.mu.Lock()
		if in.IncidentKey != "" && p.openLocked(in.IncidentKey) != nil {
			p.mu.Unlock()
			p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Open incident with matching dedup key already exists on this service")
			return
		}
		inc := &Incident{
			ID:          fmt.Sprintf("Q%07d", len(p.incidents)+1),
			Title:       in.Title,
			ServiceID:   in.Service.ID,
			IncidentKey: in.IncidentKey,
			Urgency:     in.Urgency,
			Status:      "triggered",
		}
		if in.Body != nil {
			inc.Details = in.Body.Details
		}
		p.incidents = append(p.incidents, inc)
		out := incidentJSON(inc)
		p.mu.Unlock()
		writeJSON(w, http.StatusCreated, map[string]any{"incident": out})
	}
}

func (p *PagerDuty) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if dr := q.Get("date_range"); dr != "" && dr != "all" {
		p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "date_range must be all")
		return
	}
	statuses := map[string]bool{}
	for _, s := range q["statuses[]"] {
		if s != "triggered" && s != "acknowledged" && s != "resolved" {
			p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "unknown status "+s)
			return
		}
		statuses[s] = true
	}
	services := map[string]bool{}
	for _, s := range q["service_ids[]"] {
		services[s] = true
	}
	key := q.Get("incident_key")
	p.mu.Lock()
	out := []map[string]any{}
	for _, inc := range p.incidents {
		if (key == "" || inc.IncidentKey == key) &&
			(len(statuses) == 0 || statuses[inc.Status]) &&
			(len(services) == 0 || services[inc.ServiceID]) {
			out = append(out, incidentJSON(inc))
		}
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"incidents": out, "limit": 25, "offset": 0, "more": false, "total": nil})
}

func (p *PagerDuty) update(w http.ResponseWriter, id string, body []byte) {
	var req struct {
		Incident *struct {
			Type       string `json:"type"`
			Status     string `json:"status"`
			Resolution string `json:"resolution"`
		} `json:"incident"`
	}
	if err := decodeStrict(body, &req); err != nil {
		p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", err.Error())
		return
	}
	in := req.Incident
	switch {
	case in == nil:
		p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "incident is required")
		return
	case in.Type != "incident_reference" && in.Type != "incident":
		p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "incident type must be incident_reference")
		return
	case in.Status != "resolved" && in.Status != "acknowledged":
		p.pdError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "status must be acknowledged or resolved")
		return
	}
	p.mu.Lock()
	var inc *Incident
	for _, c := range p.incidents {
		if c.ID == id {
			inc = c
		}
	}
	if inc == nil {
		p.mu.Unlock()
		p.pdError(w, http.StatusNotFound, 2100, "Not Found", "incident not found")
		return
	}
	inc.Status = in.Status
	if in.Status == "resolved" {
		inc.Resolution = in.Resolution
	}
	out := incidentJSON(inc)
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"incident": out})
}

func incidentJSON(inc *Incident) map[string]any {
	urgency := inc.Urgency
	if urgency == "" {
		urgency = "high" // a new service's default urgency
	}
	return map[string]any{
		"id":           inc.ID,
		"type":         "incident",
		"title":        inc.Title,
		"status":       inc.Status,
		"incident_key": inc.IncidentKey,
		"urgency":      urgency,
		"service":      map[string]string{"id": inc.ServiceID, "type": "service_reference"},
		"body":         map[string]string{"type": "incident_body", "details": inc.Details},
	}
}
