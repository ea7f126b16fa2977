package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"oakallow/store"
)

// Free credit every new team receives (SPEC §9): $5.00, expiring after 30 days.
const (
	FreeCreditMicros = 5_000_000
	FreeCreditTTL    = 30 * 24 * time.Hour
)

// BootstrapInput names the first team, owner and org.
type BootstrapInput struct {
	TeamName   string
	OwnerEmail string
	OwnerName  string
	OrgName    string
	// OnlyIfEmpty refuses (ErrAlreadyBootstrapped) when the database has a
	// team already: a production install's first run, which must not become a
	// way to mint keys later.
	OnlyIfEmpty bool
	// DiscoveryCaps are the org's auto-discovery caps (nil: the defaults).
	DiscoveryCaps *DiscoveryCaps
}

// ErrAlreadyBootstrapped: Bootstrap with OnlyIfEmpty found a team.
var ErrAlreadyBootstrapped = errors.New("the database already has a team")

// BootstrapResult holds the created ids and the raw keys, which exist only
// here: the database keeps their SHA-256.
type BootstrapResult struct {
	TeamID        string `json:"team_id"`
	UserID        string `json:"user_id"`
	OrgID         string `json:"org_id"`
	ManagementKey string `json:"management_key"`
	StandardKey   string `json:"standard_key"`
}

// Bootstrap creates a team with its owner, the team's free credit, an org,
// and one management and one standard key, in one transaction.
func Bootstrap(ctx context.Context, st *store.Store, in BootstrapInput, now time.Time) (BootstrapResult, error) {
	now = now.UTC()
	res := BootstrapResult{TeamID: store.NewID("team"), UserID: store.NewID("usr"), OrgID: store.NewID("org")}
	err := st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		if in.OnlyIfEmpty {
			if err := refuseIfInstalled(ctx, q); err != nil {
				return err
			}
		}
		if err := createTeam(ctx, q, res.TeamID, in.TeamName, now); err != nil {
			return err
		}
		if err := q.CreateUser(ctx, store.CreateUserParams{ID: res.UserID, Email: in.OwnerEmail, Name: in.OwnerName, CreatedAt: now}); err != nil {
			return fmt.Errorf("create owner: %w", err)
		}
		if err := q.CreateMembership(ctx, store.CreateMembershipParams{TeamID: res.TeamID, UserID: res.UserID, Role: RoleOwner, CreatedAt: now}); err != nil {
			return fmt.Errorf("create owner: %w", err)
		}
		if err := createOrg(ctx, q, store.CreateOrgParams{ID: res.OrgID, TeamID: res.TeamID, Name: in.OrgName, CreatedAt: now}, in.DiscoveryCaps); err != nil {
			return err
		}
		var err error
		if res.ManagementKey, err = createKey(ctx, q, res.OrgID, TierManagement, "bootstrap management key", res.UserID, now); err != nil {
			return err
		}
		if res.StandardKey, err = createKey(ctx, q, res.OrgID, TierStandard, "bootstrap standard key", res.UserID, now); err != nil {
			return err
		}
		return q.NotifyChange(ctx, "keys")
	})
	if err != nil {
		return BootstrapResult{}, fmt.Errorf("bootstrap: %w", err)
	}
	return res, nil
}

// refuseIfInstalled serialises first-install bootstraps until the
// transaction ends and refuses (ErrAlreadyBootstrapped) once a team exists.
func refuseIfInstalled(ctx context.Context, q *store.Queries) error {
	if err := q.LockFirstTeam(ctx); err != nil {
		return err
	}
	exists, err := q.AnyTeam(ctx)
	if err != nil {
		return err
	}
	if exists {
		return ErrAlreadyBootstrapped
	}
	return nil
}

// createTeam creates a team with its free sign-up credit (SPEC §9).
func createTeam(ctx context.Context, q *store.Queries, id, name string, now time.Time) error {
	if err := q.CreateTeam(ctx, store.CreateTeamParams{ID: id, Name: name, CreatedAt: now}); err != nil {
		return fmt.Errorf("create team: %w", err)
	}
	expires := now.Add(FreeCreditTTL)
	if _, err := q.CreateCreditGrant(ctx, store.CreateCreditGrantParams{ID: store.NewID("grant"), TeamID: id,
		Kind: "free", AmountMicros: FreeCreditMicros, ExpiresAt: &expires,
		Source: "signup:" + id, CreatedAt: now}); err != nil {
		return fmt.Errorf("grant free credit: %w", err)
	}
	return nil
}

// DiscoveryCaps are the auto-discovery caps (SPEC §7) a new org starts
// with; its owners and admins change its own in the org's settings.
type DiscoveryCaps struct {
	// PerHour bounds the drafts registered in any sliding hour, Total the
	// drafts in all; 0 turns auto-discovery off.
	PerHour, Total int32
}

// DefaultDiscoveryCaps are the caps of the orgs table's column defaults.
var DefaultDiscoveryCaps = DiscoveryCaps{PerHour: 50, Total: 500}

// MaxDiscoveryCap is the largest cap, as in the settings API.
const MaxDiscoveryCap = 1_000_000

// Validate checks both caps are within 0…1,000,000.
func (c DiscoveryCaps) Validate() error {
	if c.PerHour < 0 || c.PerHour > MaxDiscoveryCap || c.Total < 0 || c.Total > MaxDiscoveryCap {
		return fmt.Errorf("auto-discovery caps must be between 0 and %d", MaxDiscoveryCap)
	}
	return nil
}

