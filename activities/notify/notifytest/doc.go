// Package notifytest provides local fake servers for the services oakallow
// notifies — Slack, PagerDuty and a webhook receiver — for unit and
// integration tests. Each is a loopback httptest server closed when the test
// ends.
//
// The fakes check what the real services require rather than echoing
// whatever they get: the Slack fake validates Block Kit structure and limits
// and implements oauth.v2.access; the PagerDuty fake checks the
// Authorization, Accept and From headers and the exact incident body shape
// and keeps incidents by incident_key with the real dedup rule; the webhook
// receiver verifies oakallow's signature with its own implementation of the
// HMAC check (not package notify's), rejects stale timestamps, and can be
// taken down (503 or connections closed) and brought back up.
//
// Requests a fake refuses are answered the way the real service answers and
// are recorded in Rejections, so a test can assert both "this was accepted"
// and "this would have been refused".
package notifytest
