package web

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/api/runtime"
)

// fakeAPI answers the two calls a live queue makes: the person's orgs and
// the pending approvals, which the test changes.
type fakeAPI struct {
	pending atomic.Value // []runtime.Approval
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/v1/orgs":
		_, _ = w.Write([]byte(`{"items":[{"id":"org_one"}]}`))
	case "/v1/approvals":
		_ = json.NewEncoder(w).Encode(map[string]any{"items": f.pending.Load()})
	default:
		http.NotFound(w, r)
	}
}

// TestLiveQueueWakesOnChange: with polling too slow to matter, a change
// notification of the queue's org makes the open stream send the new
// queue; one of another org does not.
func TestLiveQueueWakesOnChange(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{}
	api.pending.Store([]runtime.Approval{})
	d, err := New(Config{API: api, LivePoll: time.Hour, LiveMax: 2 * time.Hour})
	require.NoError(t, err)
	mux := http.NewServeMux()
	d.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(d.Stop)

	resp, err := http.Get(srv.URL + "/approvals/events")
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	events := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		var ev strings.Builder
		for sc.Scan() {
			if sc.Text() == "" {
				events <- ev.String()
				ev.Reset()
				continue
			}
			ev.WriteString(sc.Text() + "\n")
		}
		close(events)
	}()
	next := func() string {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(30 * time.Second):
			t.Fatal("no event from the live queue")
			return ""
		}
	}
	require.Contains(t, next(), "Nothing is waiting for a decision.")

	api.pending.Store([]runtime.Approval{{ID: "apr_1", Reference: "REF-AAAAAAAA-BBBB", Tool: "send_email", Level: 1, Levels: 1,
		ExpiresAt: time.Now().Add(time.Hour)}})
	d.ApprovalsChanged("org_other")
	select {
	case ev := <-events:
		t.Fatalf("another org's change woke the queue: %s", ev)
	case <-time.After(200 * time.Millisecond):
	}
	d.ApprovalsChanged("org_one")
	require.Contains(t, next(), "REF-AAAAAAAA-BBBB")
}

func TestHubWakesOnce(t *testing.T) {
	t.Parallel()
	var h hub
	a, unsubA := h.subscribe("org_a")
	any, unsubAny := h.subscribe("")
	defer unsubAny()
	h.publish("org_a")
	h.publish("org_a") // folded into the pending wake-up
	require.Len(t, a, 1)
	require.Len(t, any, 1)
	<-a
	<-any
	h.publish("org_b")
	require.Len(t, a, 0)
	require.Len(t, any, 1)
	<-any
	h.publish("")
	require.Len(t, a, 1)
	unsubA()
	h.mu.Lock()
	_, left := h.subs["org_a"]
	h.mu.Unlock()
	require.False(t, left)
}
