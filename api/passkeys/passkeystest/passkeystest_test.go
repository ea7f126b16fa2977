package passkeystest

import (
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// TestCredentialsEncodeFullCoordinates draws enough passkeys that, with
// virtualwebauthn's own key encoding, some would carry a coordinate shorter
// than 32 bytes (each does with probability about 1/128), and requires every
// one to encode both coordinates at full length.
func TestCredentialsEncodeFullCoordinates(t *testing.T) {
	t.Parallel()
	for i := range 2000 {
		cred, err := newCredential()
		if err != nil {
			t.Fatal(err)
		}
		var key struct {
			X []byte `cbor:"-2,keyasint"`
			Y []byte `cbor:"-3,keyasint"`
		}
		if err := cbor.Unmarshal(cred.Key.AttestationData(), &key); err != nil {
			t.Fatal(err)
		}
		if len(key.X) != 32 || len(key.Y) != 32 {
			t.Fatalf("credential %d: coordinates of %d and %d bytes, want 32", i, len(key.X), len(key.Y))
		}
	}
}
