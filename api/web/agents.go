package web

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Agents page: an org's agent identities (oak_agent_… bearer
// credentials for autonomous agents), made and revoked through the same
// operations as over REST. Like a key, a new identity's secret is in the
// creation's answer only, so this page shows it on that answer and never
// again.

// agentIdentity is an agent identity as listed (never its secret).
type agentIdentity struct {
	ID             string     `json:"id"`
	Name           string     `json:"name"`
	Prefix         string     `json:"prefix"`
	CreatedByEmail string     `json:"created_by_email"`
	CreatedAt      time.Time  `json:"created_at"`
	ExpiresAt      *time.Time `json:"expires_at"`
	LastUsedAt     *time.Time `json:"last_used_at"`
	RevokedAt      *time.Time `json:"revoked_at"`
}

// agentsView is the Agents page; Secret is set on the answer that created one.
type agentsView struct {
	Org    org
	Agents []agentIdentity
	Now    time.Time
	Secret *shownOnce
}

// Expired reports whether an identity's lifetime ended.
func (a agentIdentity) Expired(now time.Time) bool {
	return a.ExpiresAt != nil && !a.ExpiresAt.After(now)
}

func (d *Dashboard) agentsSpec(secret *shownOnce) adminPage {
	return adminPage{name: "agents", title: "Agents", load: func(w http.ResponseWriter, r *http.Request, m *me) (any, bool) {
		v := agentsView{Secret: secret, Now: d.cfg.Now()}
		var ok bool
		v.Org, v.Agents, ok = orgList[agentIdentity](d, w, r, m, "agents")
		return v, ok
	}}
}

func (d *Dashboard) agentsPage(w http.ResponseWriter, r *http.Request) {
	d.adminGet(d.agentsSpec(nil))(w, r)
}

// agentsCreate makes an identity and shows its secret on this answer only.
func (d *Dashboard) agentsCreate(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m == nil {
		return
	}
	body := map[string]any{"name": strings.TrimSpace(r.PostForm.Get("name"))}
	if days := strings.TrimSpace(r.PostForm.Get("expires_in_days")); days != "" {
		n, err := strconv.Atoi(days)
		if err != nil {
			d.show(w, r, m, d.agentsSpec(nil), http.StatusUnprocessableEntity, "Days until it stops working must be a whole number.", r.PostForm)
			return
		}
		body["expires_in_days"] = n
	}
	var created struct {
		Name   string `json:"name"`
		Secret string `json:"secret"`
	}
	if d.orgCreate(w, r, m, d.agentsSpec(nil), "agents", body, &created) {
		d.show(w, r, m, d.agentsSpec(&shownOnce{What: "The credential of " + created.Name, Secret: created.Secret}), http.StatusCreated, "", nil)
	}
}

func (d *Dashboard) agentsRevoke(w http.ResponseWriter, r *http.Request) {
	d.orgRevoke(w, r, d.agentsSpec(nil), "agents", "agent-revoked")
}
