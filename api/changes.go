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
// (store query NotifyChange): payload "keys" or "policy:<org id>".
const changesChannel = "oakallow_changes"

// changeHandler applies change notifications to the caches. It is also a
// pgxlisten.BacklogHandler: every time the listener (re)connects it reloads
// everything, since notifications sent while disconnected are lost.
type changeHandler struct{ s *Server }

func (h changeHandler) HandleNotification(ctx context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	return h.s.applyChange(ctx, n.Payload)
}

func (h changeHandler) HandleBacklog(ctx context.Context, _ string, _ *pgx.Conn) error {
	return h.s.reloadAll(ctx)
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

func (s *Server) applyChange(ctx context.Context, payload string) error {
	switch {
	case payload == "keys":
		return s.keys.Reload(ctx)
	default:
		return s.applyPolicyChange(ctx, payload)
	}
}

func (s *Server) reloadAll(ctx context.Context) error {
	return errors.Join(s.keys.Reload(ctx), s.reloadPolicies(ctx))
}
