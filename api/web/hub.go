package web

import "sync"

// hub wakes the live approval streams of an org when its approvals change.
// It carries no data: a woken stream asks the API again with its own
// session, so a wake-up can tell nobody anything they may not read.
type hub struct {
	mu sync.Mutex
	// subs maps an org id ("" for streams whose org is not known: they wake
	// for every org) to its streams' wake-up channels.
	subs map[string]map[chan struct{}]struct{}
}

// subscribe returns a channel that receives (at most one pending) wake-up
// whenever org's approvals change, and the function that unsubscribes.
func (h *hub) subscribe(org string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[string]map[chan struct{}]struct{}{}
	}
	if h.subs[org] == nil {
		h.subs[org] = map[chan struct{}]struct{}{}
	}
	h.subs[org][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[org], ch)
		if len(h.subs[org]) == 0 {
			delete(h.subs, org)
		}
		h.mu.Unlock()
	}
}

// publish wakes the streams of org and those whose org is unknown; an
// empty org wakes every stream (notifications may have been lost).
func (h *hub) publish(org string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	wake := func(set map[chan struct{}]struct{}) {
		for ch := range set {
			select {
			case ch <- struct{}{}:
			default: // a wake-up is already pending
			}
		}
	}
	if org == "" {
		for _, set := range h.subs {
			wake(set)
		}
		return
	}
	wake(h.subs[org])
	wake(h.subs[""])
}

// ApprovalsChanged wakes the open approval queues of the org (every queue
// when orgID is ""): the API calls it for each change notification of
// PostgreSQL (LISTEN/NOTIFY), whichever replica or worker made the change.
func (d *Dashboard) ApprovalsChanged(orgID string) { d.hub.publish(orgID) }
