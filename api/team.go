package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/store"
)

// A team's orgs, API keys, invitations and members, managed by its people
// (SPEC §3: "API keys and orgs are created and revoked by a signed-in
// owner/admin (session), never by a key"). Every change is audited.

// Audit kinds of team changes.
const (
	kindOrgCreated          = "org.created"
	kindOrgRenamed          = "org.renamed"
	kindOrgDeleted          = "org.deleted"
	kindKeyCreated          = "api_key.created"
	kindKeyRevoked          = "api_key.revoked"
	kindInvitationCreated   = "invitation.created"
	kindInvitationRevoked   = "invitation.revoked"
	kindMemberRoleChanged   = "member.role_changed"
	kindMemberRemoved       = "member.removed"
	CodeLastOwner           = "last_owner"
	maxActiveKeysPerOrg     = 100
	maxOpenInvitationsPerTm = 200
)

// Org is one of the team's organizations.
type Org struct {
	ID        string    `json:"id" doc:"Org id (org_…)."`
	Name      string    `json:"name" doc:"Name, unique in the team."`
	CreatedAt time.Time `json:"created_at" doc:"When it was created."`
}

// APIKey is a key as listed (never the key itself).
type APIKey struct {
	ID             string     `json:"id" doc:"Key id (key_…)."`
	Name           string     `json:"name" doc:"What the key is for."`
	Prefix         string     `json:"prefix" doc:"The key's first characters, for recognising it."`
	Tier           string     `json:"tier" enum:"management,standard" doc:"management: setup endpoints. standard: runtime endpoints (billed)."`
	CreatedBy      string     `json:"created_by,omitempty" doc:"User id of the person who created it."`
	CreatedByEmail string     `json:"created_by_email,omitempty" doc:"Their e-mail address."`
	CreatedAt      time.Time  `json:"created_at" doc:"When it was created."`
	LastUsedAt     *time.Time `json:"last_used_at,omitempty" doc:"When it last authenticated a request (to the minute)."`
	RevokedAt      *time.Time `json:"revoked_at,omitempty" doc:"When it was revoked; absent while it works."`
}

// CreatedAPIKey is a new key, with the key itself shown this once.
type CreatedAPIKey struct {
	APIKey
	Key string `json:"key" doc:"The key (oak_live_…). Shown once: store it now; oakallow keeps only its SHA-256."`
}

// Invitation is an open invitation to the team.
type Invitation struct {
	ID        string    `json:"id" doc:"Invitation id (inv_…)."`
	Email     string    `json:"email" doc:"The invited address; only it can accept."`
	Role      string    `json:"role" enum:"owner,admin,reviewer" doc:"The role the person gets."`
	InvitedBy string    `json:"invited_by" doc:"Who invited (a user id, or bootstrap)."`
	CreatedAt time.Time `json:"created_at" doc:"When it was sent."`
	ExpiresAt time.Time `json:"expires_at" doc:"When it can no longer be accepted."`
}

// CreatedInvitation is a new invitation with its link, shown once.
type CreatedInvitation struct {
	Invitation
	Link     string `json:"link" doc:"The sign-up link with the invitation token, shown once (also mailed). Accepting needs a code mailed to the invited address as well."`
	MailSent bool   `json:"mail_sent" doc:"Whether the link was mailed (false when the server has no mail delivery)."`
}

// Member is a person in the team.
type Member struct {
	UserID string    `json:"user_id" doc:"User id."`
	Email  string    `json:"email" doc:"E-mail address."`
	Name   string    `json:"name" doc:"Name."`
	Role   string    `json:"role" enum:"owner,admin,reviewer" doc:"Role in the team."`
	Since  time.Time `json:"since" doc:"When they joined."`
}

type orgBody struct {
	_    struct{} `additionalProperties:"false"`
	Name string   `json:"name" minLength:"1" maxLength:"200" doc:"The org's name, unique in the team." example:"checkout-agent"`
}

