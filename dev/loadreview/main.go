// Command loadreview measures a reviewer's passkey-signed decision end to end
// on the dev stack (issue 9's target: p50 ≤ 50 ms): for each approval, the
// reviewer asks for decision options, a virtual authenticator makes the
// assertion, the decision is sent, and the agent polls until its execution
// token is there. Approvals are created (untimed) before each measurement.
//
//	go run ./dev/loadreview -n 200
//
// The reviewer is a person of the dev org's team whose first, enrollment-only
// session is written to the store (as the e-mail sign-in would start it); the
// passkey is enrolled through the API.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"time"

	"oakallow/dev/devenv"
	"oakallow/dev/devstack"
)

const toolName = "approve_invoice"

func main() {
	n := flag.Int("n", 200, "measured decisions, one at a time")
	warmup := flag.Int("warmup", 20, "decisions before the measured ones, not measured")
	verbose := flag.Bool("v", false, "log the stack's warnings and errors")
	flag.Parse()
	if *n < 1 || *warmup < 0 {
		fmt.Fprintln(os.Stderr, "loadreview: -n must be positive and -warmup not negative")
		os.Exit(2)
	}
	if err := run(*n, *warmup, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "loadreview:", err)
		os.Exit(1)
	}
}

// client calls the REST API with an API key or a session token.
type client struct {
	base string
	hc   *http.Client
}

func (c *client) do(method, path string, hdr map[string]string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s %s: status %d: %.300s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

type options struct {
	CeremonyID string          `json:"ceremony_id"`
	PublicKey  json.RawMessage `json:"publicKey"`
}

type approval struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Token  string `json:"token"`
}

func run(n, warmup int, verbose bool) error {
	ctx := context.Background()
	level := slog.LevelError + 1
	if verbose {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	fmt.Printf("load average at start: %s\n", devenv.LoadAverage())
	stack, err := devstack.Start(ctx, devstack.Options{Throwaway: true, UIPort: -1}, logger)
	if err != nil {
		return err
	}
	defer stack.Stop()
	creds := stack.Credentials()
	c := &client{base: creds.APIURL, hc: &http.Client{Timeout: 30 * time.Second}}
	mk, sk := map[string]string{"X-API-Key": creds.ManagementKey}, map[string]string{"X-API-Key": creds.StandardKey}

	if err := c.do(http.MethodPost, "/v1/tools", mk, map[string]any{
		"name": toolName, "risk_level": "high", "read_only": false, "destructive": true, "idempotent": false,
		"open_world": true, "annotations_acknowledged": true, "default_permission": "requires_approval",
	}, nil); err != nil {
		return err
	}
	reviewerTok, auth, err := stack.SignInPerson(ctx, "reviewer")
	if err != nil {
		return fmt.Errorf("enroll the reviewer: %w", err)
	}
	reviewerHdr := map[string]string{"Authorization": "Bearer " + reviewerTok}

	one := func(i int) (total, optionsCall, decideCall, toToken time.Duration, err error) {
		var created approval
		if err := c.do(http.MethodPost, "/v1/approvals", sk, map[string]any{"tool": toolName, "reasoning": "invoice",
			"parameters": map[string]any{"invoice": i, "amount": 100 + i%50}}, &created); err != nil {
			return 0, 0, 0, 0, err
		}
		t0 := time.Now()
		var opts options
		if err := c.do(http.MethodPost, "/v1/approvals/"+created.ID+"/decide/options", reviewerHdr,
			map[string]any{"decision": "approve"}, &opts); err != nil {
			return 0, 0, 0, 0, err
		}
		t1 := time.Now()
		assertion, err := auth.Get(opts.PublicKey)
		if err != nil {
			return 0, 0, 0, 0, err
		}
		t2 := time.Now()
		var decided approval
		if err := c.do(http.MethodPost, "/v1/approvals/"+created.ID+"/decide", reviewerHdr, map[string]any{
			"decision": "approve", "ceremony_id": opts.CeremonyID, "credential": json.RawMessage(assertion)}, &decided); err != nil {
			return 0, 0, 0, 0, err
		}
		t3 := time.Now()
		// The agent polls until its token is there.
		for deadline := t3.Add(10 * time.Second); ; {
			var a approval
			if err := c.do(http.MethodGet, "/v1/approvals/"+created.ID, sk, nil, &a); err != nil {
				return 0, 0, 0, 0, err
			}
			if a.Status == "approved" && a.Token != "" {
				break
			}
			if time.Now().After(deadline) {
				return 0, 0, 0, 0, fmt.Errorf("%s: no token 10 s after the decision (status %s)", created.ID, a.Status)
			}
			time.Sleep(2 * time.Millisecond)
		}
		t4 := time.Now()
		return t4.Sub(t0), t1.Sub(t0), t3.Sub(t2), t4.Sub(t3), nil
	}
	for i := range warmup {
		if _, _, _, _, err := one(i); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	var total, opt, dec, tok []time.Duration
	for i := range n {
		a, b, d, e, err := one(warmup + i)
		if err != nil {
			return err
		}
		total, opt, dec, tok = append(total, a), append(opt, b), append(dec, d), append(tok, e)
	}
	fmt.Printf("\n%d reviewer decisions, one at a time (after %d unmeasured):\n", n, warmup)
	fmt.Printf("  %-44s %8s %8s %8s\n", "", "p50", "p90", "p99")
	for _, row := range []struct {
		name string
		d    []time.Duration
	}{
		{"options → assertion → decided → token (end to end)", total},
		{"  decide/options call", opt},
		{"  decide call (assertion verified, workflow decided)", dec},
		{"  decide answer → agent's GET shows the token", tok},
	} {
		p := percentiles(row.d, 50, 90, 99)
		fmt.Printf("  %-44s %8s %8s %8s\n", row.name, ms(p[0]), ms(p[1]), ms(p[2]))
	}
	fmt.Printf("load average at the end: %s\n", devenv.LoadAverage())
	return nil
}

func percentiles(d []time.Duration, ps ...int) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	out := make([]time.Duration, len(ps))
	for i, p := range ps {
		idx := (len(s)*p + 99) / 100
		out[i] = s[max(min(idx, len(s))-1, 0)]
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
