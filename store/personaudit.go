package store

import (
	"context"
	"fmt"
)

// InsertPersonAuditEvent writes an audit entry about a person (a sign-in, a
// session, a passkey, recovery codes) that no org owns: once in each team
// userID belongs to now, as a team-level entry (org ""), so the owners and
// admins of each of those teams see it in their activity and nobody else's
// does; once without a team when the person is in none. ev.OrgID and
// ev.TeamID are ignored; ev.ID names the first entry, the others get new ids.
// Run it in the transaction of the change it records.
func (q *Queries) InsertPersonAuditEvent(ctx context.Context, userID string, ev InsertAuditEventParams) error {
	teams, err := q.ListUserTeamIDs(ctx, userID)
	if err != nil {
		return fmt.Errorf("teams of %s: %w", userID, err)
	}
	if len(teams) == 0 {
		teams = []string{""}
	}
	ev.OrgID = ""
	for i, team := range teams {
		if i > 0 {
			ev.ID = NewID("evt")
		}
		ev.TeamID = team
		if err := q.InsertAuditEvent(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}
