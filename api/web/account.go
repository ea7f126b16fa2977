package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// registerAccount mounts Settings, Team and Billing.
func (d *Dashboard) registerAccount(mux *http.ServeMux) {
	mux.HandleFunc("GET /settings", d.adminGet(d.settingsSpec(nil)))
	mux.HandleFunc("POST /settings", d.settingsSave)
	mux.HandleFunc("POST /settings/webhook/rotate", d.settingsRotate)
	mux.HandleFunc("POST /settings/channels", d.channelCreate)
	mux.HandleFunc("GET /settings/slack", d.slackInstall)
	mux.HandleFunc("POST /settings/channels/{id}/test", d.channelTest)
	mux.HandleFunc("POST /settings/channels/{id}/delete", d.channelDelete)
	mux.HandleFunc("GET /team", d.adminGet(d.teamSpec()))
	mux.HandleFunc("POST /team/invitations", d.teamInvite)
	mux.HandleFunc("POST /team/invitations/{id}/revoke", d.teamAction(http.MethodDelete, "/v1/team/invitations/", "invitation-revoked"))
	mux.HandleFunc("POST /team/members/{id}/remove", d.teamAction(http.MethodDelete, "/v1/team/members/", "member-removed"))
	mux.HandleFunc("POST /team/members/{id}/role", d.teamRole)
	mux.HandleFunc("POST /team/groups/{id}", d.teamGroup)
	mux.HandleFunc("GET /billing", d.adminGet(d.billingSpec(nil)))
	mux.HandleFunc("POST /billing/checkout", d.billingCheckout)
}

// settings is GET /v1/settings's answer.
type settings struct {
	Name                     string `json:"name"`
	ApprovalTimeoutSeconds   int    `json:"approval_timeout_seconds"`
	WebhookURL               string `json:"webhook_url"`
	WebhookIncludeParameters bool   `json:"webhook_include_parameters"`
	ScrubParameters          bool   `json:"scrub_parameters"`
	ManagementKeysMayDecide  bool   `json:"management_keys_may_decide"`
	AutodiscoveryHourlyCap   int    `json:"autodiscovery_hourly_cap"`
	AutodiscoveryTotalCap    int    `json:"autodiscovery_total_cap"`
	WebhookSecret            string `json:"webhook_secret"`
}

// channel is a notification channel as listed (credentials never are).
type channel struct {
	ID               string `json:"id"`
	Kind             string `json:"kind"`
	Name             string `json:"name"`
	Scope            string `json:"scope"`
	Enabled          bool   `json:"enabled"`
	WebhookURLMasked string `json:"webhook_url_masked"`
	SlackChannel     string `json:"slack_channel"`
	FromEmail        string `json:"from_email"`
	ServiceID        string `json:"service_id"`
	URL              string `json:"url"`
	Secret           string `json:"secret"`
}

// timeoutPreset is one choice of the approval timeout (SPEC §1 presets).
type timeoutPreset struct {
	Seconds int
	Label   string
}

var timeoutPresets = []timeoutPreset{{300, "5 minutes"}, {900, "15 minutes"}, {3600, "1 hour"}, {14400, "4 hours"},
	{86400, "24 hours"}, {259200, "3 days"}, {604800, "7 days"}}

// shownOnce is a secret shown on the one answer that made it.
type shownOnce struct {
	What, Secret string
}

// settingsView is the Settings page.
type settingsView struct {
	S        settings
	Presets  []timeoutPreset
	Custom   bool // the stored timeout is not a preset
	Channels []channel
	Secret   *shownOnce
	// Tested is the outcome of a channel's Test.
	Tested string
	// SlackInstall: the server can do "Add to Slack".
	SlackInstall bool
	// SlackCallback is the redirect URL a Slack app must list
	// (api.SlackCallbackPath on the public URL).
	SlackCallback string
}

