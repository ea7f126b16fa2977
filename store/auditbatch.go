package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// auditBatch is one group commit's parameters to RecordAuditBatch's
// statement, written in PostgreSQL's text format: each column as the array
// literal its $n::type[] parses, the scalars as their text — or, for a
// batch of one entry, to RecordAuditOne's, each column as the entry's value
// in text. They go to the
// server as they are (pgconn's ExecStatement), without pgx's encoding of Go
// values, which boxes every argument and every array element in an
// interface. One auditBatch belongs to each commit slot and is reused by
// its commits, so a commit allocates no buffers once they have grown.
type auditBatch struct {
	cols    [colCount][]byte
	scalars [4][]byte
	// params are cols then scalars, in the statement's parameter order.
	params [colCount + 4][]byte
	// ids are the batch's audit ids, and charged the statement's answer.
	ids     []string
	charged []bool
}

// Columns of auditBatch, in the statement's parameter order.
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
	colCount
)

// maxKeptBatchBuffer bounds what a commit slot keeps between commits: a
// rare batch of large entries should not pin its memory for good.
const maxKeptBatchBuffer = 1 << 20

// texts are an entry's text columns, indexed by column (colOccurredAt is
// not one of them).
func texts(ev *AuditRecord) [colTenants + 1]string {
	return [...]string{colIDs: ev.ID, colOrgIDs: ev.OrgID, colTeamIDs: ev.TeamID, colActorKinds: ev.ActorKind,
		colActorIDs: ev.ActorID, colKinds: ev.Kind, colSubjects: ev.Subject, colOutcomes: ev.Outcome, colTools: ev.Tool,
		colTenants: ev.Tenant}
}

// reset empties the batch for the next commit, dropping buffers that grew
// beyond maxKeptBatchBuffer.
func (a *auditBatch) reset() {
	for c := range a.cols {
		if cap(a.cols[c]) > maxKeptBatchBuffer {
			a.cols[c] = nil
		}
		a.cols[c] = a.cols[c][:0]
	}
	for i := range a.scalars {
		a.scalars[i] = a.scalars[i][:0]
	}
	clear(a.ids)
	a.ids = a.ids[:0]
	a.charged = a.charged[:0]
}

// one writes the batch's only entry as RecordAuditOne's parameters (text,
// unquoted; finishOne completes them).
func (a *auditBatch) one(e *Entry) {
	ev := &e.Event
	a.ids = append(a.ids, ev.ID)
	for i, s := range texts(ev) {
		if i != colOccurredAt {
			a.cols[i] = append(a.cols[i], s...)
		}
	}
	a.cols[colOccurredAt] = appendTimestamp(a.cols[colOccurredAt], ev.OccurredAt)
	a.cols[colBillable] = append(a.cols[colBillable], boolText(e.Billable)...)
	if len(ev.Details) == 0 {
		a.cols[colDetails] = append(a.cols[colDetails], "{}"...)
	} else {
		a.cols[colDetails] = append(a.cols[colDetails], ev.Details...)
	}
}

// appendTimestamp appends t in timestamptz's text format, truncated to the
// microsecond as pgx's binary encoding sent it (PostgreSQL keeps no more,
// and would round the text's nanoseconds).
func appendTimestamp(b []byte, t time.Time) []byte {
	return t.UTC().Truncate(time.Microsecond).AppendFormat(b, "2006-01-02 15:04:05.999999Z07:00")
}

// add appends one entry to every column.
func (a *auditBatch) add(e *Entry) {
	ev := &e.Event
	a.ids = append(a.ids, ev.ID)
	for i, s := range texts(ev) {
		if i == colOccurredAt {
			continue
		}
		a.quoted(i, s)
	}
	a.sep(colOccurredAt)
	b := append(a.cols[colOccurredAt], '"')
	a.cols[colOccurredAt] = append(appendTimestamp(b, ev.OccurredAt), '"')
	a.sep(colBillable)
	a.cols[colBillable] = append(a.cols[colBillable], boolText(e.Billable)...)
	details := string(ev.Details)
	if details == "" {
		details = "{}"
	}
	a.quoted(colDetails, details)
}

func boolText(v bool) string {
	if v {
		return "t"
	}
	return "f"
}

// sep opens the column's literal, or separates this element from the last.
func (a *auditBatch) sep(col int) {
	if len(a.cols[col]) == 0 {
		a.cols[col] = append(a.cols[col], '{')
		return
	}
	a.cols[col] = append(a.cols[col], ',')
}

