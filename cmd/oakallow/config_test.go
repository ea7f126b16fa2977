package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestConfigurationTableMatchesCode keeps docs/CONFIGURATION.md honest: the
// table lists exactly the variables in envVars, with the same defaults.
func TestConfigurationTableMatchesCode(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/CONFIGURATION.md")
	require.NoError(t, err)
	row := regexp.MustCompile("(?m)^\\| `([A-Z0-9_]+)` \\| (.*?) \\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		def := strings.TrimSpace(m[2])
		if def == "(none)" {
			def = ""
		}
		documented[m[1]] = strings.Trim(def, "`")
	}
	inCode := map[string]string{}
	for _, v := range envVars {
		inCode[v.Name] = v.Default
	}
	require.Equal(t, inCode, documented, "docs/CONFIGURATION.md and envVars disagree")
}

// TestEveryReadVariableIsRegistered scans the command's sources: every
// getenv("X") names a registered variable, and nothing calls os.Getenv.
func TestEveryReadVariableIsRegistered(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	registered := map[string]bool{}
	for _, v := range envVars {
		registered[v.Name] = true
	}
	call := regexp.MustCompile(`(?:getenv|getenvInt|getenvDuration|required)\("([A-Z0-9_]+)"\)`)
	seen := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NotContains(t, string(src), "os.Getenv(", "%s reads the environment outside getenv", f)
		for _, m := range call.FindAllStringSubmatch(string(src), -1) {
			require.True(t, registered[m[1]], "%s reads unregistered %s", f, m[1])
			seen[m[1]] = true
		}
	}
	for name := range registered {
		require.True(t, seen[name], "%s is documented but never read", name)
	}
}

func TestUnknownCommandIsAUsageError(t *testing.T) {
	t.Parallel()
	var sb strings.Builder
	err := run(t.Context(), []string{"frobnicate"}, &sb)
	require.ErrorAs(t, err, new(usageError))
	require.ErrorAs(t, run(t.Context(), nil, &sb), new(usageError))
	require.ErrorAs(t, run(t.Context(), []string{"migrate", "sideways"}, &sb), new(usageError))
	require.NoError(t, run(t.Context(), []string{"version"}, &sb))
	require.Contains(t, sb.String(), "oakallow")
}

// writeCertificate writes a self-signed certificate and its key as PEM files.
func writeCertificate(t *testing.T) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "oakallow-worker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	require.NoError(t, os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certPath, keyPath
}

func TestTemporalOptions(t *testing.T) {
	cert, key := writeCertificate(t)
	tests := []struct {
		name    string
		env     map[string]string
		wantTLS bool
		wantErr string
		check   func(t *testing.T, tc *tls.Config)
	}{
		{name: "plain by default"},
		{name: "tls on", env: map[string]string{"TEMPORAL_TLS": "true"}, wantTLS: true},
		{name: "not a boolean", env: map[string]string{"TEMPORAL_TLS": "yes please"}, wantErr: "TEMPORAL_TLS: not a boolean"},
		{name: "api key implies tls", env: map[string]string{"TEMPORAL_API_KEY": "secret"}, wantTLS: true},
		{name: "mutual tls", env: map[string]string{"TEMPORAL_TLS_CERT_PATH": cert, "TEMPORAL_TLS_KEY_PATH": key}, wantTLS: true,
			check: func(t *testing.T, tc *tls.Config) { require.Len(t, tc.Certificates, 1) }},
		{name: "certificate without key", env: map[string]string{"TEMPORAL_TLS_CERT_PATH": cert}, wantErr: "must be set together"},
		{name: "unreadable key", env: map[string]string{"TEMPORAL_TLS_CERT_PATH": cert, "TEMPORAL_TLS_KEY_PATH": cert + ".missing"},
			wantErr: "TEMPORAL_TLS_CERT_PATH, TEMPORAL_TLS_KEY_PATH"},
		{name: "own CA and server name", env: map[string]string{"TEMPORAL_TLS_CA_PATH": cert, "TEMPORAL_TLS_SERVER_NAME": "temporal.internal"},
			wantTLS: true, check: func(t *testing.T, tc *tls.Config) {
				require.NotNil(t, tc.RootCAs)
				require.Equal(t, "temporal.internal", tc.ServerName)
			}},
		{name: "CA file without certificates", env: map[string]string{"TEMPORAL_TLS_CA_PATH": key}, wantErr: "holds no PEM certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, name := range []string{"TEMPORAL_TLS", "TEMPORAL_API_KEY", "TEMPORAL_TLS_CERT_PATH", "TEMPORAL_TLS_KEY_PATH",
				"TEMPORAL_TLS_CA_PATH", "TEMPORAL_TLS_SERVER_NAME"} {
				t.Setenv(name, tc.env[name])
			}
			if tc.env["TEMPORAL_TLS"] == "" {
				t.Setenv("TEMPORAL_TLS", "false")
			}
			opts, err := temporalOptions(slog.New(slog.DiscardHandler))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantTLS, opts.ConnectionOptions.TLS != nil)
			require.Equal(t, tc.env["TEMPORAL_API_KEY"] != "", opts.Credentials != nil)
			if tc.check != nil {
				tc.check(t, opts.ConnectionOptions.TLS)
			}
		})
	}
}
