# oakallow — developer entry points. `make dev` runs everything locally;
# `make test` runs the test suite against real PostgreSQL and Temporal.

SQLC_VERSION := v1.31.1
STATICCHECK_VERSION := v0.8.2
# Stripe's API mock, which the billing tests create Checkout sessions
# against (keep dev/devtest.StripeMockVersion in step).
STRIPE_MOCK_VERSION := v0.203.0
GO_TEST_FLAGS ?= -p 2 -timeout 25m

.PHONY: dev test race verify sqlc build fmt vet fuzz load peers docs-assets tools conformance

dev:
	go run ./dev

test: tools
	go test $(GO_TEST_FLAGS) ./...
	cd dev/opa && go test $(GO_TEST_FLAGS) ./...

# Programs the tests run: stripe-mock, installed into $(go env GOPATH)/bin
# (or $GOBIN), where the test harness looks for it.
tools:
	go install github.com/stripe/stripe-mock@$(STRIPE_MOCK_VERSION)

# The same suite under the race detector (CI runs it too).
race: tools
	go test -race $(GO_TEST_FLAGS) ./...

# Short fuzzing runs of the input-facing targets (CI runs these too).
# Budgets are execution counts, not durations: a duration budget in go1.26
# can fail a clean run with a bare "context deadline exceeded" when the
# coordinator's deadline races its own workers (golang/go#75804, fixed in
# go1.27). Counts are sized to about 15 s each on the 2-core CI machine.
fuzz:
	go test -run '^$$' -fuzz '^FuzzCheckRequest$$' -fuzztime 20000x ./api/
	go test -run '^$$' -fuzz '^FuzzOAuthToken$$' -fuzztime 5000x ./api/
	go test -run '^$$' -fuzz '^FuzzOAuthAuthorize$$' -fuzztime 5000x ./api/
	go test -run '^$$' -fuzz '^FuzzScrub$$' -fuzztime 400000x ./activities/pii/
	go test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime 250000x ./activities/tokens/
	# The one-pass parameter parser held to the parsers it replaced (oracles in the tests).
	go test -run '^$$' -fuzz '^FuzzParseMatchesEncodingJSON$$' -fuzztime 200000x ./activities/jsondoc/
	go test -run '^$$' -fuzz '^FuzzCanonicalMatchesJCS$$' -fuzztime 200000x ./activities/jsondoc/
	go test -run '^$$' -fuzz '^FuzzScrubJSONMatchesDecoder$$' -fuzztime 200000x ./activities/pii/
	go test -run '^$$' -fuzz '^FuzzHashParametersMatchesJCS$$' -fuzztime 200000x ./activities/tokens/

# The official MCP conformance suite's authorization-server scenarios against
# a throwaway dev stack, held to dev/conformance/baseline.txt. Installs the
# suite and Node.js 22 pinned in dev/conformance/package-lock.json with npm.
conformance:
	dev/conformance/run

# The check-path load run recorded in docs/PERFORMANCE.md.
load:
	go run ./dev/loadcheck -duration 10s -warmup 3s

# oakallow's check side by side with OPA (pinned in dev/opa/go.mod) deciding
# the same chain over the same org (docs/PERFORMANCE.md).
peers:
	go run ./dev/loadpeers -duration 10s -warmup 3s

# Refresh the embedded API reference (Stoplight Elements) from npm and check
# it against the integrity hashes huma pins for the same version.
ELEMENTS_VERSION := 9.0.15
docs-assets:
	rm -rf /tmp/oakallow-elements && mkdir -p /tmp/oakallow-elements
	cd /tmp/oakallow-elements && npm pack @stoplight/elements@$(ELEMENTS_VERSION) >/dev/null && tar xzf stoplight-elements-$(ELEMENTS_VERSION).tgz
	test "$$(openssl dgst -sha384 -binary /tmp/oakallow-elements/package/web-components.min.js | base64 -w0)" = "xjOcq9PZ/k+pGtPS/xcsCRXGjKKfTlIa4H1IYEnC+97jNa6sAMWTNrV6hY08W3GL"
	test "$$(openssl dgst -sha384 -binary /tmp/oakallow-elements/package/styles.min.css | base64 -w0)" = "iVQBHadsD+eV0M5+ubRCEVXrXEBj+BqcuwjUwPoVJc0Pb1fmrhYSAhL+BFProHdV"
	cp /tmp/oakallow-elements/package/web-components.min.js /tmp/oakallow-elements/package/styles.min.css api/docsassets/
	cp /tmp/oakallow-elements/package/LICENSE api/docsassets/LICENSE-stoplight-elements

build:
	go build -o bin/oakallow ./cmd/oakallow

sqlc:
	cd store && go run github.com/sqlc-dev/sqlc/cmd/sqlc@$(SQLC_VERSION) generate

fmt:
	gofmt -w .

vet:
	go vet ./...

# verify fails when formatting, vet, generated code, go.mod or the
# dependency rules are off.
verify: vet
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	@cd store && go run github.com/sqlc-dev/sqlc/cmd/sqlc@$(SQLC_VERSION) diff || \
		(echo "store: generated sqlc code is stale; run make sqlc"; exit 1)
	@cp go.mod /tmp/oakallow-go.mod.bak && cp go.sum /tmp/oakallow-go.sum.bak && go mod tidy && \
		if ! git diff --quiet -- go.mod go.sum; then \
			cp /tmp/oakallow-go.mod.bak go.mod; cp /tmp/oakallow-go.sum.bak go.sum; \
			echo "go.mod/go.sum are not tidy; run go mod tidy"; exit 1; fi
	@if go list -deps ./cmd/oakallow | grep -q '^go.temporal.io/server'; then \
		echo "cmd/oakallow must not link the Temporal server (only dev/ may)"; exit 1; fi
	@if go list -deps ./resolver | grep '^oakallow/' | grep -qv '^oakallow/resolver$$'; then \
		echo "resolver must not import other oakallow packages"; exit 1; fi
	@for p in oakallow/store oakallow/api oakallow/resolver github.com/jackc/pgx/v5 net/http math/rand; do \
		if go list -f '{{join .Imports "\n"}}' ./workflows | grep -qx "$$p"; then \
			echo "workflows must not import $$p"; exit 1; fi; done
	@echo verify: ok
