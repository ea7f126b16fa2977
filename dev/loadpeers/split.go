package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The split of a check's latency at concurrency 1: the oakallow server
// process times each request at its socket (timedListener) and each
// Recorder.Record (store.RecorderConfig.ObserveRecord), and serves the
// figures of the phase the parent measures on a loopback port of its own
// (serveTimings). Nothing of this is in the product: the listener wrapper
// is this program's, and an unset ObserveRecord reads no clock.

// maxTimings bounds the samples kept per series (a 10 s phase at c=16
// makes about 70,000).
const maxTimings = 1 << 20

// timings are the server process's samples since the last reset.
type timings struct {
	mu             sync.Mutex
	server, record []time.Duration
}

func (t *timings) add(series *[]time.Duration, d time.Duration) {
	t.mu.Lock()
	if len(*series) < maxTimings {
		*series = append(*series, d)
	}
	t.mu.Unlock()
}

func (t *timings) observeRecord(d time.Duration) { t.add(&t.record, d) }

// split summarises the samples so far.
func (t *timings) split() split {
	t.mu.Lock()
	defer t.mu.Unlock()
	return split{Server: summarise(t.server), Record: summarise(t.record)}
}

// splitSeries summarises one series.
type splitSeries struct {
	N    int           `json:"n"`
	P50  time.Duration `json:"p50"`
	Mean time.Duration `json:"mean"`
}

func summarise(s []time.Duration) splitSeries {
	if len(s) == 0 {
		return splitSeries{}
	}
	s = slices.Clone(s)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return splitSeries{N: len(s), P50: s[len(s)/2].Round(time.Microsecond), Mean: (sum / time.Duration(len(s))).Round(time.Microsecond)}
}

// split is what the server process reports for one phase.
type split struct {
	// Server is each request from the first bytes read from its connection
	// to its response written to it: the whole server side, wake-up on
	// arrival excluded.
	Server splitSeries `json:"server"`
	// Record is each Recorder.Record call: the audit commit with the charge
	// (round trip, statement, WAL flush) as the handler waits for it.
	Record splitSeries `json:"record"`
}

// serveTimings serves POST /reset (drop the samples so far) and GET /split
// on ln.
func (t *timings) serveTimings(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, _ *http.Request) {
		t.mu.Lock()
		t.server, t.record = t.server[:0], t.record[:0]
		t.mu.Unlock()
	})
	mux.HandleFunc("GET /split", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(t.split())
	})
	_ = http.Serve(ln, mux)
}

// monoStart anchors the monotonic clock readings the connections keep.
var monoStart = time.Now()

func monoNow() int64 { return int64(time.Since(monoStart)) }

// timedListener times every request of every connection it accepts.
type timedListener struct {
	net.Listener
	t *timings
}

func (l timedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &timedConn{Conn: c, t: l.t}, nil
}

// timedConn takes a request's start as the first read that returns bytes
// after the previous response was written, and its end as the next write
// (a check's response is one write). Reads and writes may come from
// different goroutines (net/http's background read), hence the atomic.
type timedConn struct {
	net.Conn
	t     *timings
	start atomic.Int64 // monoNow of the request's first bytes; 0 between requests
}

func (c *timedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.start.Load() == 0 {
		c.start.Store(monoNow())
	}
	return n, err
}

func (c *timedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if s := c.start.Swap(0); s != 0 {
		c.t.add(&c.t.server, time.Duration(monoNow()-s))
	}
	return n, err
}

// resetSplit and fetchSplit are the parent's side.
func resetSplit(c *http.Client, base string) error {
	resp, err := c.Post(base+"/reset", "", nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func fetchSplit(c *http.Client, base string) (split, error) {
	resp, err := c.Get(base + "/split")
	if err != nil {
		return split{}, err
	}
	defer resp.Body.Close()
	var sp split
	if err := json.NewDecoder(resp.Body).Decode(&sp); err != nil {
		return split{}, fmt.Errorf("the server's timings: %w", err)
	}
	return sp, nil
}
