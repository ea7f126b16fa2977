package searchattrs_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"google.golang.org/grpc"

	"oakallow/dev/devtest"
	"oakallow/worker/searchattrs"
	"oakallow/workflows"
)

func TestMain(m *testing.M) { devtest.Main(m) }

// dial connects to namespace on the test server; refuse lists operator methods
// (e.g. "AddSearchAttributes") that answer PermissionDenied, the way Temporal
// Cloud answers namespace credentials.
func dial(t *testing.T, namespace string, refuse ...string) client.Client {
	t.Helper()
	opts := client.Options{
		HostPort:  devtest.Temporal(t).Address(),
		Namespace: namespace,
		Logger:    sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	}
	if len(refuse) > 0 {
		refused := map[string]bool{}
		for _, m := range refuse {
			refused["/temporal.api.operatorservice.v1.OperatorService/"+m] = true
		}
		opts.ConnectionOptions.DialOptions = []grpc.DialOption{grpc.WithChainUnaryInterceptor(
			func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
				if refused[method] {
					return serviceerror.ToStatus(serviceerror.NewPermissionDenied("Request unauthorized.", "")).Err()
				}
				return invoker(ctx, method, req, reply, cc, o...)
			})}
	}
	c, err := client.Dial(opts)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// startApproval starts an approval workflow as the API does (no worker polls the
// queue; only the start matters) and terminates it.
func startApproval(ctx context.Context, t *testing.T, c client.Client) error {
	in := workflows.ApprovalInput{Reference: "REF-" + t.Name(), OrgID: "org_1", ToolName: "deploy", TenantID: "acme"}
	run, err := c.ExecuteWorkflow(ctx, workflows.StartWorkflowOptions(in), workflows.ApprovalWorkflowName, in)
	if err != nil {
		return err
	}
	return c.TerminateWorkflow(ctx, run.GetID(), run.GetRunID(), "test over")
}

func TestEnsureRegistersOnAFreshNamespace(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	ns := devtest.Namespace(t)
	c := dial(t, ns)

	// The premise: a fresh namespace refuses an approval start.
	var invalid *serviceerror.InvalidArgument
	require.ErrorAs(t, startApproval(ctx, t, c), &invalid)

	want := workflows.SearchAttributeTypes()
	added, err := searchattrs.Ensure(ctx, c, ns, want)
	require.NoError(t, err)
	require.Equal(t, []string{"OakallowLevel", "OakallowOrg", "OakallowStatus", "OakallowTenant", "OakallowTool"}, added)
	require.NoError(t, startApproval(ctx, t, c))

	// Idempotent: nothing is missing the second time.
	added, err = searchattrs.Ensure(ctx, c, ns, want)
	require.NoError(t, err)
	require.Empty(t, added)
}

func TestEnsureFromSeveralProcessesAtOnce(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	ns := devtest.Namespace(t)
	want := workflows.SearchAttributeTypes()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		c := dial(t, ns) // one connection each, like separate worker processes
		wg.Go(func() { _, errs[i] = searchattrs.Ensure(ctx, c, ns, want) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))

	c := dial(t, ns)
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	require.NoError(t, err)
	for name, typ := range want {
		require.Equal(t, typ, have.GetCustomAttributes()[name], name)
	}
	require.NoError(t, startApproval(ctx, t, c))
}

func TestEnsureRefusesAnotherType(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	ns := devtest.Namespace(t)
	c := dial(t, ns)
	_, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        ns,
		SearchAttributes: map[string]enums.IndexedValueType{workflows.SearchAttributeNameLevel: enums.INDEXED_VALUE_TYPE_KEYWORD},
	})
	require.NoError(t, err)
	_, err = searchattrs.Ensure(ctx, c, ns, workflows.SearchAttributeTypes())
	require.ErrorContains(t, err, `search attribute "OakallowLevel" of namespace "`+ns+`" is registered as Keyword, needed as Int`)
}

func TestEnsureExplainsARefusal(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	ns := devtest.Namespace(t)
	want := workflows.SearchAttributeTypes()

	for name, refuse := range map[string][]string{
		"add refused":          {"AddSearchAttributes"},
		"add and list refused": {"AddSearchAttributes", "ListSearchAttributes"},
	} {
		_, err := searchattrs.Ensure(ctx, dial(t, ns, refuse...), ns, want)
		var refused *searchattrs.RefusedError
		require.ErrorAs(t, err, &refused, name)
		require.Len(t, refused.Missing, len(want), name)
		require.ErrorContains(t, err, `tcld namespace search-attributes add --namespace `+ns+
			` --search-attribute "OakallowLevel=Int" --search-attribute "OakallowOrg=Keyword"`, name)
		require.ErrorContains(t, err, "temporal operator search-attribute create --namespace "+ns+
			" --name OakallowLevel --type Int --name OakallowOrg --type Keyword", name)
	}

	// Once someone allowed to has created them, the restricted credentials pass.
	_, err := searchattrs.Ensure(ctx, dial(t, ns), ns, want)
	require.NoError(t, err)
	for _, refuse := range [][]string{{"AddSearchAttributes"}, {"AddSearchAttributes", "ListSearchAttributes"}} {
		added, err := searchattrs.Ensure(ctx, dial(t, ns, refuse...), ns, want)
		require.NoError(t, err, refuse)
		require.Empty(t, added)
	}
}
