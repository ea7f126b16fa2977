package notify

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"oakallow/activities/pii"
)

// Event types (SPEC §4). The org webhook carries all of them; notification
// channels carry them as Alerts (PagerDuty pages for the approval types only).
const (
	EventApprovalCreated   = "approval.created"
	EventApprovalEscalated = "approval.escalated"
	EventApprovalDecided   = "approval.decided"
	EventApprovalExpired   = "approval.expired"
	// EventToolAutoCreated: the MCP connector registered an unknown tool as a
	// draft (SPEC §7).
	EventToolAutoCreated = "tool.auto_created"
	// EventCreditsLow: the team's balance fell below its low-balance
	// threshold (SPEC §9), once per crossing.
	EventCreditsLow = "credits.low"
)

// Decisions carried by an approval.decided Alert.
const (
	DecisionApproved = "approved"
	DecisionDenied   = "denied"
)

// MaxTextRunes is the longest reason, note, tool name or decider a
// notification channel payload carries (SPEC §4: "cut to 200 characters").
const MaxTextRunes = 200

// maxReferenceLen bounds a REF; real ones are 18 characters
// ("REF-XXXXXXXX-XXXX").
const maxReferenceLen = 64

// Event is the body of an organization webhook delivery:
// {"id","type","created_at","data"}. The caller builds Data (SPEC §4 lists
// its fields) and is responsible for what it contains; Deliver signs and
// sends it unchanged. ID is the event id, identical for every delivery of
// the same event.
type Event struct {
	ID        string         `json:"id"`
	Type      string         `json:"type"`
	CreatedAt time.Time      `json:"created_at"`
	Data      map[string]any `json:"data"`
}

// Validate reports whether the event can be delivered.
func (e Event) Validate() error {
	if e.ID == "" {
		return errors.New("event id is empty")
	}
	if !isEventType(e.Type) {
		return fmt.Errorf("unknown event type %q", e.Type)
	}
	if e.CreatedAt.IsZero() {
		return errors.New("event created_at is zero")
	}
	return nil
}

func isEventType(t string) bool {
	switch t {
	case EventApprovalCreated, EventApprovalEscalated, EventApprovalDecided, EventApprovalExpired,
		EventToolAutoCreated, EventCreditsLow:
		return true
	}
	return false
}

// IsApprovalEvent reports whether t is one of the four approval event types
// (the ones that carry a REF, and the only ones PagerDuty pages for).
func IsApprovalEvent(t string) bool {
	switch t {
	case EventApprovalCreated, EventApprovalEscalated, EventApprovalDecided, EventApprovalExpired:
		return true
	}
	return false
}

// Alert is everything a notification channel (Slack, PagerDuty, generic
// webhook) may say about an event. SPEC §4 restricts channel payloads to
// these fields; there is deliberately no field for parameters, tenants,
// keys or tokens.
type Alert struct {
	// Type is an event type: one of the approval types, tool.auto_created
	// or credits.low.
	Type string
	// ToolName is the tool the approval is for, or the tool discovered
	// (tool.auto_created); empty for credits.low.
	ToolName string
	// Reason is the requester's reasoning. Senders scrub and cut it; callers
	// should still pass the already-scrubbed stored reason.
	Reason string
	// Reference is the approval REF ("REF-XXXXXXXX-XXXX"); empty for the
	// other events.
	Reference string
	// DashboardURL links to the approval in the dashboard; optional.
	DashboardURL string
	// Decision is DecisionApproved or DecisionDenied; approval.decided only.
	Decision string
	// Decider is the display name of the person who decided; approval.decided
	// only.
	Decider string
	// Note is the decider's note; approval.decided only, optional.
	Note string
}

