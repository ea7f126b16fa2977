package web

import (
	"net/http"
	"net/url"
	"time"
)

// The MCP clients page: the OAuth clients people of the team authorized to
// act in the current org through the MCP connector, read from and revoked
// through the same operations as over REST (owners and admins).

// connection is a connected client as GET /v1/orgs/{org}/mcp-clients lists it.
type connection struct {
	ID                string     `json:"id"`
	ClientID          string     `json:"client_id"`
	ClientName        string     `json:"client_name"`
	ClientURI         string     `json:"client_uri"`
	RedirectURIs      []string   `json:"redirect_uris"`
	AuthorizedByEmail string     `json:"authorized_by_email"`
	Scopes            []string   `json:"scopes"`
	AuthorizedAt      time.Time  `json:"authorized_at"`
	LastUsedAt        *time.Time `json:"last_used_at"`
}

// connectionsView is the MCP clients page: one page of the list, with the
// next page's cursor.
type connectionsView struct {
	Org     org
	Clients pageList[connection]
}

func (d *Dashboard) connectionsSpec() adminPage {
	return adminPage{name: "mcp-clients", title: "MCP clients", load: func(w http.ResponseWriter, r *http.Request, m *me) (any, bool) {
		var v connectionsView
		o, ok := d.currentOrg(w, r, m)
		if !ok {
			return v, false
		}
		if !d.adminFetch(w, r, m, "/v1/orgs/"+url.PathEscape(o.ID)+"/mcp-clients", pageQuery(r, listPageSize), &v.Clients) {
			return v, false
		}
		v.Org = o
		return v, true
	}}
}

func (d *Dashboard) connectionsPage(w http.ResponseWriter, r *http.Request) {
	d.adminGet(d.connectionsSpec())(w, r)
}

func (d *Dashboard) connectionsRevoke(w http.ResponseWriter, r *http.Request) {
	d.orgRevoke(w, r, d.connectionsSpec(), "mcp-clients", "mcp-client-revoked")
}
