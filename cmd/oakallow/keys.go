package main

import (
	"fmt"
	"io"

	"oakallow/activities/tokens"
)

// loadKeyring parses OAKALLOW_SIGNING_KEYS.
func loadKeyring() (*tokens.Keyring, error) {
	spec, err := required("OAKALLOW_SIGNING_KEYS")
	if err != nil {
		return nil, err
	}
	kr, err := tokens.ParseKeyring(spec)
	if err != nil {
		return nil, fmt.Errorf("OAKALLOW_SIGNING_KEYS: %w", err)
	}
	return kr, nil
}

// runKeygen prints a fresh signing key in OAKALLOW_SIGNING_KEYS format.
func runKeygen(id string, out io.Writer) error {
	k, err := tokens.GenerateKey(id)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, tokens.FormatKeyring(k))
	return nil
}
