package api

import (
	"context"
	"net/http"
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
		Summary:     "Readiness",
		Description: "Answers 200 when PostgreSQL and Temporal are reachable, 503 otherwise.",
		Tags:        []string{"Operations"},
		Errors:      []int{http.StatusServiceUnavailable},
	}, accessPublic), func(ctx context.Context, _ *struct{}) (*healthOutput, error) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		out := &healthOutput{}
		out.Body.Checks = map[string]string{}
		ok := true
		if err := s.deps.Store.Ping(ctx); err != nil {
			out.Body.Checks["postgres"] = "unreachable"
			ok = false
		} else {
			out.Body.Checks["postgres"] = "ok"
		}
		if s.deps.TemporalReady != nil {
			if err := s.deps.TemporalReady(ctx); err != nil {
				out.Body.Checks["temporal"] = "unreachable"
				ok = false
			} else {
				out.Body.Checks["temporal"] = "ok"
			}
		}
		if !ok {
			p := problem(http.StatusServiceUnavailable, CodeUnavailable, "a dependency is unreachable")
			return nil, p
		}
		out.Body.Status = "ok"
		return out, nil
	})
}
