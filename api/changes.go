package api

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"
)

// changesChannel is the NOTIFY channel on which writers announce changes
// (store queries NotifyChange, NotifyPolicyChange): payload "keys",
// "policy:<org id>:<transaction id>" or "policy:<org id>".
const changesChannel = "oakallow_changes"

// changeHandler applies change notifications to the caches. It is also a
// pgxlisten.BacklogHandler: every time the listener (re)connects it reloads
// everything, since notifications sent while disconnected are lost.
//
// It never waits for a reload: it only asks the key cache's and the org's
// loader for one, so the listener reads the next notification at once. A
// key revocation is therefore applied no later than any policy change
// queued before it, and no org's slow load delays another org or the keys.
type changeHandler struct{ s *Server }

func (h changeHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	return h.s.applyChange(n.Payload)
}

func (h changeHandler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	h.s.keys.RequestReload()
	h.s.policies.RefreshAll()
	return nil
}

// listenForChanges runs until ctx ends, reconnecting after a second when
// the connection drops.
func (s *Server) listenForChanges(ctx context.Context) {
	l := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			c, err := s.deps.Store.Pool.Acquire(ctx)
			if err != nil {
				return nil, err
			}
			return c.Hijack(), nil
		},
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				s.log.Warn("change listener", "err", err)
			}
		},
		ReconnectDelay: time.Second,
	}
	l.Handle(changesChannel, changeHandler{s})
	if err := l.Listen(ctx); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Error("change listener stopped", "err", err)
	}
}

func (s *Server) applyChange(payload string) error {
	if payload == "keys" {
		s.keys.RequestReload()
		return nil
	}
	return s.applyPolicyChange(payload)
}