func (d *Dashboard) settingsSpec(extra func(*settingsView)) adminPage {
	return adminPage{name: "settings", title: "Settings", load: func(w http.ResponseWriter, r *http.Request, m *me) (any, bool) {
		v := settingsView{Presets: timeoutPresets, Custom: true, SlackInstall: d.cfg.SlackInstall,
			SlackCallback: d.cfg.PublicURL + "/v1/integrations/slack/callback"}
		if !d.adminFetch(w, r, m, "/v1/settings", nil, &v.S) {
			return nil, false
		}
		for _, p := range timeoutPresets {
			if p.Seconds == v.S.ApprovalTimeoutSeconds {
				v.Custom = false
			}
		}
		var chans pageList[channel]
		if !d.adminFetch(w, r, m, "/v1/channels", url.Values{"limit": {"200"}}, &chans) {
			return nil, false
		}
		v.Channels = chans.Items
		if extra != nil {
			extra(&v)
		}
		return v, true
	}}
}

// slackInstall is "Add to Slack": a plain link (the page's CSP allows
// forms to post only to us, so a form could not follow the redirect to
// Slack) to this GET, which starts an install bound to the session and the
// chosen org through the API — owners and admins only — and sends the
// browser on to Slack's authorize page. A cross-site navigation is refused
// so another site cannot start installs in the person's name.
func (d *Dashboard) slackInstall(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		d.render(w, r, http.StatusForbidden, "problem", view{Title: "Not allowed", Me: m,
			Error: "\"Add to Slack\" must be started from the Settings page."})
		return
	}
	var out struct {
		AuthorizeURL string `json:"authorize_url"`
	}
	a, err := d.call(r.Context(), r, http.MethodPost, "/v1/channels/slack/install", nil,
		map[string]string{"name": "Slack", "scope": "all"}, &out)
	if err != nil {
		d.log.ErrorContext(r.Context(), "start slack install", "err", err)
		d.fail(w, r)
		return
	}
	if a.problem != nil {
		d.problemPage(w, r, m, a.problem)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, out.AuthorizeURL, http.StatusSeeOther)
}

// formInt is a whole-number form field; ok is false when it is not one.
func formInt(r *http.Request, name string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(r.PostForm.Get(name)), 10, 64)
	return n, err == nil
}

func (d *Dashboard) settingsSave(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m == nil {
		return
	}
	body := map[string]any{"name": strings.TrimSpace(r.PostForm.Get("name")), "webhook_url": strings.TrimSpace(r.PostForm.Get("webhook_url"))}
	for _, f := range []string{"webhook_include_parameters", "scrub_parameters", "management_keys_may_decide"} {
		body[f] = r.PostForm.Get(f) != ""
	}
	for _, f := range []string{"approval_timeout_seconds", "autodiscovery_hourly_cap", "autodiscovery_total_cap"} {
		n, ok := formInt(r, f)
		if !ok {
			d.show(w, r, m, d.settingsSpec(nil), http.StatusUnprocessableEntity, strings.ReplaceAll(f, "_", " ")+" must be a whole number.", r.PostForm)
			return
		}
		body[f] = n
	}
	var out settings
	if !d.adminSubmit(w, r, m, d.settingsSpec(nil), http.MethodPatch, "/v1/settings", body, &out) {
		return
	}
	if out.WebhookSecret != "" {
		// The first webhook URL made a signing secret: this answer is the
		// only place it is ever shown.
		d.show(w, r, m, d.settingsSpec(func(v *settingsView) {
			v.Secret = &shownOnce{What: "Webhook signing secret", Secret: out.WebhookSecret}
		}), http.StatusOK, "", nil)
		return
	}
	doneRedirect(w, r, "/settings", "settings-saved")
}

func (d *Dashboard) settingsRotate(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m == nil {
		return
	}
	var out struct {
		Secret string `json:"secret"`
	}
	if d.adminSubmit(w, r, m, d.settingsSpec(nil), http.MethodPost, "/v1/webhook/rotate-secret", nil, &out) {
		d.show(w, r, m, d.settingsSpec(func(v *settingsView) {
			v.Secret = &shownOnce{What: "New webhook signing secret (the previous one signs alongside it for a while)", Secret: out.Secret}
		}), http.StatusOK, "", nil)
	}
}

