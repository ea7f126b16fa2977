package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"oakallow/activities/sealed"
	"oakallow/dev/devtest"
	"oakallow/store"
)

func newSealedBox(t *testing.T, previous ...[]byte) (*sealed.Box, []byte) {
	t.Helper()
	spec, err := sealed.NewKey()
	require.NoError(t, err)
	key, err := sealed.ParseKey(spec)
	require.NoError(t, err)
	box, err := sealed.NewBox(key, previous...)
	require.NoError(t, err)
	return box, key
}

// Migration 013 seals what older versions stored in clear — execution
// tokens, org webhook secrets, idempotent answers — refusing without the
// key; Reseal then moves every sealed value to a new key.
func TestSealStoredSecretsAndReseal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := devtest.EmptyDatabase(t)
	require.NoError(t, store.MigrateBefore(ctx, url, store.SealSecretsMigration))
	before, err := store.Status(ctx, url)
	require.NoError(t, err)

	// What an older binary stored: more tokens than one page of the rewrite.
	const tokens = 1203
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `
INSERT INTO teams (id, name, created_at) VALUES ('team_1', 't', now());
INSERT INTO orgs (id, team_id, name, webhook_url, webhook_secret, webhook_secret_previous, created_at, updated_at)
VALUES ('org_1', 'team_1', 'a', 'https://h.example', 'whsec_current_clear', 'whsec_previous_clear', now(), now()),
       ('org_2', 'team_1', 'b', '', '', '', now(), now());
INSERT INTO execution_tokens (id, org_id, source_kind, source_id, token, token_hash, nonce, tool_name, key_id, issued_at, expires_at)
SELECT 'tok_' || lpad(i::text, 5, '0'), 'org_1', 'check', 'chk_' || i, 'oak_tok_clear_' || i, 'h' || i, 'n' || i, 'tool', 'k1', now(), now()
FROM generate_series(1, 1203) AS i;
INSERT INTO idempotency_keys (principal_id, key, request_hash, status_code, response, created_at) VALUES
  ('key_1', 'rotate-1', 'h', 200, '\x70'::bytea || convert_to('{"status":200,"body":{"secret":"whsec_in_answer"}}', 'UTF8'), now()),
  ('key_1', 'running', 'h', 0, '\x'::bytea, now());`)
	require.NoError(t, err)

	// Without the key: refused, nothing changed, and the operator is told why.
	_, err = store.Migrate(ctx, url)
	require.ErrorContains(t, err, "OAKALLOW_SECRET_KEY")
	require.ErrorContains(t, err, fmt.Sprintf("%d for execution_tokens.token_sealed", tokens))
	require.ErrorContains(t, err, "1 for orgs.webhook_secret_previous_sealed")
	require.ErrorContains(t, err, "1 for idempotency_keys.response")
	require.NotContains(t, err.Error(), "clear_")
	status, err := store.Status(ctx, url)
	require.NoError(t, err)
	require.Equal(t, before.Current, status.Current)

	oldBox, oldKey := newSealedBox(t)
	status, err = store.Migrate(ctx, url, store.SealWith(oldBox))
	require.NoError(t, err)
	require.False(t, status.Pending())

	// Nothing in clear is left, and everything opens where it belongs.
	for table, where := range map[string]string{
		"execution_tokens": "strpos(t::text, 'oak_tok_') > 0",
		"orgs":             "strpos(t::text, 'whsec_') > 0",
		"idempotency_keys": "position(convert_to('whsec_', 'UTF8') in t.response) > 0",
	} {
		var n int
		require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM `+table+` t WHERE `+where).Scan(&n))
		require.Zero(t, n, "%s still holds a secret in clear", table)
	}
	requireOpens := func(t *testing.T, box *sealed.Box) {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT id, token_sealed FROM execution_tokens ORDER BY id`)
		require.NoError(t, err)
		n := 0
		for rows.Next() {
			var id string
			var ct []byte
			require.NoError(t, rows.Scan(&id, &ct))
			pt, err := box.Open(ct, store.ExecutionTokenAAD(id))
			require.NoError(t, err, id)
			n++
			require.Equal(t, fmt.Sprintf("oak_tok_clear_%d", n), string(pt))
		}
		require.NoError(t, rows.Err())
		require.Equal(t, tokens, n)
		var cur, prev, empty []byte
		require.NoError(t, conn.QueryRow(ctx, `SELECT a.webhook_secret_sealed, a.webhook_secret_previous_sealed, b.webhook_secret_sealed
			FROM orgs a, orgs b WHERE a.id = 'org_1' AND b.id = 'org_2'`).Scan(&cur, &prev, &empty))
		require.Empty(t, empty, "no secret stays no secret")
		for ct, want := range map[string]string{string(cur): "whsec_current_clear", string(prev): "whsec_previous_clear"} {
			pt, err := box.Open([]byte(ct), store.OrgWebhookSecretAAD("org_1"))
			require.NoError(t, err)
			require.Equal(t, want, string(pt))
		}
		var answer, running []byte
		require.NoError(t, conn.QueryRow(ctx, `SELECT a.response, b.response FROM idempotency_keys a, idempotency_keys b
			WHERE a.key = 'rotate-1' AND b.key = 'running'`).Scan(&answer, &running))
		require.Empty(t, running, "a claim without an answer is left alone")
		require.Equal(t, store.IdempotencyAnswerSealed, answer[0])
		pt, err := box.Open(answer[1:], store.IdempotencyAnswerAAD("key_1", "rotate-1"))
		require.NoError(t, err)
		require.JSONEq(t, `{"status":200,"body":{"secret":"whsec_in_answer"}}`, string(pt))
	}
	requireOpens(t, oldBox)
	var clearColumns int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns
		WHERE (table_name, column_name) IN (('execution_tokens', 'token'), ('orgs', 'webhook_secret'), ('orgs', 'webhook_secret_previous'))`).Scan(&clearColumns))
	require.Zero(t, clearColumns)

	// A rotation: the new key with the old one as previous reseals all…
	st, err := store.Open(ctx, store.Config{URL: url})
	require.NoError(t, err)
	defer st.Close()
	rotating, newKey := newSealedBox(t, oldKey)
	rep, err := st.Reseal(ctx, rotating)
	require.NoError(t, err)
	resealed := map[string]int{}
	for _, c := range rep.Columns {
		require.Equal(t, c.Values, c.Resealed, c.Column)
		resealed[c.Column] = c.Resealed
	}
	require.Equal(t, map[string]int{"notification_channels.secret_ciphertext": 0, "orgs.webhook_secret_sealed": 1,
		"orgs.webhook_secret_previous_sealed": 1, "execution_tokens.token_sealed": tokens, "idempotency_keys.response": 1}, resealed)
	// …so the new key alone opens everything, and a second run finds nothing to do.
	newOnly, err := sealed.NewBox(newKey)
	require.NoError(t, err)
	requireOpens(t, newOnly)
	rep, err = st.Reseal(ctx, rotating)
	require.NoError(t, err)
	for _, c := range rep.Columns {
		require.Zero(t, c.Resealed, c.Column)
	}

	// A value sealed under a key Reseal was not given is named and left
	// as it is; the rest is still visited.
	foreign, _ := newSealedBox(t)
	ct, err := foreign.Seal([]byte("oak_tok_foreign"), store.ExecutionTokenAAD("tok_00007"))
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `UPDATE execution_tokens SET token_sealed = $1 WHERE id = 'tok_00007'`, ct)
	require.NoError(t, err)
	rep, err = st.Reseal(ctx, newOnly)
	require.ErrorIs(t, err, store.ErrUnopenable)
	require.Equal(t, []string{"execution_tokens.token_sealed tok_00007"}, rep.Unopenable)
	require.Len(t, rep.Columns, 5)
	for _, c := range rep.Columns {
		if strings.HasPrefix(c.Column, "execution_tokens") {
			require.Equal(t, tokens, c.Values)
		}
	}
}