type orgCreateInput struct {
	IdempotencyHeader
	Body orgBody
}

type orgRefInput struct {
	IdempotencyHeader
	OrgID string `path:"org_id" maxLength:"64" doc:"Org id (org_…)."`
}

type orgRenameInput struct {
	IdempotencyHeader
	OrgID string `path:"org_id" maxLength:"64" doc:"Org id (org_…)."`
	Body  orgBody
}

type orgKeysInput struct {
	OrgID string `path:"org_id" maxLength:"64" doc:"Org id (org_…)."`
}

type keyCreateInput struct {
	IdempotencyHeader
	OrgID string `path:"org_id" maxLength:"64" doc:"Org id (org_…)."`
	Body  struct {
		_    struct{} `additionalProperties:"false"`
		Name string   `json:"name" maxLength:"200" doc:"What the key is for." example:"checkout agent (prod)"`
		Tier string   `json:"tier" enum:"management,standard" doc:"management (setup, free) or standard (runtime, billed)."`
	}
}

type keyRefInput struct {
	IdempotencyHeader
	OrgID string `path:"org_id" maxLength:"64" doc:"Org id (org_…)."`
	KeyID string `path:"key_id" maxLength:"64" doc:"Key id (key_…)."`
}

type invitationCreateInput struct {
	IdempotencyHeader
	Body struct {
		_     struct{} `additionalProperties:"false"`
		Email string   `json:"email" minLength:"3" maxLength:"320" doc:"The person's e-mail address." example:"rita@example.com"`
		Role  string   `json:"role" enum:"owner,admin,reviewer" doc:"Their role once they accept. Only owners invite owners."`
	}
}

type invitationRefInput struct {
	IdempotencyHeader
	ID string `path:"id" maxLength:"64" doc:"Invitation id (inv_…)."`
}

type memberRefInput struct {
	IdempotencyHeader
	UserID string `path:"user_id" maxLength:"64" doc:"User id (usr_…)."`
}

type memberRoleInput struct {
	IdempotencyHeader
	UserID string `path:"user_id" maxLength:"64" doc:"User id (usr_…)."`
	Body   struct {
		_    struct{} `additionalProperties:"false"`
		Role string   `json:"role" enum:"owner,admin,reviewer" doc:"The new role. Only owners grant or take away owner; the last owner stays owner."`
	}
}

type listOutput[T any] struct {
	Body struct {
		Items []T `json:"items" doc:"The items."`
	}
}

func newList[T any](items []T) *listOutput[T] {
	out := &listOutput[T]{}
	out.Body.Items = items
	if out.Body.Items == nil {
		out.Body.Items = []T{}
	}
	return out
}

const tagOrgs, tagKeys = "Orgs", "API keys"

var teamErrors = []int{http.StatusUnauthorized, http.StatusForbidden}

func registerTeam(api huma.API, s *Server) {
	registerOrgs(api, s)
	registerKeys(api, s)
	registerAgents(api, s)
	registerConnections(api, s)
	registerInvitations(api, s)
	registerMembers(api, s)
}

