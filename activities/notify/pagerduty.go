package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// PagerDuty REST API v2 constants.
const (
	// DefaultPagerDutyURL is the REST API base.
	DefaultPagerDutyURL = "https://api.pagerduty.com"
	// PagerDutyAccept selects version 2 of the REST API.
	PagerDutyAccept = "application/vnd.pagerduty+json;version=2"
	// pagerDutyTitleMaxRunes keeps incident titles short enough for SMS and
	// phone notifications.
	pagerDutyTitleMaxRunes = 255
)

// PagerDutyChannel is a PagerDuty notification channel using the REST API
// v2 Incidents endpoints.
type PagerDutyChannel struct {
	// APIKey is a General Access REST API key, sent as
	// "Authorization: Token token=<key>". Stored encrypted; never returned.
	APIKey string
	// FromEmail is the PagerDuty user the incidents are created and resolved
	// as; the API requires it in the From header of writes made with an
	// account-level key.
	FromEmail string
	// ServiceID is the PagerDuty service the incidents are opened on.
	ServiceID string
	// BaseURL is the REST API base. Default DefaultPagerDutyURL (use
	// https://api.eu.pagerduty.com for EU accounts); tests point it at a fake.
	BaseURL string
}

// Validate reports whether the channel configuration is usable. Messages
// never include the key.
func (c PagerDutyChannel) Validate() error {
	if c.APIKey == "" || len(c.APIKey) > 256 || strings.ContainsFunc(c.APIKey, isNotToken) {
		return errors.New("pagerduty: API key must be 1-256 printable characters without spaces")
	}
	at := strings.IndexByte(c.FromEmail, '@')
	if at < 1 || at == len(c.FromEmail)-1 || len(c.FromEmail) > 254 || strings.ContainsFunc(c.FromEmail, isNotToken) {
		return errors.New("pagerduty: from e-mail must be an e-mail address")
	}
	if c.ServiceID == "" || len(c.ServiceID) > 64 || !validReference(c.ServiceID) {
		return errors.New("pagerduty: service id must be 1-64 letters or digits")
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || u.Host == "" || u.RawQuery != "" || u.User != nil {
			return errors.New("pagerduty: base URL must be an absolute URL without query or credentials")
		}
	}
	return nil
}

// isNotToken reports runes that must not appear in a header value we build.
func isNotToken(r rune) bool { return r <= ' ' || r >= 0x7f }

func (c PagerDutyChannel) base() string {
	if c.BaseURL == "" {
		return DefaultPagerDutyURL
	}
	return strings.TrimRight(c.BaseURL, "/")
}

// PagerDutyIncidentKey is the dedup key of the incident opened when an
// approval is requested: one per approval.
func PagerDutyIncidentKey(ref string) string { return "oakallow-" + ref }

// PagerDutyExpiredIncidentKey is the dedup key of the high-urgency incident
// opened when an approval expires; distinct so that it is a new incident.
func PagerDutyExpiredIncidentKey(ref string) string { return "oakallow-" + ref + "-expired" }

// SendPagerDuty applies the alert to PagerDuty (SPEC §4):
//
//   - approval.created: open an incident at the service's default urgency,
//     incident_key "oakallow-<REF>". If one is already open (a retry after a
//     lost answer), that counts as success.
//   - approval.escalated: nothing to do — the incident stays open until the
//     decision. No request is made.
//   - approval.decided: find the open incident by its incident_key and
//     resolve it, with the decision in the resolution. Nothing open (already
//     resolved by a previous attempt or by a person) counts as success.
//   - approval.expired: open a new incident at high urgency, incident_key
//     "oakallow-<REF>-expired".
func (n *Notifier) SendPagerDuty(ctx context.Context, ch PagerDutyChannel, a Alert) Attempt {
	start := time.Now()
	if err := ch.Validate(); err != nil {
		return invalidAttempt(err)
	}
	if err := a.Validate(); err != nil {
		return invalidAttempt(err)
	}
	s := a.sanitize(n.scrub)
	var att Attempt
	switch s.Type {
	case EventApprovalCreated:
		att = n.pdOpen(ctx, ch, s, PagerDutyIncidentKey(s.Reference), "")
	case EventApprovalExpired:
		att = n.pdOpen(ctx, ch, s, PagerDutyExpiredIncidentKey(s.Reference), "high")
	case EventApprovalDecided:
		att = n.pdResolve(ctx, ch, s)
	case EventApprovalEscalated:
		att = Attempt{Detail: "escalation: the open incident stays open until the decision"}
	default:
		// Discovered tools and low credit page nobody: deliveries are not
		// planned for PagerDuty channels, and one that arrives sends nothing.
		att = Attempt{Detail: s.Type + ": PagerDuty channels page for approvals only"}
	}
	att.Latency = time.Since(start)
	return att
}

// pdReference is a PagerDuty reference object.
type pdReference struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

// pdIncidentBody is the incident body; the API takes string details only.
type pdIncidentBody struct {
	Type    string `json:"type"`
	Details string `json:"details"`
}

// pdCreateIncident is the "incident" object of POST /incidents.
type pdCreateIncident struct {
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	Service     pdReference     `json:"service"`
	Urgency     string          `json:"urgency,omitempty"`
	IncidentKey string          `json:"incident_key"`
	Body        *pdIncidentBody `json:"body,omitempty"`
}

// pdUpdateIncident is the "incident" object of PUT /incidents/{id}.
type pdUpdateIncident struct {
	Type       string `json:"type"`
	Status     string `json:"status"`
	Resolution string `json:"resolution,omitempty"`
}

