package web

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"net/http"
	"strconv"
	"time"

	"oakallow/api/runtime"
)

// refreshEvery re-sends an unchanged queue, so its "time left" stays current.
const refreshEvery = 30 * time.Second

// approvalsEvents streams the pending queue as server-sent events: an event
// "queue" carrying the re-rendered queue whenever the pending approvals
// change. A change notification of the org (ApprovalsChanged) makes the
// stream ask the API at once, through the same call the page makes; it
// also asks every LivePoll, so a revoked session or a lost role ends the
// stream with "signed-out".
func (d *Dashboard) approvalsEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // proxies such as nginx would hold the stream back
	w.WriteHeader(http.StatusOK)
	// Subscribed before the first read, so no change after it goes unseen.
	changed, unsubscribe := d.hub.subscribe(d.streamOrg(r))
	defer unsubscribe()
	tick := time.NewTicker(d.cfg.LivePoll)
	defer tick.Stop()
	end := time.NewTimer(d.cfg.LiveMax)
	defer end.Stop()
	var last [32]byte
	var sent time.Time
	for first := true; ; first = false {
		if !first {
			select {
			case <-r.Context().Done():
				return
			case <-d.stopping:
				return
			case <-end.C:
				return
			case <-tick.C:
			case <-changed:
			}
		}
		a, pending, err := d.listApprovals(r, "pending", maxQueue)
		if err != nil {
			d.log.ErrorContext(r.Context(), "live approvals", "err", err)
			return
		}
		if a.problem != nil {
			if a.status == http.StatusUnauthorized || a.status == http.StatusForbidden {
				_, _ = w.Write([]byte("event: signed-out\ndata: \n\n"))
				_ = rc.Flush()
				return
			}
			continue // the database may be back at the next tick
		}
		fp := fingerprint(pending)
		now := d.cfg.Now()
		if fp == last && now.Sub(sent) < refreshEvery {
			continue
		}
		var buf bytes.Buffer
		if err := d.pages["approvals"].ExecuteTemplate(&buf, "queue", queueView{Pending: pending, Now: now}); err != nil {
			d.log.ErrorContext(r.Context(), "render live queue", "err", err)
			return
		}
		if err := writeEvent(w, "queue", buf.Bytes()); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		last, sent = fp, now
	}
}

// streamOrg is the org whose changes wake a live queue: the one selected
// in the dashboard, else the person's only org, else "" (every org's
// changes wake it; each wake-up costs one read).
func (d *Dashboard) streamOrg(r *http.Request) string {
	if org := selectedOrg(r); org != "" {
		return org
	}
	var orgs struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if a, err := d.call(r.Context(), r, http.MethodGet, "/v1/orgs", nil, nil, &orgs); err == nil && a.problem == nil && len(orgs.Items) == 1 {
		return orgs.Items[0].ID
	}
	return ""
}

// fingerprint identifies what the queue shows of each pending approval.
func fingerprint(pending []runtime.Approval) [32]byte {
	h := sha256.New()
	for _, a := range pending {
		h.Write([]byte(a.ID))
		h.Write([]byte{0, byte(a.Level), byte(len(a.Decisions))})
		h.Write([]byte(strconv.FormatInt(a.ExpiresAt.Unix(), 10)))
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// writeEvent writes one server-sent event; every line of data is its own
// data field (the browser joins them with newlines).
func writeEvent(w http.ResponseWriter, name string, data []byte) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("event: " + name + "\n")
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), len(data)+1)
	for sc.Scan() {
		bw.WriteString("data: ")
		bw.Write(sc.Bytes())
		bw.WriteByte('\n')
	}
	bw.WriteString("\n")
	return bw.Flush()
}
