// Package runtime is oakallow's transport-neutral runtime core: the
// permission check, approval requests, and execution tokens (mint and
// verify), with domain inputs, outputs and errors. Every surface — the REST
// operations, the MCP connector, the dashboard — calls it, so a check costs,
// records and answers the same however it arrives (SPEC §2, §4, §5, §6, §9).
//
// The package knows nothing of HTTP, huma or MCP. Its errors are *Error
// values with a Kind (what went wrong, in domain terms) and a stable Code;
// each surface maps them in one place (api's toProblem, api/mcp's toolError).
// Errors from the store (store.ErrInsufficientCredits, store.ErrUnavailable,
// …) pass through wrapped, and the surfaces map them too.
//
// Guarantees kept here, not in the surfaces: a check's answer is returned
// only after its audit entry (and its charge) is durable; every billable
// call is charged inside the audit commit (store.Recorder), so metering is
// exact; parameters are validated against the tool's schema, bound by their
// RFC 8785 hash, and scrubbed of PII before storage; receipts are signed.
// Idempotency-Key handling stays in the REST surface, which owns the header.
package runtime