// Validate reports whether the alert is complete and well-formed. It checks
// shape only; content is made safe by the senders (see Scrubber).
func (a Alert) Validate() error {
	switch {
	case IsApprovalEvent(a.Type):
		if strings.TrimSpace(a.ToolName) == "" {
			return errors.New("alert tool name is empty")
		}
		if !validReference(a.Reference) {
			return fmt.Errorf("alert reference %q must be 1-%d letters, digits or '-'", a.Reference, maxReferenceLen)
		}
	case a.Type == EventToolAutoCreated:
		if strings.TrimSpace(a.ToolName) == "" {
			return errors.New("alert tool name is empty")
		}
		if a.Reference != "" {
			return fmt.Errorf("%s alerts carry no reference", a.Type)
		}
	case a.Type == EventCreditsLow:
		if a.ToolName != "" || a.Reference != "" {
			return fmt.Errorf("%s alerts carry no tool or reference", a.Type)
		}
	default:
		return fmt.Errorf("alert type %q is not an event channels carry", a.Type)
	}
	if a.DashboardURL != "" {
		u, err := url.Parse(a.DashboardURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || len(a.DashboardURL) > MaxURLLength {
			return errors.New("alert dashboard URL must be an absolute http(s) URL without credentials")
		}
	}
	if a.Type == EventApprovalDecided {
		if a.Decision != DecisionApproved && a.Decision != DecisionDenied {
			return fmt.Errorf("alert decision %q must be %q or %q", a.Decision, DecisionApproved, DecisionDenied)
		}
	} else if a.Decision != "" || a.Decider != "" || a.Note != "" {
		return fmt.Errorf("decision fields are only allowed on %s alerts", EventApprovalDecided)
	}
	return nil
}

// validReference keeps REFs to a character set that is safe inside
// PagerDuty incident keys, Slack mrkdwn and URLs without escaping.
func validReference(ref string) bool {
	if ref == "" || len(ref) > maxReferenceLen {
		return false
	}
	for _, r := range ref {
		if !(r == '-' || r == '_' || (r >= '0' && r <= '9') || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z')) {
			return false
		}
	}
	return true
}

// Scrubber removes personal data and credentials from free text, replacing
// each finding with "[redacted:<kind>]". Production wiring passes the PII
// scrubber (SPEC §4); it must be safe for concurrent use.
type Scrubber func(string) string

// redactOwnSecrets replaces credentials with "[redacted:secret]" — the same
// list of shapes the PII scrubber uses before storage (pii.RedactSecrets),
// oakallow's own (oak_live_, oak_agent_, oak_tok_, whsec_) among them. The
// senders apply it whatever Scrubber is configured, because leaking a
// credential into a chat channel is the one failure this package can always
// prevent.
func redactOwnSecrets(s string) string { return pii.RedactSecrets(s) }

// cleanText flattens control and formatting characters (newlines included)
// to spaces, collapses runs of whitespace, drops invalid UTF-8, and cuts the
// result to max runes, ending in "…" when something was cut.
func cleanText(s string, max int) string {
	out := make([]rune, 0, min(len(s), 4*max))
	pendingSpace := false
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			continue
		case unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			pendingSpace = len(out) > 0
			continue
		}
		if pendingSpace {
			out = append(out, ' ')
			pendingSpace = false
		}
		out = append(out, r)
		if len(out) > max {
			// Enough to know it will be cut; stop reading a huge input.
			break
		}
	}
	if len(out) <= max {
		return string(out)
	}
	return strings.TrimRightFunc(string(out[:max-1]), unicode.IsSpace) + "…"
}

// sanitize returns the alert as it may leave the process: free text
// scrubbed, oakallow credentials redacted, control characters flattened and
// every text field cut to MaxTextRunes. Validate must have passed.
func (a Alert) sanitize(scrub Scrubber) Alert {
	text := func(s string) string {
		if scrub != nil {
			s = scrub(s)
		}
		return cleanText(redactOwnSecrets(s), MaxTextRunes)
	}
	out := Alert{
		Type:         a.Type,
		ToolName:     cleanText(redactOwnSecrets(a.ToolName), MaxTextRunes),
		Reason:       text(a.Reason),
		Reference:    a.Reference,
		DashboardURL: a.DashboardURL,
	}
	if a.Type == EventApprovalDecided {
		out.Decision = a.Decision
		// The decider is a display name the caller chose to show; it is not
		// run through the PII scrubber (which would redact an e-mail used as
		// a name) but still cannot carry one of our credentials.
		out.Decider = cleanText(redactOwnSecrets(a.Decider), MaxTextRunes)
		out.Note = text(a.Note)
	}
	return out
}

// SampleAlert returns the alert a channel's "test" action sends: an
// approval.created alert for a clearly fake tool and REF.
func SampleAlert(dashboardURL string) Alert {
	return Alert{
		Type:         EventApprovalCreated,
		ToolName:     "oakallow.test_notification",
		Reason:       "This is a test notification from oakallow. No action is needed.",
		Reference:    "REF-TEST0000-0000",
		DashboardURL: dashboardURL,
	}
}

// alertTitle is the one-line human summary used as Slack header and
// fallback text and as PagerDuty incident title.
func alertTitle(a Alert) string {
	switch a.Type {
	case EventApprovalCreated:
		return "Approval requested: " + a.ToolName
	case EventApprovalEscalated:
		return "Approval escalated to second level: " + a.ToolName
	case EventApprovalDecided:
		if a.Decision == DecisionApproved {
			return "Approval granted: " + a.ToolName
		}
		return "Approval denied: " + a.ToolName
	case EventApprovalExpired:
		return "Approval expired without a decision: " + a.ToolName
	case EventToolAutoCreated:
		return "New tool discovered (draft, needs triage): " + a.ToolName
	case EventCreditsLow:
		return "Credits are running low"
	}
	return a.ToolName
}