func registerOrgs(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-orgs", Method: http.MethodGet, Path: "/v1/orgs",
		Summary: "List orgs", Description: "The selected team's orgs (X-Oakallow-Team when you belong to several).",
		Tags: []string{tagOrgs}, Errors: teamErrors,
	}, accessTeamRead), func(ctx context.Context, _ *struct{}) (*listOutput[Org], error) {
		rows, err := s.deps.Store.ListTeamOrgs(ctx, mustPrincipal(ctx).TeamID)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		items := make([]Org, 0, len(rows))
		for _, r := range rows {
			items = append(items, Org{ID: r.ID, Name: r.Name, CreatedAt: r.CreatedAt})
		}
		return newList(items), nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "create-org", Method: http.MethodPost, Path: "/v1/orgs",
		Summary: "Create an org", Description: "Adds an org to the selected team. Owners and admins.",
		Tags: []string{tagOrgs}, Errors: append(teamErrors, http.StatusConflict), DefaultStatus: http.StatusCreated,
	}, accessTeamAdmin), func(ctx context.Context, in *orgCreateInput) (*writeOutput[Org], error) {
		p := mustPrincipal(ctx)
		return manageWrite(ctx, s, in.IdempotencyKey, "create-org:"+p.TeamID, in.Body, http.StatusCreated,
			func(ctx context.Context, p Principal) (Org, error) {
				now := s.now()
				o := Org{ID: store.NewID("org"), Name: strings.TrimSpace(in.Body.Name), CreatedAt: now}
				if o.Name == "" {
					return Org{}, problem(http.StatusUnprocessableEntity, CodeValidationFailed, "name must not be blank")
				}
				err := s.inTx(ctx, func(q *store.Queries) error {
					s.sessions.forgetAll() // which org a session selects by default may change
					if err := createOrg(ctx, q, store.CreateOrgParams{ID: o.ID, TeamID: p.TeamID, Name: o.Name, CreatedAt: now}, s.cfg.DiscoveryCaps); err != nil {
						return err
					}
					return s.auditTeam(ctx, q, p, o.ID, kindOrgCreated, o.ID, "", map[string]any{"name": o.Name})
				})
				return o, err
			})
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "rename-org", Method: http.MethodPatch, Path: "/v1/orgs/{org_id}",
		Summary: "Rename an org", Tags: []string{tagOrgs}, Errors: append(teamErrors, http.StatusConflict),
	}, accessTeamAdmin), func(ctx context.Context, in *orgRenameInput) (*writeOutput[Org], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "rename-org:"+in.OrgID, in.Body, http.StatusOK,
			func(ctx context.Context, p Principal) (Org, error) {
				var o Org
				name := strings.TrimSpace(in.Body.Name)
				if name == "" {
					return Org{}, problem(http.StatusUnprocessableEntity, CodeValidationFailed, "name must not be blank")
				}
				err := s.inTx(ctx, func(q *store.Queries) error {
					r, err := q.RenameOrg(ctx, store.RenameOrgParams{ID: p.OrgID, TeamID: p.TeamID, Name: name, Now: s.now()})
					if err != nil {
						return err
					}
					o = Org{ID: r.ID, Name: r.Name, CreatedAt: r.CreatedAt}
					return s.auditTeam(ctx, q, p, o.ID, kindOrgRenamed, o.ID, "", map[string]any{"name": name})
				})
				return o, err
			})
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "delete-org", Method: http.MethodDelete, Path: "/v1/orgs/{org_id}",
		Summary:     "Delete an org",
		Description: "Deletes the org and revokes its keys at once, on every replica. Its audit log, approvals and billing records are kept.",
		Tags:        []string{tagOrgs}, Errors: teamErrors, DefaultStatus: http.StatusNoContent,
	}, accessTeamAdmin), func(ctx context.Context, in *orgRefInput) (*deleteOutput, error) {
		out, err := manageDelete(ctx, s, in.IdempotencyKey, "delete-org:"+in.OrgID, func(ctx context.Context, p Principal) error {
			return s.inTx(ctx, func(q *store.Queries) error {
				now := s.now()
				s.sessions.forgetAll() // no session may select it any more
				if _, err := q.DeleteOrg(ctx, store.DeleteOrgParams{ID: p.OrgID, TeamID: p.TeamID, Now: now}); err != nil {
					return err
				}
				keys, err := q.RevokeOrgKeys(ctx, store.RevokeOrgKeysParams{OrgID: p.OrgID, Now: now})
				if err != nil {
					return err
				}
				// Team-level: no session can select a deleted org, so an entry
				// in its own log would be seen by nobody.
				if err := s.auditTeam(ctx, q, p, "", kindOrgDeleted, p.OrgID, "", map[string]any{"revoked_keys": keys}); err != nil {
					return err
				}
				return q.NotifyChange(ctx, "keys")
			})
		})
		if err == nil {
			s.applyKeyChange(ctx)
		}
		return out, err
	})
}

