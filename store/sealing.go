package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

// Secrets at rest. Every secret oakallow must read back — a notification
// channel's credential, an org's webhook signing secrets, an execution
// token (handed out again by GET /v1/approvals/{id} and idempotent mints),
// a stored idempotent answer that may hold one of those — is stored sealed
// by the server's secret key (package activities/sealed), bound to its row
// by the additional data below, so a value copied into another row does
// not open. The store never sees the key: callers seal and open; the
// migration that sealed what older versions stored in clear, and the
// re-encryption after a key rotation, get a Sealer or a Resealer.

// Sealer encrypts plaintext bound to aad (sealed.Box).
type Sealer interface {
	Seal(plaintext []byte, aad string) ([]byte, error)
}

// Resealer returns a sealed value sealed under the current key, and whether
// that changed it (sealed.Box).
type Resealer interface {
	Reseal(ciphertext []byte, aad string) ([]byte, bool, error)
}

// ChannelSecretAAD binds a notification channel's sealed credential
// (notification_channels.secret_ciphertext) to the channel.
func ChannelSecretAAD(channelID string) string { return "channel:" + channelID }

// ExecutionTokenAAD binds a sealed execution token (execution_tokens.token_sealed)
// to its row.
func ExecutionTokenAAD(tokenID string) string { return "execution_token:" + tokenID }

// OrgWebhookSecretAAD binds an org's sealed webhook signing secrets
// (orgs.webhook_secret_sealed and webhook_secret_previous_sealed; one
// binding for both, so a rotation moves the current one to previous in SQL)
// to the org.
func OrgWebhookSecretAAD(orgID string) string { return "org_webhook_secret:" + orgID }

// IdempotencyAnswerAAD binds a stored idempotent answer to its caller's key
// id and Idempotency-Key.
func IdempotencyAnswerAAD(principalID, key string) string {
	return "idempotency:" + principalID + ":" + key
}

// IdempotencyAnswerSealed is the first byte of a stored idempotent answer
// (idempotency_keys.response); the sealed answer follows. Versions before
// migration 013 could also store answers in clear behind a 'p'.
const IdempotencyAnswerSealed byte = 's'

// sealedColumn is a column holding sealed values (or, for migration 013,
// clear values to seal): its table's primary key columns (text), the SQL
// expression read (as bytea), the column written, which rows hold a value,
// the additional data of a row, and the bytes before the value as read
// (strip) and as written (mark) — stored idempotent answers start with a
// format byte.
type sealedColumn struct {
	table       string
	keys        []string
	source      string
	target      string
	filter      string
	aad         func(key []string) string
	strip, mark []byte
}

func (c sealedColumn) String() string { return c.table + "." + c.target }

// apply returns a rewriteColumn function that passes f a row's additional
// data and its value without c.strip, and writes what f changed behind
// c.mark.
func (c sealedColumn) apply(f func(aad string, value []byte) ([]byte, bool, error)) func([]string, []byte) ([]byte, bool, error) {
	return func(key []string, value []byte) ([]byte, bool, error) {
		inner, ok := bytes.CutPrefix(value, c.strip)
		if !ok {
			return nil, false, fmt.Errorf("%w: does not start with %q", errSkipValue, c.strip)
		}
		out, changed, err := f(c.aad(key), inner)
		if err != nil || !changed {
			return nil, false, err
		}
		return append(append([]byte{}, c.mark...), out...), true, nil
	}
}

func byID(aad func(string) string) func([]string) string {
	return func(k []string) string { return aad(k[0]) }
}

// sealedColumns are every column of sealed values, as Reseal visits them.
var sealedColumns = []sealedColumn{
	{table: "notification_channels", keys: []string{"id"}, source: "secret_ciphertext", target: "secret_ciphertext",
		filter: "length(secret_ciphertext) > 0", aad: byID(ChannelSecretAAD)},
	{table: "orgs", keys: []string{"id"}, source: "webhook_secret_sealed", target: "webhook_secret_sealed",
		filter: "length(webhook_secret_sealed) > 0", aad: byID(OrgWebhookSecretAAD)},
	{table: "orgs", keys: []string{"id"}, source: "webhook_secret_previous_sealed", target: "webhook_secret_previous_sealed",
		filter: "length(webhook_secret_previous_sealed) > 0", aad: byID(OrgWebhookSecretAAD)},
	{table: "execution_tokens", keys: []string{"id"}, source: "token_sealed", target: "token_sealed",
		filter: "true", aad: byID(ExecutionTokenAAD)},
	{table: "idempotency_keys", keys: []string{"principal_id", "key"}, source: "response", target: "response",
		filter: `status_code <> 0 AND substr(response, 1, 1) = '\x73'::bytea`,
		strip:  []byte{IdempotencyAnswerSealed}, mark: []byte{IdempotencyAnswerSealed},
		aad: func(k []string) string { return IdempotencyAnswerAAD(k[0], k[1]) }},
}

