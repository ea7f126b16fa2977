package activities_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/activities/sealed"
	"oakallow/activities/tokens"
	"oakallow/store"
)

func TestDepsValidateBoundsDirectAttempts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		max     int
		want    int
		wantErr string
	}{
		{name: "zero means the default", max: 0, want: activities.DefaultMaxDirectAttempts},
		{name: "one is allowed", max: 1, want: 1},
		{name: "the maximum is allowed", max: activities.MaxMaxDirectAttempts, want: activities.MaxMaxDirectAttempts},
		{name: "negative is refused", max: -1, wantErr: "max direct attempts -1 outside 1"},
		{name: "above the maximum is refused", max: activities.MaxMaxDirectAttempts + 1, wantErr: "max direct attempts 10001 outside 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := activities.Deps{Store: &store.Store{}, Keyring: &tokens.Keyring{}, Temporal: unreachableClient{},
				Notifier: &notify.Notifier{}, SecretBox: &sealed.Box{}, MaxDirectAttempts: tc.max}
			err := d.Validate()
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, d.MaxDirectAttempts)
		})
	}
}

// The secret box seals execution tokens and opens channel and webhook
// secrets: activities without one would store tokens in clear or fail
// every delivery, so they are refused.
func TestDepsValidateRequiresSecretBox(t *testing.T) {
	t.Parallel()
	d := activities.Deps{Store: &store.Store{}, Keyring: &tokens.Keyring{}, Temporal: unreachableClient{}, Notifier: &notify.Notifier{}}
	require.ErrorContains(t, d.Validate(), "secret box is required")
}