func registerKeys(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-api-keys", Method: http.MethodGet, Path: "/v1/orgs/{org_id}/keys",
		Summary: "List an org's API keys", Description: "Every key of the org, revoked ones too, newest first. Owners and admins.",
		Tags: []string{tagKeys}, Errors: teamErrors,
	}, accessTeamAdmin), func(ctx context.Context, in *orgKeysInput) (*listOutput[APIKey], error) {
		rows, err := s.deps.Store.ListOrgKeys(ctx, mustPrincipal(ctx).OrgID)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		items := make([]APIKey, 0, len(rows))
		for _, r := range rows {
			k := APIKey{ID: r.ID, Name: r.Name, Prefix: r.Prefix, Tier: r.Tier, CreatedByEmail: r.CreatedByEmail,
				CreatedAt: r.CreatedAt, LastUsedAt: r.LastUsedAt, RevokedAt: r.RevokedAt}
			if r.CreatedBy != nil {
				k.CreatedBy = *r.CreatedBy
			}
			items = append(items, k)
		}
		return newList(items), nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "create-api-key", Method: http.MethodPost, Path: "/v1/orgs/{org_id}/keys",
		Summary:     "Create an API key",
		Description: "Creates a management or standard key for the org; the key is in this answer only. Owners and admins.",
		Tags:        []string{tagKeys}, Errors: append(teamErrors, http.StatusConflict), DefaultStatus: http.StatusCreated,
	}, accessTeamAdmin), func(ctx context.Context, in *keyCreateInput) (*writeOutput[CreatedAPIKey], error) {
		out, err := manageWrite(ctx, s, in.IdempotencyKey, "create-api-key:"+in.OrgID, in.Body, http.StatusCreated,
			func(ctx context.Context, p Principal) (CreatedAPIKey, error) {
				var k CreatedAPIKey
				err := s.inTx(ctx, func(q *store.Queries) error {
					n, err := q.CountOrgActiveKeys(ctx, p.OrgID)
					if err != nil {
						return err
					}
					if n >= maxActiveKeysPerOrg {
						return problem(http.StatusConflict, CodeConflict, fmt.Sprintf("an org has at most %d active keys; revoke one first", maxActiveKeysPerOrg))
					}
					now := s.now()
					raw, hash, display := GenerateAPIKey()
					k = CreatedAPIKey{APIKey: APIKey{ID: store.NewID("key"), Name: in.Body.Name, Prefix: display, Tier: in.Body.Tier,
						CreatedBy: p.UserID, CreatedAt: now}, Key: raw}
					if err := q.CreateAPIKey(ctx, store.CreateAPIKeyParams{ID: k.ID, OrgID: p.OrgID, Tier: k.Tier, Name: k.Name,
						Prefix: display, Hash: hash[:], CreatedBy: &p.UserID, CreatedAt: now}); err != nil {
						return err
					}
					if err := s.auditTeam(ctx, q, p, p.OrgID, kindKeyCreated, k.ID, k.Tier, map[string]any{"prefix": display, "name": k.Name}); err != nil {
						return err
					}
					return q.NotifyChange(ctx, "keys")
				})
				return k, err
			})
		if err == nil && out.Replayed == "" {
			s.applyKeyChange(ctx)
		}
		return out, err
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "revoke-api-key", Method: http.MethodDelete, Path: "/v1/orgs/{org_id}/keys/{key_id}",
		Summary:     "Revoke an API key",
		Description: "The key stops working at once on this replica and, through PostgreSQL notifications, on every other within a second. Owners and admins.",
		Tags:        []string{tagKeys}, Errors: append(teamErrors, http.StatusNotFound), DefaultStatus: http.StatusNoContent,
	}, accessTeamAdmin), func(ctx context.Context, in *keyRefInput) (*deleteOutput, error) {
		out, err := manageDelete(ctx, s, in.IdempotencyKey, "revoke-api-key:"+in.OrgID+":"+in.KeyID, func(ctx context.Context, p Principal) error {
			return s.inTx(ctx, func(q *store.Queries) error {
				k, err := q.RevokeAPIKey(ctx, store.RevokeAPIKeyParams{ID: in.KeyID, OrgID: p.OrgID, Now: s.now()})
				if err != nil {
					return err
				}
				if err := s.auditTeam(ctx, q, p, p.OrgID, kindKeyRevoked, k.ID, k.Tier, map[string]any{"prefix": k.Prefix}); err != nil {
					return err
				}
				return q.NotifyChange(ctx, "keys")
			})
		})
		if err == nil {
			s.applyKeyChange(ctx)
		}
		return out, err
	})
}

