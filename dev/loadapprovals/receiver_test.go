package main

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/activities/notify"
)

// TestCheckSignature: the receiver accepts what oakallow's sender signs and
// refuses anything SPEC §4 says a receiver must refuse.
func TestCheckSignature(t *testing.T) {
	t.Parallel()
	secret, other := []byte("whsec_current"), []byte("whsec_other")
	body := []byte(`{"id":"evt_1","type":"approval.created"}`)
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name    string
		header  string
		body    []byte
		wantErr string
	}{
		{name: "signed by the sender", header: notify.Sign([][]byte{secret}, now, body), body: body},
		{name: "rotation overlap: second v1 matches", header: notify.Sign([][]byte{other, secret}, now, body), body: body},
		{name: "four minutes old", header: notify.Sign([][]byte{secret}, now.Add(-4*time.Minute), body), body: body},
		{name: "six minutes old", header: notify.Sign([][]byte{secret}, now.Add(-6*time.Minute), body), body: body, wantErr: "from now"},
		{name: "wrong secret", header: notify.Sign([][]byte{other}, now, body), body: body, wantErr: "no v1 matches"},
		{name: "body changed", header: notify.Sign([][]byte{secret}, now, body), body: bytes.Replace(body, []byte("created"), []byte("decided"), 1), wantErr: "no v1 matches"},
		{name: "missing", header: "", body: body, wantErr: "missing"},
		{name: "no v1", header: "t=1800000000", body: body, wantErr: "v1 missing"},
		{name: "two timestamps", header: "t=1,t=2,v1=00", body: body, wantErr: "two timestamps"},
		{name: "malformed", header: "garbage", body: body, wantErr: "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := checkSignature(tc.header, tc.body, secret, now)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

// TestReceiverRecordsFirstArrivalPerEvent: a signed delivery wakes the
// waiter for its REF and event, a redelivery is counted as a duplicate and
// keeps the first arrival time, and a forged one is refused.
func TestReceiverRecordsFirstArrivalPerEvent(t *testing.T) {
	t.Parallel()
	r, err := startReceiver()
	require.NoError(t, err)
	t.Cleanup(r.Close)
	r.SetSecret("whsec_test")

	send := func(secret, delivery string) int {
		body := []byte(`{"id":"evt_1","type":"approval.created","data":{"reference":"REF-AAAAAAAA-BBBB"}}`)
		req, err := http.NewRequest(http.MethodPost, r.URL(), bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-Oakallow-Signature", notify.Sign([][]byte{[]byte(secret)}, time.Now(), body))
		req.Header.Set("X-Oakallow-Event", "approval.created")
		req.Header.Set("X-Oakallow-Delivery", delivery)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}

	_, ok := r.Wait("REF-AAAAAAAA-BBBB", eventCreated, time.Now().Add(20*time.Millisecond))
	require.False(t, ok, "nothing arrived yet")
	done := make(chan time.Time)
	go func() {
		at, ok := r.Wait("REF-AAAAAAAA-BBBB", eventCreated, time.Now().Add(5*time.Second))
		if !ok {
			at = time.Time{}
		}
		done <- at
	}()
	require.Equal(t, http.StatusNoContent, send("whsec_test", "whd_1"))
	first := <-done
	require.False(t, first.IsZero())
	require.Equal(t, http.StatusNoContent, send("whsec_test", "whd_1"))
	require.Equal(t, http.StatusUnauthorized, send("whsec_forged", "whd_2"))

	again, ok := r.Wait("REF-AAAAAAAA-BBBB", eventCreated, time.Now())
	require.True(t, ok)
	require.Equal(t, first, again, "the first arrival is kept")
	st := r.Stats()
	require.Equal(t, 1, st.byType[eventCreated])
	require.Equal(t, 1, st.duplicates)
	require.Len(t, st.rejections, 1)
}

func TestPercentiles(t *testing.T) {
	t.Parallel()
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		name string
		in   []time.Duration
		want []time.Duration
	}{
		{name: "1…100 ms, unsorted", in: d, want: []time.Duration{51 * time.Millisecond, 91 * time.Millisecond, 100 * time.Millisecond}},
		{name: "one value", in: []time.Duration{7 * time.Millisecond}, want: []time.Duration{7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond}},
		{name: "empty", in: nil, want: []time.Duration{0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, percentiles(tc.in, 50, 90, 99))
		})
	}
	require.Equal(t, 100*time.Millisecond, d[0], "the input is not reordered")
}
