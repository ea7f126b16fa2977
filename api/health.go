package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
)

type healthOutput struct {
	Body struct {
		Status string            `json:"status" doc:"ok when every check passed." example:"ok"`
		Checks map[string]string `json:"checks,omitempty" doc:"Per-dependency result: ok or the failure."`
	}
}

func registerHealth(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "healthz", Method: http.MethodGet, Path: "/healthz",
		Summary: "Liveness", Description: "Answers 200 while the process is serving.", Tags: []string{"Operations"},
	}, accessPublic), func(ctx context.Context, _ *struct{}) (*healthOutput, error) {
		out := &healthOutput{}
		out.Body.Status = "ok"
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "readyz", Method: http.MethodGet, Path: "/readyz",
		Summary: "Readiness",
		Description: "Answers 200 when PostgreSQL accepts a new connection and commits a read-write transaction on it, " +
			"and Temporal answers; 503 otherwise. Each check gives up after 2 s.",
		Tags:   []string{"Operations"},
		Errors: []int{http.StatusServiceUnavailable},
	}, accessPublic), func(ctx context.Context, _ *struct{}) (*healthOutput, error) {
		// The endpoint is public and each check opens a database connection:
		// concurrent probes share the check under way instead of each opening
		// one, so no caller can use it to exhaust the server's connections.
		v, _, _ := s.readiness.Do("readyz", func() (any, error) {
			return s.checkReadiness(context.WithoutCancel(ctx)), nil
		})
		checks := v.(map[string]string)
		out := &healthOutput{}
		out.Body.Checks = checks
		for _, result := range checks {
			if result != "ok" {
				return nil, problem(http.StatusServiceUnavailable, CodeUnavailable, "a dependency is unavailable")
			}
		}
		out.Body.Status = "ok"
		return out, nil
	})
}

// readinessTimeout bounds each readiness check: a load balancer's probe
// should get an answer well before its own timeout.
const readinessTimeout = 2 * time.Second

// checkReadiness runs the dependency checks concurrently and returns each
// one's result: "ok", or what failed (the cause is logged, not shown).
func (s *Server) checkReadiness(ctx context.Context) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, readinessTimeout)
	defer cancel()
	var mu sync.Mutex
	checks := map[string]string{}
	var wg sync.WaitGroup
	run := func(name, failure string, check func(context.Context) error) {
		wg.Go(func() {
			result := "ok"
			if err := check(ctx); err != nil {
				result = failure
				s.log.Warn("not ready", "dependency", name, "err", err)
			}
			mu.Lock()
			checks[name] = result
			mu.Unlock()
		})
	}
	run("postgres", "unavailable", s.deps.Store.Ready)
	if s.deps.TemporalReady != nil {
		run("temporal", "unreachable", s.deps.TemporalReady)
	}
	wg.Wait()
	return checks
}
