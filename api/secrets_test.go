package api

import (
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
)

// A server without the secret key would have to keep tokens, webhook
// secrets and idempotent answers holding them in clear: it does not start.
func TestNewServerRequiresSecretBox(t *testing.T) {
	t.Parallel()
	_, err := NewServer(testConfig(), Deps{Store: devtest.Store(t), Keyring: testKeyring})
	require.ErrorContains(t, err, "SecretBox is required")
}
