// Package searchattrs registers custom search attributes on a Temporal namespace.
//
// A workflow that sets or upserts an attribute the namespace lacks fails (the start
// is refused with InvalidArgument; an upsert fails the workflow task), so every
// process that starts or runs oakallow's workflows calls [Ensure] first: `oakallow
// migrate up`, `oakallow worker` and the embedded dev server. It is idempotent and
// safe to run from several processes at once.
//
// Adding attributes needs the operator service (the SDK client's OperatorService).
// Temporal Cloud refuses it to namespace credentials; there the attributes are
// created once with tcld, and Ensure only checks that they exist ([RefusedError]
// says how).
package searchattrs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc/codes"
)

// attempts bounds how often Ensure lists and adds. Another process adding
// attributes at the same moment makes an add fail once (the server's "race
// condition" answer, or a field already allocated); the next round sees its work.
const attempts = 5

// retryPause is the pause between two rounds and between two usability probes.
const retryPause = 200 * time.Millisecond

// Ensure makes sure namespace has every attribute of want, with its type. It adds the
// missing ones (an attribute that already exists, added meanwhile by another process
// or not, counts as success) and waits until the frontend accepts a visibility query
// naming each, so that a workflow start right after Ensure can set them. It returns
// the names that were missing when it was called, sorted.
//
// An attribute registered with another type is an error: Temporal cannot change a
// type in place. A server that refuses to add attributes (no permission, or Temporal
// Cloud) gives a *RefusedError. ctx bounds the whole call.
func Ensure(ctx context.Context, c client.Client, namespace string, want map[string]enums.IndexedValueType) ([]string, error) {
	if len(want) == 0 {
		return nil, nil
	}
	ops := c.OperatorService()
	var firstMissing []string
	var lastErr error
	for attempt := range attempts {
		missing, err := missingAttributes(ctx, ops, namespace, want)
		if err != nil && refused(err) {
			// Listing is refused too: probe each attribute with a visibility query,
			// which namespace credentials may always run. Types cannot be checked.
			return probe(ctx, c, namespace, want, err)
		}
		if err != nil {
			return nil, err
		}
		if attempt == 0 {
			firstMissing = slices.Sorted(maps.Keys(missing))
		}
		if len(missing) == 0 {
			break
		}
		_, err = ops.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
			Namespace:        namespace,
			SearchAttributes: missing,
		})
		if err == nil {
			continue // the next round confirms them
		}
		if refused(err) {
			return nil, &RefusedError{Namespace: namespace, Missing: missing, Err: err}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("add search attributes %v: %w", slices.Sorted(maps.Keys(missing)), err)
		}
		lastErr = err
		if attempt == attempts-1 {
			return nil, fmt.Errorf("add search attributes %v to namespace %q: %w", slices.Sorted(maps.Keys(missing)), namespace, lastErr)
		}
		if err := pause(ctx); err != nil {
			return nil, fmt.Errorf("add search attributes: %w", errors.Join(err, lastErr))
		}
	}
	// The aliases are stored, but each frontend resolves them through a namespace
	// cache that it reloads periodically (10 s by default). Wait until it accepts a
	// query naming each new attribute; a workflow task that upserts one on a history
	// host that has not reloaded yet fails and is retried by the server.
	for _, name := range firstMissing {
		if err := waitUsable(ctx, c, namespace, name); err != nil {
			return nil, err
		}
	}
	return firstMissing, nil
}

// missingAttributes lists the namespace's custom attributes and returns those of want
// that it lacks; a type mismatch is an error.
func missingAttributes(ctx context.Context, ops operatorservice.OperatorServiceClient, namespace string, want map[string]enums.IndexedValueType) (map[string]enums.IndexedValueType, error) {
	have, err := ops.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return nil, fmt.Errorf("list search attributes of namespace %q: %w", namespace, err)
	}
	missing := map[string]enums.IndexedValueType{}
	var conflicts []error
	for _, name := range slices.Sorted(maps.Keys(want)) {
		typ, ok := have.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing[name] = want[name]
		case typ != want[name]:
			conflicts = append(conflicts, fmt.Errorf("search attribute %q of namespace %q is registered as %v, needed as %v",
				name, namespace, typ, want[name]))
		}
	}
	if len(conflicts) > 0 {
		// The old values would be misread under a new type.
		return nil, errors.Join(conflicts...)
	}
	return missing, nil
}

// refused reports whether the server said no to adding attributes for good, as opposed
// to a passing failure: the credentials may not use the operator service, or the
// service (Temporal Cloud) does not offer it.
func refused(err error) bool {
	switch serviceerror.ToStatus(err).Code() {
	case codes.PermissionDenied, codes.Unimplemented, codes.Unauthenticated:
		return true
	}
	return false
}

// probe checks that every attribute of want can be queried, for a server that does
// not let these credentials list attributes; listErr is that refusal.
func probe(ctx context.Context, c client.Client, namespace string, want map[string]enums.IndexedValueType, listErr error) ([]string, error) {
	missing := map[string]enums.IndexedValueType{}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		usable, err := queryable(ctx, c, namespace, name)
		if err != nil {
			return nil, err
		}
		if !usable {
			missing[name] = want[name]
		}
	}
	if len(missing) > 0 {
		return nil, &RefusedError{Namespace: namespace, Missing: missing, Err: listErr}
	}
	return nil, nil
}

// queryable reports whether the frontend accepts a visibility query naming the
// attribute: false when it answers InvalidArgument (an unknown attribute).
func queryable(ctx context.Context, c client.Client, namespace, name string) (bool, error) {
	_, err := c.WorkflowService().CountWorkflowExecutions(ctx,
		&workflowservice.CountWorkflowExecutionsRequest{Namespace: namespace, Query: name + " IS NULL"})
	if err == nil {
		return true, nil
	}
	var invalid *serviceerror.InvalidArgument
	if errors.As(err, &invalid) {
		return false, nil
	}
	return false, fmt.Errorf("query search attribute %q: %w", name, err)
}

func waitUsable(ctx context.Context, c client.Client, namespace, name string) error {
	for {
		usable, err := queryable(ctx, c, namespace, name)
		if err != nil || usable {
			return err
		}
		if err := pause(ctx); err != nil {
			return fmt.Errorf("search attribute %q not usable yet: %w", name, err)
		}
	}
}

func pause(ctx context.Context) error {
	t := time.NewTimer(retryPause)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// RefusedError is the server's refusal to add search attributes the namespace lacks.
// Its message says how to create them by hand.
type RefusedError struct {
	Namespace string
	Missing   map[string]enums.IndexedValueType
	Err       error
}

func (e *RefusedError) Error() string {
	names := slices.Sorted(maps.Keys(e.Missing))
	var cli, cloud strings.Builder
	for _, name := range names {
		typ := e.Missing[name].String() // Keyword, Int…: how tcld and the CLI spell types
		fmt.Fprintf(&cli, " --name %s --type %s", name, typ)
		fmt.Fprintf(&cloud, " --search-attribute %q", name+"="+typ)
	}
	return fmt.Sprintf("temporal namespace %q lacks the search attributes %s and the server refused to add them (%v). "+
		"Create them once with credentials that may: on Temporal Cloud `tcld namespace search-attributes add --namespace %s%s`; "+
		"on a self-hosted server `temporal operator search-attribute create --namespace %s%s`",
		e.Namespace, strings.Join(names, ", "), e.Err, e.Namespace, cloud.String(), e.Namespace, cli.String())
}

func (e *RefusedError) Unwrap() error { return e.Err }
