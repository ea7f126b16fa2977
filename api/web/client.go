package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// maxAPIAnswer bounds how much of an in-process API answer is kept (the
// largest pages list at most 200 approvals).
const maxAPIAnswer = 8 << 20

// problem is an RFC 9457 problem answer of the API.
type problem struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
	// Errors name the fields a validation problem refused.
	Errors []struct {
		Location string `json:"location"`
		Message  string `json:"message"`
	} `json:"errors"`
}

func (p *problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Code, p.Detail) }

// answer is what an in-process API call returned.
type answer struct {
	status  int
	header  http.Header
	body    []byte
	problem *problem // set for 4xx and 5xx
}

// capture is the http.ResponseWriter of an in-process call.
type capture struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *capture) Header() http.Header { return c.header }

func (c *capture) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

func (c *capture) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if c.body.Len()+len(b) > maxAPIAnswer {
		return 0, fmt.Errorf("web: API answer larger than %d bytes", maxAPIAnswer)
	}
	return c.body.Write(b)
}

// forwarded are the request headers an in-process call carries over from
// the browser's request: its session cookie, and what sessions record about
// the device and what rate limits key on.
var forwarded = []string{"Cookie", "User-Agent", "X-Forwarded-For", "X-Request-Id"}

// call sends one API request on behalf of the browser request r (with its
// session cookie) and decodes a JSON answer into out when it succeeded.
func (d *Dashboard) call(ctx context.Context, r *http.Request, method, path string, q url.Values, in, out any) (*answer, error) {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("web: encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(raw)
	}
	target := path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("web: %s %s: %w", method, path, err)
	}
	for _, h := range forwarded {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	if sc, ok := ctx.Value(scopeKey{}).(scope); ok {
		setScope(req.Header, sc)
	} else if org := selectedOrg(r); org != "" {
		req.Header.Set("X-Oakallow-Org", org)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.RemoteAddr, req.Host = r.RemoteAddr, r.Host
	c := &capture{header: http.Header{}}
	d.cfg.API.ServeHTTP(c, req)
	a := &answer{status: c.status, header: c.header, body: c.body.Bytes()}
	if a.status == 0 {
		a.status = http.StatusOK
	}
	if a.status >= 400 {
		a.problem = &problem{Status: a.status}
		_ = json.Unmarshal(a.body, a.problem) // a non-problem body keeps the status alone
		return a, nil
	}
	if out != nil && len(a.body) > 0 {
		if err := json.Unmarshal(a.body, out); err != nil {
			return nil, fmt.Errorf("web: decode %s %s: %w", method, path, err)
		}
	}
	return a, nil
}

// passCookies copies the Set-Cookie headers of an API answer (a session
// started, upgraded or ended) to the browser.
func passCookies(w http.ResponseWriter, a *answer) {
	for _, c := range a.header.Values("Set-Cookie") {
		w.Header().Add("Set-Cookie", c)
	}
}