func (d *Dashboard) channelCreate(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m == nil {
		return
	}
	kind := r.PostForm.Get("kind")
	body := map[string]any{"kind": kind, "name": strings.TrimSpace(r.PostForm.Get("name")), "scope": r.PostForm.Get("scope")}
	fields := map[string][]string{"slack": {"webhook_url"}, "pagerduty": {"api_key", "from_email", "service_id"}, "webhook": {"url"}}[kind]
	for _, f := range fields {
		body[f] = strings.TrimSpace(r.PostForm.Get(kind + "_" + f))
	}
	var out channel
	if !d.adminSubmit(w, r, m, d.settingsSpec(nil), http.MethodPost, "/v1/channels", body, &out) {
		return
	}
	if out.Secret != "" {
		d.show(w, r, m, d.settingsSpec(func(v *settingsView) {
			v.Secret = &shownOnce{What: "Signing secret of channel " + out.Name, Secret: out.Secret}
		}), http.StatusCreated, "", nil)
		return
	}
	doneRedirect(w, r, "/settings", "channel-created")
}

func (d *Dashboard) channelTest(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m == nil {
		return
	}
	var out struct {
		OK         bool   `json:"ok"`
		StatusCode int    `json:"status_code"`
		Error      string `json:"error"`
	}
	if !d.adminSubmit(w, r, m, d.settingsSpec(nil), http.MethodPost, "/v1/channels/"+url.PathEscape(r.PathValue("id"))+"/test", nil, &out) {
		return
	}
	msg := "Test alert delivered."
	status := http.StatusOK
	if !out.OK {
		msg, status = fmt.Sprintf("Test alert not delivered (HTTP %d): %s", out.StatusCode, out.Error), http.StatusBadGateway
	}
	d.show(w, r, m, d.settingsSpec(func(v *settingsView) { v.Tested = msg }), status, "", nil)
}

func (d *Dashboard) channelDelete(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m != nil && d.adminSubmit(w, r, m, d.settingsSpec(nil), http.MethodDelete, "/v1/channels/"+url.PathEscape(r.PathValue("id")), nil, nil) {
		doneRedirect(w, r, "/settings", "channel-deleted")
	}
}

// member is a team member as listed.
type member struct {
	UserID string    `json:"user_id"`
	Email  string    `json:"email"`
	Name   string    `json:"name"`
	Role   string    `json:"role"`
	Since  time.Time `json:"since"`
}

// invitation is an open invitation as listed.
type invitation struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Role      string    `json:"role"`
	ExpiresAt time.Time `json:"expires_at"`
}

// teamView is the Team page.
type teamView struct {
	Members     []member
	Invitations []invitation
	Groups      []groupView
	Roles       []string
}

// groupView is an approver group with every member marked in or out.
type groupView struct {
	Level    int
	Everyone bool
	Members  []groupMember
}

type groupMember struct {
	member
	In bool
}

func (d *Dashboard) teamSpec() adminPage {
	return adminPage{name: "team", title: "Team", load: func(w http.ResponseWriter, r *http.Request, m *me) (any, bool) {
		v := teamView{Roles: []string{"reviewer", "admin", "owner"}}
		var members pageList[member]
		var invitations pageList[invitation]
		var groups pageList[struct {
			Level    int      `json:"level"`
			UserIDs  []string `json:"user_ids"`
			Everyone bool     `json:"everyone"`
		}]
		if !d.adminFetch(w, r, m, "/v1/team/members", nil, &members) || !d.adminFetch(w, r, m, "/v1/team/invitations", nil, &invitations) || !d.adminFetch(w, r, m, "/v1/team/approver-groups", nil, &groups) {
			return nil, false
		}
		v.Members, v.Invitations = members.Items, invitations.Items
		for _, g := range groups.Items {
			gv := groupView{Level: g.Level, Everyone: g.Everyone}
			for _, mb := range members.Items {
				in := false
				for _, id := range g.UserIDs {
					in = in || id == mb.UserID
				}
				gv.Members = append(gv.Members, groupMember{member: mb, In: in})
			}
			v.Groups = append(v.Groups, gv)
		}
		return v, true
	}}
}