// createOrg creates an org that starts with caps (nil: the defaults).
func createOrg(ctx context.Context, q *store.Queries, p store.CreateOrgParams, caps *DiscoveryCaps) error {
	if err := q.CreateOrg(ctx, p); err != nil {
		return fmt.Errorf("create org: %w", err)
	}
	if caps == nil || *caps == DefaultDiscoveryCaps {
		return nil
	}
	if err := q.SetOrgDiscoveryCaps(ctx, store.SetOrgDiscoveryCapsParams{ID: p.ID, HourlyCap: caps.PerHour, TotalCap: caps.Total}); err != nil {
		return fmt.Errorf("create org: discovery caps: %w", err)
	}
	return nil
}

// createKey stores a new key's hash and returns the raw key.
func createKey(ctx context.Context, q *store.Queries, orgID, tier, name, createdBy string, now time.Time) (string, error) {
	raw, hash, display := GenerateAPIKey()
	err := q.CreateAPIKey(ctx, store.CreateAPIKeyParams{ID: store.NewID("key"), OrgID: orgID, Tier: tier,
		Name: name, Prefix: display, Hash: hash[:], CreatedBy: &createdBy, CreatedAt: now})
	if err != nil {
		return "", fmt.Errorf("create %s key: %w", tier, err)
	}
	return raw, nil
}

// FirstTeamInput names a new installation's first team and its owner.
type FirstTeamInput struct {
	TeamName   string
	OwnerEmail string
	// OrgName, when set, also creates that org with one management and one
	// standard key (automated installs that need keys before anyone signs in).
	OrgName string
	// PublicURL is the server's external base URL, for the sign-up link.
	PublicURL string
	// InvitationTTL is how long the owner's invitation lasts (default 7 days).
	InvitationTTL time.Duration
	// DiscoveryCaps are the org's auto-discovery caps (nil: the defaults).
	DiscoveryCaps *DiscoveryCaps
}

// FirstTeam is a new installation's first team: the owner's one-time
// sign-up link (whose token exists only here) and, when asked for, an org
// with keys.
type FirstTeam struct {
	TeamID        string    `json:"team_id"`
	InvitationID  string    `json:"invitation_id"`
	SignUpLink    string    `json:"sign_up_link"`
	ExpiresAt     time.Time `json:"expires_at"`
	OrgID         string    `json:"org_id,omitempty"`
	ManagementKey string    `json:"management_key,omitempty"`
	StandardKey   string    `json:"standard_key,omitempty"`
}

// bootstrapActor is the audit actor of what bootstrap creates.
const bootstrapActor = "bootstrap"

// BootstrapFirstTeam sets up a new installation without SQL: the first team
// (with its free credit) and an invitation for its owner, in one
// transaction, only while the database has no team (ErrAlreadyBootstrapped
// otherwise), so it cannot later be used to enter someone else's team. The
// owner accepts by signing up with the link's token and a code mailed to
// their address, then enrolls a passkey.
func BootstrapFirstTeam(ctx context.Context, st *store.Store, in FirstTeamInput, now time.Time) (FirstTeam, error) {
	now = now.UTC()
	if in.InvitationTTL == 0 {
		in.InvitationTTL = 7 * 24 * time.Hour
	}
	res := FirstTeam{TeamID: store.NewID("team"), InvitationID: store.NewID("inv"), ExpiresAt: now.Add(in.InvitationTTL)}
	tok, h := newInvitationToken()
	res.SignUpLink = InvitationLink(in.PublicURL, tok)
	email, ok := normalizeEmail(in.OwnerEmail)
	if !ok {
		return FirstTeam{}, fmt.Errorf("bootstrap: %q is not a bare e-mail address", in.OwnerEmail)
	}
	err := st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		if err := refuseIfInstalled(ctx, q); err != nil {
			return err
		}
		if err := createTeam(ctx, q, res.TeamID, in.TeamName, now); err != nil {
			return err
		}
		if err := q.CreateInvitation(ctx, store.CreateInvitationParams{ID: res.InvitationID, TeamID: res.TeamID, Email: email,
			Role: RoleOwner, TokenHash: h[:], InvitedBy: bootstrapActor, CreatedAt: now, ExpiresAt: res.ExpiresAt}); err != nil {
			return fmt.Errorf("invite the owner: %w", err)
		}
		if err := q.InsertAuditEvent(ctx, store.InsertAuditEventParams{ID: store.NewID("evt"), TeamID: res.TeamID, OccurredAt: now,
			ActorKind: "operator", ActorID: bootstrapActor, Kind: kindInvitationCreated, Subject: res.InvitationID, Outcome: RoleOwner,
			Details: []byte(`{}`)}); err != nil {
			return fmt.Errorf("audit the owner's invitation: %w", err)
		}
		if in.OrgName == "" {
			return nil
		}
		res.OrgID = store.NewID("org")
		if err := createOrg(ctx, q, store.CreateOrgParams{ID: res.OrgID, TeamID: res.TeamID, Name: in.OrgName, CreatedAt: now}, in.DiscoveryCaps); err != nil {
			return err
		}
		var err error
		if res.ManagementKey, err = createKey(ctx, q, res.OrgID, TierManagement, "bootstrap management key", bootstrapActor, now); err != nil {
			return err
		}
		if res.StandardKey, err = createKey(ctx, q, res.OrgID, TierStandard, "bootstrap standard key", bootstrapActor, now); err != nil {
			return err
		}
		return q.NotifyChange(ctx, "keys")
	})
	if err != nil {
		return FirstTeam{}, fmt.Errorf("bootstrap: %w", err)
	}
	return res, nil
}
