package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"oakallow/dev/approvalcheck"
)

// decideRaceRounds is how many approvals testConcurrentDecides races; before the
// decision boundary of flowV3 about one round in three to eight split PostgreSQL from
// the workflow's history.
const decideRaceRounds = 16

// testConcurrentDecides sends 20 decides at once, alternating approve and deny, to each
// of many approvals (one- and two-level, two management keys) and requires that exactly
// one decide per level wins, every other gets a 409 (or the 403 of the same-approver
// rule) naming the winning decision, none gets a 5xx, and PostgreSQL, the workflow's
// history and result, the audit log and the token agree (approvalcheck).
func testConcurrentDecides(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	e.seedTool("send_email", "", nil)
	double := e.seedTool("wire_money", "", nil)
	_, err := s.st.Pool.Exec(context.Background(), `UPDATE tools SET requires_second_approval = true WHERE id = $1`, double)
	require.NoError(t, err)
	require.NoError(t, s.st.NotifyChange(context.Background(), "policy:"+e.boot.OrgID))
	e.setApproverGroup(2, []string{e.boot.UserID})
	second := e.secondManagementKey()
	keys := []string{e.boot.ManagementKey, second}
	// Each replica sends one decide Update per approval at a time; ten replicas send ten
	// at once (Temporal's default limit of Updates in flight per workflow), as a fleet
	// behind a load balancer could.
	replicas := []*testEnv{e}
	for range 9 {
		replicas = append(replicas, e.on(s.startServer(t)))
	}
	for _, r := range replicas {
		r.waitForKey(second)
	}

	for round := range decideRaceRounds {
		tool := "send_email"
		if round%2 == 1 {
			tool = "wire_money"
		}
		created := e.requestApproval(map[string]any{"tool": tool, "reasoning": fmt.Sprintf("round %d", round)})
		// Race again while the approval waits on a level (a two-level approval whose
		// racers all named level 1).
		var answers []decideAnswer
		for try := 0; try < 4; try++ {
			answers = append(answers, raceDecides(replicas, created.Reference, keys, 20)...)
			if expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+created.Reference, e.boot.StandardKey, nil).Status != "pending" {
				break
			}
		}

		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		rep, err := approvalcheck.Check(ctx, s.st.Pool, s.tc, created.Reference)
		cancel()
		require.NoError(t, err)
		require.NoError(t, rep.Err(), "round %d (%s)", round, tool)

		// The answers agree with the workflow: one winner per decided level, whose
		// decision is the one the workflow took; every refusal names that decision.
		winners := map[int]decideAnswer{}
		for _, a := range answers {
			require.Less(t, a.status, 500, "round %d: a decide answered %d: %s", round, a.status, a.raw)
			switch a.status {
			case http.StatusOK:
				var got Approval
				require.NoError(t, json.Unmarshal(a.raw, &got))
				lvl := len(got.Decisions)
				require.NotZero(t, lvl, "a winning answer lists its decision: %s", a.raw)
				_, dup := winners[lvl]
				require.False(t, dup, "round %d: two decides won level %d", round, lvl)
				winners[lvl] = a
				d := got.Decisions[lvl-1]
				require.Equal(t, a.decision, d.Decision, "round %d: the winner's answer states its own decision", round)
				require.Equal(t, string(rep.State.Decisions[lvl-1].Decision), d.Decision)
				if got.Status == "approved" {
					require.NotEmpty(t, got.Token, "an approved answer carries the token")
				} else {
					require.Empty(t, got.Token, "a %s answer carries no token", got.Status)
				}
			case http.StatusConflict:
				var p Problem
				require.NoError(t, json.Unmarshal(a.raw, &p))
				require.Contains(t, []string{CodeAlreadyDecided, CodeWrongLevel}, p.Code, string(a.raw))
				require.NotNil(t, p.Approval, "a refused decide names the winning decision: %s", a.raw)
				require.NotEmpty(t, p.Approval.Decisions, string(a.raw))
				for i, d := range p.Approval.Decisions {
					require.Equal(t, string(rep.State.Decisions[i].Decision), d.Decision,
						"round %d: a 409 names a decision the workflow did not take: %s", round, a.raw)
				}
			case http.StatusForbidden:
				require.Equal(t, CodeSameApprover, problemCode(t, a.raw), string(a.raw))
			default:
				t.Fatalf("round %d: unexpected answer %d: %s", round, a.status, a.raw)
			}
		}
		require.Len(t, winners, len(rep.State.Decisions), "round %d: one winning answer per accepted decision", round)
	}
}

type decideAnswer struct {
	decision string
	status   int
	raw      []byte
}

// raceDecides sends n decides for ref at once, alternating approve and deny, the keys and
// the replicas.
func raceDecides(replicas []*testEnv, ref string, keys []string, n int) []decideAnswer {
	answers := make([]decideAnswer, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Add(1)
		decision := "approve"
		if i%2 == 1 {
			decision = "deny"
		}
		go func() {
			defer done.Done()
			start.Wait()
			e := replicas[i%len(replicas)]
			status, _, raw := e.send(http.MethodPost, "/v1/approvals/"+ref+"/decide", keys[(i/2)%len(keys)], nil,
				map[string]any{"decision": decision})
			answers[i] = decideAnswer{decision: decision, status: status, raw: raw}
		}()
	}
	start.Done()
	done.Wait()
	return answers
}

// testNotesStayOutOfHistory decides with a note and requires that the note reaches the
// approval, the audit log and the webhook — and nowhere in the workflow's history (SPEC
// §4: no customer data in workflow history); and that a retry with the same
// Idempotency-Key and another note is refused.
func testNotesStayOutOfHistory(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	e.seedTool("send_email", "", nil)
	created := e.requestApproval(map[string]any{"tool": "send_email", "reasoning": "r"})
	const note = "checked with finance, invoice 4471-quartz"
	path := "/v1/approvals/" + created.Reference + "/decide"
	hdr := map[string]string{"Idempotency-Key": "decide-with-note"}

	status, _, raw := e.send(http.MethodPost, path, e.boot.ManagementKey, hdr, map[string]any{"decision": "approve", "note": note})
	require.Equal(t, http.StatusOK, status, string(raw))
	var got Approval
	require.NoError(t, json.Unmarshal(raw, &got))
	require.Len(t, got.Decisions, 1)
	require.Equal(t, note, got.Decisions[0].Note)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'approval.decided'
		AND details->'decision'->>'note' = $2`, note))

	// The same Idempotency-Key with another note is another decision.
	status, _, raw = e.send(http.MethodPost, path, e.boot.ManagementKey, hdr, map[string]any{"decision": "approve", "note": "something else"})
	require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := approvalcheck.Check(ctx, s.st.Pool, s.tc, created.Reference)
	require.NoError(t, err)
	require.NoError(t, rep.Err())
	it := s.tc.GetWorkflowHistory(ctx, created.Reference, "", false, 0)
	events := 0
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		// The wire form: payloads are their raw bytes here (in JSON they are base64).
		b, err := proto.Marshal(ev)
		require.NoError(t, err)
		require.NotContains(t, string(b), "4471-quartz", "the note entered workflow history in event %d (%s)", ev.GetEventId(), ev.GetEventType())
		events++
	}
	require.NotZero(t, events)
}
