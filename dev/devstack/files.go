package devstack

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"strconv"

	"oakallow/activities/sealed"
	"oakallow/activities/tokens"
)

// loadOrCreateSigningKeys keeps the dev signing key in a 0600 file.
func loadOrCreateSigningKeys(path string) (*tokens.Keyring, error) {
	if b, err := os.ReadFile(path); err == nil {
		return tokens.ParseKeyring(string(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, err := tokens.GenerateKey("dev1")
	if err != nil {
		return nil, err
	}
	spec := tokens.FormatKeyring(k)
	if err := os.WriteFile(path, []byte(spec), 0o600); err != nil {
		return nil, err
	}
	return tokens.ParseKeyring(spec)
}

// loadOrCreateSecretBox keeps the dev secrets key in a 0600 file.
func loadOrCreateSecretBox(path string) (*sealed.Box, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		spec, err := sealed.NewKey()
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(spec), 0o600); err != nil {
			return nil, err
		}
		b = []byte(spec)
	} else if err != nil {
		return nil, err
	}
	key, err := sealed.ParseKey(string(b))
	if err != nil {
		return nil, err
	}
	return sealed.NewBox(key)
}

// portFree reports whether port can be bound on 127.0.0.1 right now.
func portFree(port int) bool {
	if port <= 0 {
		return false
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// writeJSON replaces path atomically (write, then rename), so a crash never
// leaves half a credentials file.
func writeJSON(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
