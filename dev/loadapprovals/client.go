package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// apiClient calls the REST API as the README's curl lines do.
type apiClient struct {
	base string
	hc   *http.Client
}

// statusError is a non-2xx answer.
type statusError struct {
	method, path string
	status       int
	body         string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s %s: status %d: %s", e.method, e.path, e.status, e.body)
}

// do sends body (when non-nil) as JSON with key and decodes a 2xx answer
// into out (when non-nil). A non-2xx answer is a *statusError.
func (c *apiClient) do(method, path, key string, body, out any) error {
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
	req.Header.Set("X-API-Key", key)
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
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if len(b) > 300 {
			b = b[:300]
		}
		return &statusError{method: method, path: path, status: resp.StatusCode, body: string(b)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// approvalView is the part of an approval the tool reads.
type approvalView struct {
	ID        string `json:"id"`
	Reference string `json:"reference"`
	Status    string `json:"status"`
	Token     string `json:"token"`
}

// create requests one approval and answers its REF.
func (c *apiClient) create(key string, n int) (string, error) {
	var out approvalView
	err := c.do(http.MethodPost, "/v1/approvals", key, map[string]any{
		"tool":       toolName,
		"parameters": map[string]any{"amount": 100 + n%900, "currency": "EUR", "run": n},
		"reasoning":  "load test: monthly rent",
	}, &out)
	if err == nil && (out.Reference == "" || out.Status != "pending") {
		err = fmt.Errorf("create: answer has reference %q and status %q", out.Reference, out.Status)
	}
	return out.Reference, err
}

// decide approves ref and answers the approval after the decision.
func (c *apiClient) decide(key, ref string) (approvalView, error) {
	return c.decideAs(key, ref, "approve")
}

// decideAs sends decision ("approve" or "deny") for ref.
func (c *apiClient) decideAs(key, ref, decision string) (approvalView, error) {
	var out approvalView
	err := c.do(http.MethodPost, "/v1/approvals/"+ref+"/decide", key, map[string]any{"decision": decision}, &out)
	return out, err
}

// tokenOf polls GET /v1/approvals/{ref} every interval until it shows the
// token, and answers when it first did; ok is false at deadline.
func (c *apiClient) tokenOf(key, ref string, interval time.Duration, deadline time.Time) (at time.Time, ok bool, err error) {
	for {
		var a approvalView
		if err := c.do(http.MethodGet, "/v1/approvals/"+ref, key, nil, &a); err != nil {
			return time.Time{}, false, err
		}
		now := time.Now()
		if a.Status == "approved" && a.Token != "" {
			return now, true, nil
		}
		if now.After(deadline) {
			return time.Time{}, false, nil
		}
		time.Sleep(interval)
	}
}