// quoted appends s as a double-quoted array element (array literal syntax:
// backslash escapes a quote or a backslash; everything else is literal).
func (a *auditBatch) quoted(col int, s string) {
	a.sep(col)
	b := append(a.cols[col], '"')
	for {
		i := strings.IndexAny(s, `"\`)
		if i < 0 {
			break
		}
		b = append(b, s[:i]...)
		b = append(b, '\\', s[i])
		s = s[i+1:]
	}
	b = append(b, s...)
	a.cols[col] = append(b, '"')
}

// finish closes the column literals and writes the scalar parameters: cost,
// now, enforce (false is billing mode off) and the low-balance alert
// threshold (migrations/016_billing.sql).
func (a *auditBatch) finish(cost int64, now time.Time, enforce bool, lowThreshold int64) [][]byte {
	for c := range a.cols {
		a.cols[c] = append(a.cols[c], '}')
	}
	return a.finishOne(cost, now, enforce, lowThreshold)
}

// finishOne writes the scalar parameters as finish does, after columns
// that need no closing (one's).
func (a *auditBatch) finishOne(cost int64, now time.Time, enforce bool, lowThreshold int64) [][]byte {
	for c := range a.cols {
		a.params[c] = a.cols[c]
		if a.params[c] == nil {
			a.params[c] = []byte{} // the empty text; nil would be NULL
		}
	}
	a.scalars[0] = strconv.AppendInt(a.scalars[0], cost, 10)
	a.scalars[1] = appendTimestamp(a.scalars[1], now)
	a.scalars[2] = append(a.scalars[2], boolText(enforce)...)
	a.scalars[3] = strconv.AppendInt(a.scalars[3], lowThreshold, 10)
	for i, s := range a.scalars {
		a.params[colCount+i] = s
	}
	return a.params[:]
}

// The names of RecordAuditBatch's and RecordAuditOne's statements on each
// connection the recorder commits on.
const (
	recordAuditBatchStatement = "oakallow_record_audit_batch"
	recordAuditOneStatement   = "oakallow_record_audit_one"
)

// recordAuditBatch runs RecordAuditBatch's statement — RecordAuditOne's for
// a batch of one entry, written by one — with a's parameters on a
// connection of the pool, and returns whether each entry was charged
// (a.charged). The statement is prepared once per connection; its
// parameters and its answer travel in text format.
func (s *Store) recordAuditBatch(ctx context.Context, a *auditBatch, params [][]byte) ([]bool, error) {
	conn, err := s.Pool.Acquire(ctx)
	if err != nil {
		return nil, translateErr(fmt.Errorf("acquire: %w", err))
	}
	defer conn.Release()
	name, sql := recordAuditBatchStatement, recordAuditBatch
	if len(a.ids) == 1 {
		name, sql = recordAuditOneStatement, recordAuditOne
	}
	sd, err := conn.Conn().Prepare(ctx, name, sql)
	if err != nil {
		return nil, translateErr(fmt.Errorf("prepare: %w", err))
	}
	rr := conn.Conn().PgConn().ExecStatement(ctx, sd, params, nil, nil)
	var parseErr error
	rows := 0
	for rr.NextRow() {
		rows++
		if len(a.ids) == 1 {
			a.charged, parseErr = appendBool(a.charged[:0], rr.Values()[0])
		} else {
			a.charged, parseErr = appendBoolArray(a.charged[:0], rr.Values()[0])
		}
	}
	if _, err := rr.Close(); err != nil {
		return nil, translateErr(err)
	}
	if rows != 1 {
		return nil, fmt.Errorf("audit batch answered %d rows", rows)
	}
	if parseErr != nil {
		return nil, parseErr
	}
	return a.charged, nil
}

// appendBool appends a boolean in PostgreSQL's text format ("t") to dst.
func appendBool(dst []bool, text []byte) ([]bool, error) {
	switch string(text) {
	case "t":
		return append(dst, true), nil
	case "f":
		return append(dst, false), nil
	}
	return dst, fmt.Errorf("audit commit answer %q is not a boolean", text)
}

// appendBoolArray appends the elements of a boolean[] in PostgreSQL's text
// format ("{t,f}") to dst.
func appendBoolArray(dst []bool, text []byte) ([]bool, error) {
	if len(text) < 2 || text[0] != '{' || text[len(text)-1] != '}' {
		return dst, errors.New("audit batch answer is not a boolean array")
	}
	body := text[1 : len(text)-1]
	if len(body) == 0 {
		return dst, nil
	}
	for i := 0; ; i += 2 {
		switch {
		case i < len(body) && body[i] == 't':
			dst = append(dst, true)
		case i < len(body) && body[i] == 'f':
			dst = append(dst, false)
		default:
			return dst, fmt.Errorf("audit batch answer %q is not a boolean array", text)
		}
		if i+1 == len(body) {
			return dst, nil
		}
		if body[i+1] != ',' {
			return dst, fmt.Errorf("audit batch answer %q is not a boolean array", text)
		}
	}
}