func (d *Dashboard) teamInvite(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m == nil {
		return
	}
	body := map[string]any{"email": strings.TrimSpace(r.PostForm.Get("email")), "role": r.PostForm.Get("role")}
	if d.adminSubmit(w, r, m, d.teamSpec(), http.MethodPost, "/v1/team/invitations", body, nil) {
		doneRedirect(w, r, "/team", "invited")
	}
}

// teamAction is a bodiless team form: method on prefix + the path's id.
func (d *Dashboard) teamAction(method, prefix, notice string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m := d.formPerson(w, r)
		if m != nil && d.adminSubmit(w, r, m, d.teamSpec(), method, prefix+url.PathEscape(r.PathValue("id")), nil, nil) {
			doneRedirect(w, r, "/team", notice)
		}
	}
}

func (d *Dashboard) teamRole(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m != nil && d.adminSubmit(w, r, m, d.teamSpec(), http.MethodPatch, "/v1/team/members/"+url.PathEscape(r.PathValue("id")),
		map[string]any{"role": r.PostForm.Get("role")}, nil) {
		doneRedirect(w, r, "/team", "role-changed")
	}
}

func (d *Dashboard) teamGroup(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m == nil {
		return
	}
	ids := r.PostForm["user_id"]
	if ids == nil {
		ids = []string{}
	}
	if d.adminSubmit(w, r, m, d.teamSpec(), http.MethodPut, "/v1/team/approver-groups/"+url.PathEscape(r.PathValue("id")),
		map[string]any{"user_ids": ids}, nil) {
		doneRedirect(w, r, "/team", "group-saved")
	}
}

// credits is GET /v1/credits's answer.
type credits struct {
	Mode            string     `json:"mode"`
	BalanceMicros   int64      `json:"balance_micros"`
	FreeMicros      int64      `json:"free_micros"`
	FreeExpiresAt   *time.Time `json:"free_expires_at"`
	PurchasedMicros int64      `json:"purchased_micros"`
	CallCostMicros  int64      `json:"call_cost_micros"`
	BillableCalls   int64      `json:"billable_calls"`
	Packs           []struct {
		ID           string `json:"id"`
		PriceCents   int64  `json:"price_cents"`
		CreditMicros int64  `json:"credit_micros"`
	} `json:"packs"`
}

// usageBar is one day of the usage chart.
type usageBar struct {
	Day              string
	Calls            int64
	Spend            string
	X, Y, W, H, TipY int
}

// billingView is the Billing page.
type billingView struct {
	C                            credits
	Balance, Free, Purchased     string
	FreeExpired                  bool
	Calls                        int64
	Spend                        string
	Bars                         []usageBar
	Max                          int64
	ChartW, ChartH, BaseY        int
	Packs                        []packView
	CheckoutURL                  string
	Returned                     string
	FreeExpiry                   *time.Time
	ModeStripe, ModeOff, Prepaid bool
}

type packView struct {
	ID, Price, Credit string
}

// dollars is micro-dollars as "$1.23".
func dollars(micros int64) string {
	sign := ""
	if micros < 0 {
		sign, micros = "-", -micros
	}
	cents := (micros + 5000) / 10000
	return fmt.Sprintf("%s$%d.%02d", sign, cents/100, cents%100)
}

// usageDays is the length of the Billing page's chart.
const usageDays = 30