// rewritePage is how many rows one statement reads and writes.
const rewritePage = 500

// rewriteColumn visits c's rows in key order, a page at a time, and writes
// back the values fn changed. Each page runs in a transaction from inTx and
// locks its rows while they are rewritten. fn gets a row's key and value
// and returns the new value and whether it changed; an error wrapping
// errSkipValue leaves the row as it is, any other error stops the rewrite.
// It returns how many rows it visited and changed, and the keys of the
// rows skipped.
func rewriteColumn(ctx context.Context, inTx func(context.Context, func(DBTX) error) error, c sealedColumn,
	fn func(key []string, value []byte) ([]byte, bool, error)) (visited, changed int, skipped []string, err error) {
	keyList := strings.Join(c.keys, ", ")
	params := make([]string, len(c.keys))
	unnest := make([]string, len(c.keys))
	match := make([]string, len(c.keys))
	for i, k := range c.keys {
		params[i] = fmt.Sprintf("$%d::text", i+1)
		unnest[i] = fmt.Sprintf("$%d::text[]", i+1)
		match[i] = fmt.Sprintf("t.%s = v.k%d", k, i)
	}
	selectFirst := fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s ORDER BY %s LIMIT %d FOR UPDATE",
		keyList, c.source, c.table, c.filter, keyList, rewritePage)
	selectNext := fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s AND (%s) > (%s) ORDER BY %s LIMIT %d FOR UPDATE",
		keyList, c.source, c.table, c.filter, keyList, strings.Join(params, ", "), keyList, rewritePage)
	aliases := make([]string, len(c.keys))
	for i := range aliases {
		aliases[i] = fmt.Sprintf("k%d", i)
	}
	update := fmt.Sprintf("UPDATE %s AS t SET %s = v.val FROM unnest(%s, $%d::bytea[]) AS v(%s, val) WHERE %s",
		c.table, c.target, strings.Join(unnest, ", "), len(c.keys)+1, strings.Join(aliases, ", "), strings.Join(match, " AND "))

	var last []string
	for {
		n := 0
		err := inTx(ctx, func(db DBTX) error {
			var rows pgx.Rows
			var err error
			if last == nil {
				rows, err = db.Query(ctx, selectFirst)
			} else {
				args := make([]any, len(last))
				for i, k := range last {
					args[i] = k
				}
				rows, err = db.Query(ctx, selectNext, args...)
			}
			if err != nil {
				return err
			}
			keys := make([][]string, len(c.keys))
			var values [][]byte
			for rows.Next() {
				key := make([]string, len(c.keys))
				var value []byte
				dest := make([]any, 0, len(c.keys)+1)
				for i := range key {
					dest = append(dest, &key[i])
				}
				if err := rows.Scan(append(dest, &value)...); err != nil {
					rows.Close()
					return err
				}
				n++
				last = key
				out, did, err := fn(key, value)
				if errors.Is(err, errSkipValue) {
					skipped = append(skipped, strings.Join(key, "/"))
					continue
				}
				if err != nil {
					rows.Close()
					return fmt.Errorf("%s %s: %w", c, strings.Join(key, "/"), err)
				}
				if did {
					for i := range key {
						keys[i] = append(keys[i], key[i])
					}
					values = append(values, out)
				}
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if len(values) == 0 {
				return nil
			}
			args := make([]any, 0, len(keys)+1)
			for _, k := range keys {
				args = append(args, k)
			}
			if _, err := db.Exec(ctx, update, append(args, values)...); err != nil {
				return err
			}
			changed += len(values)
			return nil
		})
		if err != nil {
			return visited, changed, skipped, fmt.Errorf("rewrite %s: %w", c, err)
		}
		visited += n
		if n < rewritePage {
			return visited, changed, skipped, nil
		}
	}
}

// errSkipValue marks a value rewriteColumn's fn leaves as it is.
var errSkipValue = errors.New("value skipped")

// ResealReport is what Reseal did, per column ("table.column").
type ResealReport struct {
	// Columns lists each column's count of values visited and resealed.
	Columns []ResealCount
	// Unopenable names the rows ("table.column key") whose value opens
	// with no key of the Resealer; they were left as they were.
	Unopenable []string
}

// ResealCount is one column's part of a ResealReport.
type ResealCount struct {
	Column   string
	Values   int
	Resealed int
}

