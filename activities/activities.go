package activities

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"oakallow/activities/notify"
	"oakallow/activities/sealed"
	"oakallow/activities/tokens"
	"oakallow/store"
	"oakallow/workflows"
)

// DefaultTokenTTL is how long an execution token is valid after it is minted (SPEC §5).
const DefaultTokenTTL = 5 * time.Minute

// MaxTokenTTL bounds Deps.TokenTTL: an execution token is meant for one imminent call.
const MaxTokenTTL = 24 * time.Hour

// Deps are what the activities need. Store, Keyring, Temporal and Notifier are required.
type Deps struct {
	// Store is the PostgreSQL store every activity writes to.
	Store *store.Store
	// Keyring signs execution tokens.
	Keyring *tokens.Keyring
	// Temporal starts the delivery workflows (retries after a direct attempt,
	// EnqueueNotifications when direct attempts are full, Redeliver, the sweep).
	Temporal client.Client
	// Notifier sends to notification channels (Slack, PagerDuty, generic webhook).
	Notifier *notify.Notifier
	// HTTPClient sends org webhooks. Default: notify.NewHTTPClient with the production
	// policy (https only, no private addresses).
	HTTPClient *http.Client
	// SecretBox seals execution tokens and opens them, channel credentials and org webhook
	// secrets (the server's OAKALLOW_SECRET_KEY). Required.
	SecretBox *sealed.Box
	// PublicURL is the dashboard's base URL; channel alerts link to
	// <PublicURL>/approvals/<REF>. Optional: without it alerts carry no link.
	PublicURL string
	// TokenTTL is the execution token lifetime. Default DefaultTokenTTL; at most MaxTokenTTL.
	TokenTTL time.Duration
	// TaskQueue is the queue delivery workflows are started on. Default
	// workflows.TaskQueue; tests that share a Temporal namespace give each worker its own.
	TaskQueue string
	// DeliveryRetry overrides the delivery workflows' retry schedule (tests, operators);
	// only its InitialInterval, MaximumInterval and ScheduleToClose are used. Zero fields
	// mean the workflows.Delivery* defaults.
	DeliveryRetry workflows.DeliveryInput
	// MaxDirectAttempts bounds the first delivery attempts this process runs at once,
	// outside Temporal; deliveries beyond it go straight to a DeliveryWorkflow.
	// Default DefaultMaxDirectAttempts; at most MaxMaxDirectAttempts.
	MaxDirectAttempts int
	// Metrics receives time-to-decision and delivery observations. Optional.
	Metrics *Metrics
	// Logger receives operational messages; never secrets, tokens or parameters.
	// Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Validate checks the dependencies and fills in defaults.
func (d *Deps) Validate() error {
	var errs []error
	if d.Store == nil {
		errs = append(errs, errors.New("store is required"))
	}
	if d.Keyring == nil {
		errs = append(errs, errors.New("keyring is required"))
	}
	if d.Temporal == nil {
		errs = append(errs, errors.New("temporal client is required"))
	}
	if d.Notifier == nil {
		errs = append(errs, errors.New("notifier is required"))
	}
	if d.SecretBox == nil {
		errs = append(errs, errors.New("secret box is required"))
	}
	if d.PublicURL != "" {
		u, err := url.Parse(d.PublicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" {
			errs = append(errs, errors.New("public URL must be an absolute http(s) URL without credentials or query"))
		}
		d.PublicURL = strings.TrimRight(d.PublicURL, "/")
	}
	if d.TokenTTL == 0 {
		d.TokenTTL = DefaultTokenTTL
	}
	if d.TokenTTL < time.Second || d.TokenTTL > MaxTokenTTL {
		errs = append(errs, fmt.Errorf("token TTL %s outside 1s … %s", d.TokenTTL, MaxTokenTTL))
	}
	retry := d.DeliveryRetry
	retry.DeliveryID = "check"
	if err := retry.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("delivery retry: %w", err))
	}
	if d.TaskQueue == "" {
		d.TaskQueue = workflows.TaskQueue
	}
	if d.MaxDirectAttempts == 0 {
		d.MaxDirectAttempts = DefaultMaxDirectAttempts
	}
	if d.MaxDirectAttempts < 1 || d.MaxDirectAttempts > MaxMaxDirectAttempts {
		errs = append(errs, fmt.Errorf("max direct attempts %d outside 1 … %d", d.MaxDirectAttempts, MaxMaxDirectAttempts))
	}
	if d.HTTPClient == nil {
		c, err := notify.NewHTTPClient(notify.HTTPClientConfig{})
		if err != nil {
			errs = append(errs, fmt.Errorf("http client: %w", err))
		}
		d.HTTPClient = c
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("activities: %w", err)
	}
	return nil
}

// Activities implements the approval and delivery activities (workflows.Activity*) and
// the delivery operations the API calls (Redeliver, TestChannel). It is safe for
// concurrent use. It owns background delivery attempts: call Close before the store and
// the Temporal client are closed.
type Activities struct {
	st        *store.Store
	keyring   *tokens.Keyring
	temporal  client.Client
	notifier  *notify.Notifier
	http      *http.Client
	box       *sealed.Box
	publicURL string
	tokenTTL  time.Duration
	taskQueue string
	retry     workflows.DeliveryInput
	direct    *dispatcher
	logger    *slog.Logger
	metrics   *Metrics
	now       func() time.Time
}

// New returns the activities for deps.
func New(deps Deps) (*Activities, error) {
	if err := deps.Validate(); err != nil {
		return nil, err
	}
	return &Activities{
		st:        deps.Store,
		keyring:   deps.Keyring,
		temporal:  deps.Temporal,
		notifier:  deps.Notifier,
		http:      deps.HTTPClient,
		box:       deps.SecretBox,
		publicURL: deps.PublicURL,
		tokenTTL:  deps.TokenTTL,
		taskQueue: deps.TaskQueue,
		retry:     deps.DeliveryRetry,
		direct:    newDispatcher(deps.MaxDirectAttempts),
		logger:    deps.Logger,
		metrics:   deps.Metrics,
		now:       deps.Now,
	}, nil
}

// nonRetryable returns an application error the workflow's retry policy does not retry.
func nonRetryable(errType, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return temporal.NewNonRetryableApplicationError(msg, errType, nil)
}

// lookupErr turns a missing row into the non-retryable not-found error and passes
// anything else (a database outage) through to be retried.
func lookupErr(err error, what string) error {
	if errors.Is(err, store.ErrNotFound) {
		return nonRetryable(workflows.ErrorTypeNotFound, "%s not found", what)
	}
	return fmt.Errorf("load %s: %w", what, err)
}