func (d *Dashboard) billingSpec(checkout *string) adminPage {
	return adminPage{name: "billing", title: "Billing", load: func(w http.ResponseWriter, r *http.Request, m *me) (any, bool) {
		var v billingView
		var usage struct {
			Since string `json:"since"`
			Days  []struct {
				Day         string `json:"day"`
				Calls       int64  `json:"calls"`
				SpendMicros int64  `json:"spend_micros"`
			} `json:"days"`
			Calls       int64 `json:"calls"`
			SpendMicros int64 `json:"spend_micros"`
		}
		if !d.adminFetch(w, r, m, "/v1/credits", nil, &v.C) ||
			!d.adminFetch(w, r, m, "/v1/billing/usage", url.Values{"days": {strconv.Itoa(usageDays)}}, &usage) {
			return nil, false
		}
		v.Balance, v.Free, v.Purchased = dollars(v.C.BalanceMicros), dollars(v.C.FreeMicros), dollars(v.C.PurchasedMicros)
		v.FreeExpiry = v.C.FreeExpiresAt
		v.FreeExpired = v.C.FreeExpiresAt != nil && !v.C.FreeExpiresAt.After(d.cfg.Now())
		v.ModeStripe, v.ModeOff, v.Prepaid = v.C.Mode == "stripe", v.C.Mode == "off", v.C.Mode == "prepaid"
		v.Calls, v.Spend = usage.Calls, dollars(usage.SpendMicros)
		for _, p := range v.C.Packs {
			v.Packs = append(v.Packs, packView{ID: p.ID, Price: fmt.Sprintf("$%d.%02d", p.PriceCents/100, p.PriceCents%100), Credit: dollars(p.CreditMicros)})
		}
		// One bar per UTC day (orgs summed), days without calls included.
		since, err := time.Parse(time.DateOnly, usage.Since)
		if err != nil {
			since = d.cfg.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 1-usageDays)
		}
		byDay := map[string][2]int64{}
		for _, u := range usage.Days {
			c := byDay[u.Day]
			byDay[u.Day] = [2]int64{c[0] + u.Calls, c[1] + u.SpendMicros}
		}
		const barW, gap, chartH = 10, 2, 120
		v.ChartW, v.ChartH, v.BaseY = usageDays*(barW+gap), chartH+20, chartH
		for i := range usageDays {
			day := since.AddDate(0, 0, i).Format(time.DateOnly)
			v.Max = max(v.Max, byDay[day][0])
			v.Bars = append(v.Bars, usageBar{Day: day, Calls: byDay[day][0], Spend: dollars(byDay[day][1]), X: i * (barW + gap), W: barW})
		}
		for i := range v.Bars {
			h := 0
			if v.Max > 0 {
				h = int(v.Bars[i].Calls * chartH / v.Max)
			}
			if v.Bars[i].Calls > 0 && h < 2 {
				h = 2 // a day with calls is never invisible
			}
			v.Bars[i].H, v.Bars[i].Y = h, chartH-h
		}
		if checkout != nil {
			v.CheckoutURL = *checkout
		}
		switch r.URL.Query().Get("checkout") {
		case "success":
			v.Returned = "Payment received by Stripe: the credit appears as soon as Stripe confirms it (usually seconds)."
		case "cancelled":
			v.Returned = "Checkout cancelled: nothing was charged."
		}
		return v, true
	}}
}

// billingCheckout starts a Stripe Checkout and offers its link: a redirect
// from a form to another site would be refused by the page's CSP
// (form-action 'self'), and a link is a plain navigation.
func (d *Dashboard) billingCheckout(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m == nil {
		return
	}
	var out struct {
		URL string `json:"url"`
	}
	if !d.adminSubmit(w, r, m, d.billingSpec(nil), http.MethodPost, "/v1/billing/checkout", map[string]any{"pack": r.PostForm.Get("pack")}, &out) {
		return
	}
	if u, err := url.Parse(out.URL); err != nil || u.Scheme != "https" && u.Scheme != "http" {
		d.log.ErrorContext(r.Context(), "checkout answered an unusable URL")
		d.fail(w, r)
		return
	}
	d.show(w, r, m, d.billingSpec(&out.URL), http.StatusCreated, "", nil)
}
