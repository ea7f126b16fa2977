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

// HandleNotification never fails: a notification it cannot read is logged
// here, so every error the listener reports is about its connection (see
// listenForChanges).
func (h changeHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	if err := h.s.applyChange(n.Payload); err != nil {
		h.s.log.Warn("change notification", "err", err)
	}
	return nil
}

func (h changeHandler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	h.s.keys.RequestReload()
	h.s.policies.RefreshAll()
	return nil
}

// approvalsChannel carries the org id of every approval created, decided or
// expired (a trigger on approvals, migration 022): it wakes the dashboard's
// open queues of that org.
const approvalsChannel = "oakallow_approvals"

// approvalsHandler passes approval notifications to the dashboard; after a
// reconnect, when some may have been lost, it wakes every open queue.
type approvalsHandler struct{ s *Server }

func (h approvalsHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	if n.Payload != "" {
		h.s.web.ApprovalsChanged(n.Payload)
	}
	return nil
}

func (h approvalsHandler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	h.s.web.ApprovalsChanged("")
	return nil
}

// creditAlertsChannel carries the team id of every low-balance alert
// recorded (a trigger on credit_alerts, migration 023): it wakes the alert
// sender, on every replica; one of them claims the alert.
const creditAlertsChannel = "oakallow_credit_alerts"

// creditAlertsHandler wakes the alert sender; after a reconnect too, since
// an alert may have been announced while no replica listened.
type creditAlertsHandler struct{ s *Server }

func (h creditAlertsHandler) HandleNotification(context.Context, *pgconn.Notification, *pgx.Conn) error {
	h.s.alerts.Wake()
	return nil
}

func (h creditAlertsHandler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	h.s.alerts.Wake()
	return nil
}

// listenForChanges runs until ctx ends, reconnecting after a second when
// the connection drops. It also carries the session channel: the session
// cache serves only while this connection listens (a lost connection
// suspends it, and it resumes empty once listening again), since a change
// announced in between would never reach it.
func (s *Server) listenForChanges(ctx context.Context) {
	l := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			s.sessions.suspend()
			c, err := s.deps.Store.Pool.Acquire(ctx)
			if err != nil {
				return nil, err
			}
			return c.Hijack(), nil
		},
		LogError: func(ctx context.Context, err error) {
			// The handlers never fail, so this is the connection's end.
			s.sessions.suspend()
			if ctx.Err() == nil {
				s.log.Warn("change listener", "err", err)
			}
		},
		ReconnectDelay: time.Second,
	}
	l.Handle(changesChannel, changeHandler{s})
	l.Handle(sessionChannel, sessionChangeHandler{s.sessions})
	l.Handle(approvalsChannel, approvalsHandler{s})
	l.Handle(creditAlertsChannel, creditAlertsHandler{s})
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