// applyKeyChange reloads this replica's key cache before the write is
// answered (read your writes); other replicas reload on the notification.
func (s *Server) applyKeyChange(ctx context.Context) {
	if err := s.keys.Reload(ctx); err != nil {
		// The notification's reload (retried) still applies it.
		s.log.WarnContext(ctx, "reload api keys after a change", "request_id", requestIDFrom(ctx), "err", err)
		s.keys.RequestReload()
	}
}

func registerInvitations(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-invitations", Method: http.MethodGet, Path: "/v1/team/invitations",
		Summary: "List open invitations", Tags: []string{tagTeam}, Errors: teamErrors,
	}, accessTeamAdmin), func(ctx context.Context, _ *struct{}) (*listOutput[Invitation], error) {
		rows, err := s.deps.Store.ListOpenInvitations(ctx, store.ListOpenInvitationsParams{TeamID: mustPrincipal(ctx).TeamID, Now: s.now()})
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		items := make([]Invitation, 0, len(rows))
		for _, r := range rows {
			items = append(items, Invitation{ID: r.ID, Email: r.Email, Role: r.Role, InvitedBy: r.InvitedBy, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt})
		}
		return newList(items), nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "create-invitation", Method: http.MethodPost, Path: "/v1/team/invitations",
		Summary: "Invite a person",
		Description: "Mails a sign-up link to the address; the person accepts it by signing in with a code mailed there, and gets the role. " +
			"Owners and admins; only owners invite owners.",
		Tags: []string{tagTeam}, Errors: append(teamErrors, http.StatusConflict), DefaultStatus: http.StatusCreated,
	}, accessTeamAdmin), func(ctx context.Context, in *invitationCreateInput) (*writeOutput[CreatedInvitation], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "create-invitation:"+mustPrincipal(ctx).TeamID, in.Body, http.StatusCreated,
			func(ctx context.Context, p Principal) (CreatedInvitation, error) {
				email, ok := normalizeEmail(in.Body.Email)
				if !ok {
					return CreatedInvitation{}, problem(http.StatusUnprocessableEntity, CodeValidationFailed, "email must be a bare e-mail address",
						&huma.ErrorDetail{Location: "body.email", Message: "not an e-mail address", Value: in.Body.Email})
				}
				if in.Body.Role == RoleOwner && p.Role != RoleOwner {
					return CreatedInvitation{}, problem(http.StatusForbidden, CodeInsufficientRole, "only owners invite owners")
				}
				var out CreatedInvitation
				err := s.inTx(ctx, func(q *store.Queries) error {
					n, err := q.CountOpenInvitations(ctx, store.CountOpenInvitationsParams{TeamID: p.TeamID, Now: s.now()})
					if err != nil {
						return err
					}
					if n >= maxOpenInvitationsPerTm {
						return problem(http.StatusConflict, CodeConflict, fmt.Sprintf("a team has at most %d open invitations", maxOpenInvitationsPerTm))
					}
					out, err = s.createInvitation(ctx, q, p.TeamID, email, in.Body.Role, p.UserID)
					if err != nil {
						return err
					}
					return s.auditTeam(ctx, q, p, "", kindInvitationCreated, out.ID, out.Role, map[string]any{"email": email})
				})
				if err != nil {
					return CreatedInvitation{}, err
				}
				out.MailSent = s.mailInvitation(ctx, out)
				return out, nil
			})
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "revoke-invitation", Method: http.MethodDelete, Path: "/v1/team/invitations/{id}",
		Summary: "Revoke an invitation", Tags: []string{tagTeam}, Errors: append(teamErrors, http.StatusNotFound), DefaultStatus: http.StatusNoContent,
	}, accessTeamAdmin), func(ctx context.Context, in *invitationRefInput) (*deleteOutput, error) {
		return manageDelete(ctx, s, in.IdempotencyKey, "revoke-invitation:"+in.ID, func(ctx context.Context, p Principal) error {
			return s.inTx(ctx, func(q *store.Queries) error {
				r, err := q.RevokeInvitation(ctx, store.RevokeInvitationParams{ID: in.ID, TeamID: p.TeamID, Now: s.now()})
				if err != nil {
					return err
				}
				return s.auditTeam(ctx, q, p, "", kindInvitationRevoked, r.ID, r.Role, map[string]any{"email": r.Email})
			})
		})
	})
}

