package store

import (
	"context"
	"strings"
	"time"
)

// auditBatchArrays is one group commit's arguments to
// oakallow_record_audit_batch, each array written as the PostgreSQL array
// literal the statement's $n::type[] parses. pgx sends a Go string as text
// and the server parses it, so a batch costs one string per column; handing
// pgx []string, []time.Time and []json.RawMessage instead costs one boxed
// value per element (an allocation per column per entry), because its array
// encoder takes elements one at a time as interface values.
type auditBatchArrays struct {
	cols [13]strings.Builder
}

// Columns of auditBatchArrays, in the statement's parameter order.
const (
	colIDs = iota
	colOrgIDs
	colTeamIDs
	colOccurredAt
	colActorKinds
	colActorIDs
	colKinds
	colSubjects
	colOutcomes
	colTools
	colTenants
	colBillable
	colDetails
)

// texts are an entry's text columns, indexed by column (colOccurredAt is
// not one of them).
func texts(ev *AuditRecord) [colTenants + 1]string {
	return [...]string{colIDs: ev.ID, colOrgIDs: ev.OrgID, colTeamIDs: ev.TeamID, colActorKinds: ev.ActorKind,
		colActorIDs: ev.ActorID, colKinds: ev.Kind, colSubjects: ev.Subject, colOutcomes: ev.Outcome, colTools: ev.Tool,
		colTenants: ev.Tenant}
}

// newAuditBatchArrays sizes every column for batch once, so building the
// literals does not grow them step by step.
func newAuditBatchArrays(batch []pending) *auditBatchArrays {
	var size [13]int
	for i := range batch {
		ev := &batch[i].entry.Event
		for c, s := range texts(ev) {
			size[c] += len(s) + 3 // quotes and separator; escapes are rare
		}
		size[colDetails] += len(ev.Details) + len(ev.Details)/8 + 3
	}
	size[colOccurredAt] = len(batch) * 36
	size[colBillable] = len(batch) * 2
	a := &auditBatchArrays{}
	for c := range a.cols {
		a.cols[c].Grow(size[c] + 2)
	}
	return a
}

// add appends one entry to every column.
func (a *auditBatchArrays) add(e Entry) {
	ev := e.Event
	for i, s := range texts(&ev) {
		if i == colOccurredAt {
			continue
		}
		a.quoted(i, s)
	}
	b := &a.cols[colOccurredAt]
	a.sep(colOccurredAt)
	b.WriteByte('"')
	// Microseconds, truncated, as pgx's binary encoding sent them;
	// PostgreSQL keeps no more.
	var tb [40]byte
	b.Write(ev.OccurredAt.UTC().Truncate(time.Microsecond).AppendFormat(tb[:0], "2006-01-02 15:04:05.999999Z07:00"))
	b.WriteByte('"')
	a.sep(colBillable)
	if e.Billable {
		a.cols[colBillable].WriteByte('t')
	} else {
		a.cols[colBillable].WriteByte('f')
	}
	details := string(ev.Details)
	if details == "" {
		details = "{}"
	}
	a.quoted(colDetails, details)
}

// sep opens the column's literal, or separates this element from the last.
func (a *auditBatchArrays) sep(col int) {
	b := &a.cols[col]
	if b.Len() == 0 {
		b.WriteByte('{')
		return
	}
	b.WriteByte(',')
}

// quoted appends s as a double-quoted array element (array literal syntax:
// backslash escapes a quote or a backslash; everything else is literal).
func (a *auditBatchArrays) quoted(col int, s string) {
	a.sep(col)
	b := &a.cols[col]
	b.WriteByte('"')
	for {
		i := strings.IndexAny(s, `"\`)
		if i < 0 {
			break
		}
		b.WriteString(s[:i])
		b.WriteByte('\\')
		b.WriteByte(s[i])
		s = s[i+1:]
	}
	b.WriteString(s)
	b.WriteByte('"')
}

// literal returns a column's array literal.
func (a *auditBatchArrays) literal(col int) string {
	a.cols[col].WriteByte('}')
	return a.cols[col].String()
}

// recordAuditBatch runs RecordAuditBatch's statement with a's columns.
// enforce false is billing mode off; lowThreshold the low-balance alert
// threshold (migrations/016_billing.sql).
func (q *Queries) recordAuditBatch(ctx context.Context, a *auditBatchArrays, cost int64, now time.Time, enforce bool, lowThreshold int64) ([]bool, error) {
	row := q.db.QueryRow(ctx, recordAuditBatch,
		a.literal(colIDs), a.literal(colOrgIDs), a.literal(colTeamIDs), a.literal(colOccurredAt),
		a.literal(colActorKinds), a.literal(colActorIDs), a.literal(colKinds), a.literal(colSubjects),
		a.literal(colOutcomes), a.literal(colTools), a.literal(colTenants), a.literal(colBillable),
		a.literal(colDetails), cost, now, enforce, lowThreshold)
	var charged []bool
	err := row.Scan(&charged)
	return charged, err
}