// Reseal seals every stored secret under r's current key: a value only a
// previous key opens is sealed anew, one the current key opens is left
// alone. It runs beside live servers (each page of rows is locked while it
// is rewritten) and can be run again at any time. A value no key opens is
// listed in the report and left as it was; Reseal then still visits the
// rest and returns the report with ErrUnopenable.
func (s *Store) Reseal(ctx context.Context, r Resealer) (ResealReport, error) {
	inTx := func(ctx context.Context, fn func(DBTX) error) error {
		return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error { return fn(tx) })
	}
	var rep ResealReport
	for _, c := range sealedColumns {
		visited, changed, skipped, err := rewriteColumn(ctx, inTx, c, c.apply(func(aad string, value []byte) ([]byte, bool, error) {
			out, did, err := r.Reseal(value, aad)
			if err != nil {
				return nil, false, fmt.Errorf("%w: %w", errSkipValue, err)
			}
			return out, did, nil
		}))
		if err != nil {
			return rep, err
		}
		rep.Columns = append(rep.Columns, ResealCount{Column: c.String(), Values: visited, Resealed: changed})
		for _, k := range skipped {
			rep.Unopenable = append(rep.Unopenable, c.String()+" "+k)
		}
	}
	if len(rep.Unopenable) > 0 {
		return rep, ErrUnopenable
	}
	return rep, nil
}

// ErrUnopenable: Reseal found values that open with no key it was given.
var ErrUnopenable = errors.New("some stored secrets open with neither the current nor a previous key")

// sealSecretsMigration is the migration whose body sealStoredSecrets runs.
const sealSecretsMigration = "013_seal_secrets.sql"

// sealHere splits migration 013's statements: those before run first, then
// the values are sealed, then those after run.
const sealHere = "-- oakallow: seal here"

// clearColumns are what migration 013 seals: the clear values an older
// version stored, each into its sealed column.
var clearColumns = []sealedColumn{
	{table: "execution_tokens", keys: []string{"id"}, source: "convert_to(token, 'UTF8')", target: "token_sealed",
		filter: "token_sealed IS NULL", aad: byID(ExecutionTokenAAD)},
	{table: "orgs", keys: []string{"id"}, source: "convert_to(webhook_secret, 'UTF8')", target: "webhook_secret_sealed",
		filter: "webhook_secret <> ''", aad: byID(OrgWebhookSecretAAD)},
	{table: "orgs", keys: []string{"id"}, source: "convert_to(webhook_secret_previous, 'UTF8')", target: "webhook_secret_previous_sealed",
		filter: "webhook_secret_previous <> ''", aad: byID(OrgWebhookSecretAAD)},
	{table: "idempotency_keys", keys: []string{"principal_id", "key"}, source: "response", target: "response",
		filter: `status_code <> 0 AND substr(response, 1, 1) = '\x70'::bytea`,
		strip:  []byte{'p'}, mark: []byte{IdempotencyAnswerSealed},
		aad: func(k []string) string { return IdempotencyAnswerAAD(k[0], k[1]) }},
}

// sealStoredSecrets is migration 013: it runs the migration's statements
// (upSQL) around sealing every value in clearColumns with sealer, in the
// migration's transaction. With a nil sealer it refuses when there is
// anything to seal, naming how much, and changes nothing.
func sealStoredSecrets(upSQL string, sealer Sealer) migrate.MigrationFunc {
	return func(ctx context.Context, conn *pgx.Conn) error {
		before, after, ok := strings.Cut(upSQL, sealHere)
		if !ok {
			return fmt.Errorf("%s has no %q line", sealSecretsMigration, sealHere)
		}
		if _, err := conn.Exec(ctx, before); err != nil {
			return err
		}
		inTx := func(ctx context.Context, fn func(DBTX) error) error { return fn(conn) }
		if sealer == nil {
			var counts []string
			for _, c := range clearColumns {
				var n int
				if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+c.table+" WHERE "+c.filter).Scan(&n); err != nil {
					return fmt.Errorf("count %s: %w", c, err)
				}
				if n > 0 {
					counts = append(counts, fmt.Sprintf("%d for %s", n, c))
				}
			}
			if len(counts) > 0 {
				return fmt.Errorf("%s seals the secrets an older version stored in clear (%s) and needs the secret key "+
					"for that: set OAKALLOW_SECRET_KEY to the key serve and worker will run with, and migrate again",
					sealSecretsMigration, strings.Join(counts, ", "))
			}
		} else {
			for _, c := range clearColumns {
				_, _, skipped, err := rewriteColumn(ctx, inTx, c, c.apply(func(aad string, value []byte) ([]byte, bool, error) {
					out, err := sealer.Seal(value, aad)
					return out, err == nil, err
				}))
				if err != nil {
					return err
				}
				if len(skipped) > 0 {
					return fmt.Errorf("%s: %d values could not be sealed", c, len(skipped))
				}
			}
		}
		_, err := conn.Exec(ctx, after)
		return err
	}
}