// createInvitation stores an invitation and returns it with its link.
func (s *Server) createInvitation(ctx context.Context, q *store.Queries, teamID, email, role, invitedBy string) (CreatedInvitation, error) {
	now := s.now()
	tok, h := newInvitationToken()
	inv := CreatedInvitation{Invitation: Invitation{ID: store.NewID("inv"), Email: email, Role: role, InvitedBy: invitedBy,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.Accounts.InvitationTTL)}, Link: InvitationLink(s.cfg.PublicURL, tok)}
	err := q.CreateInvitation(ctx, store.CreateInvitationParams{ID: inv.ID, TeamID: teamID, Email: email, Role: role,
		TokenHash: h[:], InvitedBy: invitedBy, CreatedAt: now, ExpiresAt: inv.ExpiresAt})
	return inv, err
}

// InvitationLink is the sign-up link carrying an invitation token.
func InvitationLink(publicURL, token string) string {
	return strings.TrimRight(publicURL, "/") + "/sign-up?invitation=" + url.QueryEscape(token)
}

// mailInvitation mails the link; a failure is logged (the link is also in
// the answer).
func (s *Server) mailInvitation(ctx context.Context, inv CreatedInvitation) bool {
	if s.deps.Mailer == nil {
		return false
	}
	err := s.deps.Mailer.Send(ctx, invitationMessage(inv.Email, inv.Role, inv.Link, inv.ExpiresAt))
	if err != nil {
		s.log.WarnContext(ctx, "mail an invitation", "request_id", requestIDFrom(ctx), "invitation", inv.ID, "err", err)
		return false
	}
	return true
}