// pdIncident is the part of an incident we read back.
type pdIncident struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	IncidentKey string `json:"incident_key"`
}

// pdOpen creates an incident, treating "already open with this key" as
// success.
func (n *Notifier) pdOpen(ctx context.Context, ch PagerDutyChannel, s Alert, key, urgency string) Attempt {
	var details strings.Builder
	fmt.Fprintf(&details, "Tool: %s\nReference: %s\n", s.ToolName, s.Reference)
	if s.Reason != "" {
		fmt.Fprintf(&details, "Reason: %s\n", s.Reason)
	}
	if s.Type == EventApprovalExpired {
		details.WriteString("The approval expired without a decision; the tool must not run.\n")
	}
	if s.DashboardURL != "" {
		fmt.Fprintf(&details, "Review: %s\n", s.DashboardURL)
	}
	payload := map[string]pdCreateIncident{"incident": {
		Type:        "incident",
		Title:       cleanText("oakallow: "+alertTitle(s)+" ("+s.Reference+")", pagerDutyTitleMaxRunes),
		Service:     pdReference{ID: ch.ServiceID, Type: "service_reference"},
		Urgency:     urgency,
		IncidentKey: key,
		Body:        &pdIncidentBody{Type: "incident_body", Details: details.String()},
	}}
	r, err := n.pdDo(ctx, ch, http.MethodPost, "/incidents", payload, false)
	att := attemptFor(r, err, 0)
	if err != nil || r.status != http.StatusBadRequest {
		return att
	}
	// PagerDuty refuses a second open incident with the same key on a
	// service with 400. If that is why, the earlier attempt succeeded.
	inc, found, lookup := n.pdFindOpen(ctx, ch, key)
	if !lookup.OK() {
		if lookup.Retryable {
			return lookup
		}
		return att
	}
	if !found {
		return att
	}
	n.logger.InfoContext(ctx, "pagerduty incident already open", "reference", s.Reference, "incident_id", inc.ID)
	return Attempt{StatusCode: lookup.StatusCode, Detail: "incident already open (deduplicated)"}
}

// pdResolve resolves the open incident for the approval, if any.
func (n *Notifier) pdResolve(ctx context.Context, ch PagerDutyChannel, s Alert) Attempt {
	inc, found, lookup := n.pdFindOpen(ctx, ch, PagerDutyIncidentKey(s.Reference))
	if !lookup.OK() {
		return lookup
	}
	if !found {
		n.logger.InfoContext(ctx, "pagerduty: no open incident to resolve", "reference", s.Reference)
		return Attempt{StatusCode: lookup.StatusCode, Detail: "no open incident to resolve"}
	}
	verb := "denied"
	if s.Decision == DecisionApproved {
		verb = "approved"
	}
	resolution := "oakallow approval " + s.Reference + " " + verb
	if s.Decider != "" {
		resolution += " by " + s.Decider
	}
	if s.Note != "" {
		resolution += ". Note: " + s.Note
	}
	payload := map[string]pdUpdateIncident{"incident": {
		Type:       "incident_reference",
		Status:     "resolved",
		Resolution: resolution,
	}}
	r, err := n.pdDo(ctx, ch, http.MethodPut, "/incidents/"+url.PathEscape(inc.ID), payload, false)
	return attemptFor(r, err, 0)
}

// pdFindOpen looks up the open (triggered or acknowledged) incident with key
// on the channel's service. The returned Attempt describes the lookup.
func (n *Notifier) pdFindOpen(ctx context.Context, ch PagerDutyChannel, key string) (pdIncident, bool, Attempt) {
	q := url.Values{}
	q.Set("incident_key", key)
	q.Add("service_ids[]", ch.ServiceID)
	q.Add("statuses[]", "triggered")
	q.Add("statuses[]", "acknowledged")
	// Without it the list covers a default date window only.
	q.Set("date_range", "all")
	r, err := n.pdDo(ctx, ch, http.MethodGet, "/incidents?"+q.Encode(), nil, true)
	att := attemptFor(r, err, 0)
	if !att.OK() {
		return pdIncident{}, false, att
	}
	var list struct {
		Incidents []pdIncident `json:"incidents"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		return pdIncident{}, false, Attempt{StatusCode: r.status, Error: "pagerduty: undecodable incident list", Retryable: true}
	}
	for _, inc := range list.Incidents {
		// Filter again: never resolve an incident we did not open.
		if inc.IncidentKey == key && inc.ID != "" && inc.Status != "resolved" {
			return inc, true, att
		}
	}
	return pdIncident{}, false, att
}

// pdDo sends one REST API request with the headers the API requires.
func (n *Notifier) pdDo(ctx context.Context, ch PagerDutyChannel, method, path string, payload any, keepBody bool) (response, error) {
	var body *bytes.Reader
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return response{}, fmt.Errorf("%w: encode request: %v", errInvalidRequest, err)
		}
		body = bytes.NewReader(b)
	}
	var req *http.Request
	var err error
	if body != nil {
		req, err = http.NewRequestWithContext(ctx, method, ch.base()+path, body)
	} else {
		req, err = http.NewRequestWithContext(ctx, method, ch.base()+path, nil)
	}
	if err != nil {
		return response{}, fmt.Errorf("%w: %v", ErrURLPolicy, stripURLError(err))
	}
	req.Header.Set("Authorization", "Token token="+ch.APIKey)
	req.Header.Set("Accept", PagerDutyAccept)
	req.Header.Set("From", ch.FromEmail)
	req.Header.Set("User-Agent", UserAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return do(n.client, req, keepBody)
}