func registerMembers(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-members", Method: http.MethodGet, Path: "/v1/team/members",
		Summary: "List the team's members", Tags: []string{tagTeam}, Errors: teamErrors,
	}, accessTeamRead), func(ctx context.Context, _ *struct{}) (*listOutput[Member], error) {
		rows, err := s.deps.Store.ListTeamMembers(ctx, mustPrincipal(ctx).TeamID)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		items := make([]Member, 0, len(rows))
		for _, r := range rows {
			items = append(items, Member{UserID: r.ID, Email: r.Email, Name: r.Name, Role: r.Role, Since: r.CreatedAt})
		}
		return newList(items), nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "set-member-role", Method: http.MethodPatch, Path: "/v1/team/members/{user_id}",
		Summary: "Change a member's role", Description: "Owners and admins; only owners grant or take away owner, and the last owner stays owner.",
		Tags: []string{tagTeam}, Errors: append(teamErrors, http.StatusNotFound, http.StatusConflict),
	}, accessTeamAdmin), func(ctx context.Context, in *memberRoleInput) (*writeOutput[Member], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "set-member-role:"+mustPrincipal(ctx).TeamID+":"+in.UserID, in.Body, http.StatusOK,
			func(ctx context.Context, p Principal) (Member, error) {
				var m Member
				err := s.inTx(ctx, func(q *store.Queries) error {
					from, err := s.checkMemberChange(ctx, q, p, in.UserID, in.Body.Role)
					if err != nil {
						return err
					}
					s.sessions.forgetUser(in.UserID)
					if err := q.SetMemberRole(ctx, store.SetMemberRoleParams{TeamID: p.TeamID, UserID: in.UserID, Role: in.Body.Role}); err != nil {
						return err
					}
					u, err := q.GetUser(ctx, in.UserID)
					if err != nil {
						return err
					}
					m = Member{UserID: u.ID, Email: u.Email, Name: u.Name, Role: in.Body.Role}
					return s.auditTeam(ctx, q, p, "", kindMemberRoleChanged, in.UserID, in.Body.Role, map[string]any{"from": from, "to": in.Body.Role})
				})
				return m, err
			})
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "remove-member", Method: http.MethodDelete, Path: "/v1/team/members/{user_id}",
		Summary: "Remove a member", Description: "Takes the person out of the team (same rules as role changes).",
		Tags: []string{tagTeam}, Errors: append(teamErrors, http.StatusNotFound, http.StatusConflict), DefaultStatus: http.StatusNoContent,
	}, accessTeamAdmin), func(ctx context.Context, in *memberRefInput) (*deleteOutput, error) {
		return manageDelete(ctx, s, in.IdempotencyKey, "remove-member:"+mustPrincipal(ctx).TeamID+":"+in.UserID, func(ctx context.Context, p Principal) error {
			return s.inTx(ctx, func(q *store.Queries) error {
				from, err := s.checkMemberChange(ctx, q, p, in.UserID, "")
				if err != nil {
					return err
				}
				s.sessions.forgetUser(in.UserID)
				if err := q.RemoveMember(ctx, store.RemoveMemberParams{TeamID: p.TeamID, UserID: in.UserID}); err != nil {
					return err
				}
				return s.auditTeam(ctx, q, p, "", kindMemberRemoved, in.UserID, from, nil)
			})
		})
	})
}

// checkMemberChange locks the team's memberships and checks that p may give
// user the role to ("" removes them): only owners touch owners, and the last
// owner stays. It returns the member's current role.
func (s *Server) checkMemberChange(ctx context.Context, q *store.Queries, p Principal, user, to string) (string, error) {
	ms, err := q.LockTeamMemberships(ctx, p.TeamID)
	if err != nil {
		return "", err
	}
	from, owners := "", 0
	for _, m := range ms {
		if m.UserID == user {
			from = m.Role
		}
		if m.Role == RoleOwner {
			owners++
		}
	}
	switch {
	case from == "":
		return "", problem(http.StatusNotFound, CodeNotFound, "no such member of the team")
	case (from == RoleOwner || to == RoleOwner) && p.Role != RoleOwner:
		return "", problem(http.StatusForbidden, CodeInsufficientRole, "only owners grant, take away or remove owner")
	case from == RoleOwner && to != RoleOwner && owners == 1:
		return "", problem(http.StatusConflict, CodeLastOwner, "the team's last owner stays owner: make someone else owner first")
	}
	return from, nil
}

// auditTeam audits a change a person made to the team (org "" for
// team-level changes).
func (s *Server) auditTeam(ctx context.Context, q *store.Queries, p Principal, orgID, kind, subject, outcome string, details map[string]any) error {
	if details == nil {
		details = map[string]any{}
	}
	details["session_id"] = p.SessionID
	return s.auditIdentity(ctx, q, identityEvent{Kind: kind, OrgID: orgID, TeamID: p.TeamID, ActorID: p.UserID,
		Subject: subject, Outcome: outcome, Details: details})
}
