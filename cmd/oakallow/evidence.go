package main

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"oakallow/api/passkeys"
)

// maxEvidenceFile bounds the files verify-evidence reads.
const maxEvidenceFile = 1 << 20

// runVerifyEvidence checks decision evidence offline (issue 9 §7): given the
// evidence JSON served by GET /v1/approvals/{id}/evidence (one item, or the
// whole answer) and the reviewer's credential public key, it says which
// approval, level and decision the reviewer confirmed with their passkey. It
// needs no server and no database.
func runVerifyEvidence(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("verify-evidence", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	evPath := fs.String("evidence", "", "file with the evidence JSON")
	keyPath := fs.String("public-key", "", "file with the credential's COSE public key, base64url or base64")
	if err := fs.Parse(args); err != nil {
		return usageError{"verify-evidence: " + err.Error()}
	}
	if *evPath == "" || *keyPath == "" || fs.NArg() != 0 {
		return usageError{"verify-evidence needs -evidence FILE and -public-key FILE"}
	}
	evRaw, err := readSmallFile(*evPath)
	if err != nil {
		return err
	}
	keyRaw, err := readSmallFile(*keyPath)
	if err != nil {
		return err
	}
	key, err := decodeKey(strings.TrimSpace(string(keyRaw)))
	if err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	items, err := parseEvidence(evRaw)
	if err != nil {
		return err
	}
	verified := 0
	var failures []string
	for _, ev := range items {
		got, err := passkeys.VerifyEvidence(ev, key)
		if err != nil {
			failures = append(failures, fmt.Sprintf("level %d (%s by %s): %v", ev.Level, ev.Decision, ev.UserID, err))
			continue
		}
		verified++
		fmt.Fprintf(stdout, "verified: %s confirmed %q at level %d of approval %s (tool %s, parameters sha256 %s), "+
			"signed with passkey %s for %s at origin %s\n",
			ev.UserID, got.Decision, got.Level, got.ApprovalID, got.Tool, cmp.Or(got.ParamsHash, "(none)"),
			ev.PasskeyID, ev.RPID, got.Origin)
	}
	if verified == 0 {
		return fmt.Errorf("evidence does not verify with this public key: %s", strings.Join(failures, "; "))
	}
	return nil
}

func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEvidenceFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxEvidenceFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxEvidenceFile)
	}
	return b, nil
}

func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) > 0 {
			return b, nil
		}
	}
	return nil, errors.New("not base64url or base64")
}

// parseEvidence reads one evidence object or an answer with "items".
func parseEvidence(raw []byte) ([]passkeys.Evidence, error) {
	var list struct {
		Items []passkeys.Evidence `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err == nil && len(list.Items) > 0 {
		return list.Items, nil
	}
	var one passkeys.Evidence
	if err := json.Unmarshal(raw, &one); err != nil {
		return nil, fmt.Errorf("evidence is not JSON evidence: %w", err)
	}
	if one.ApprovalID == "" {
		return nil, errors.New("evidence names no approval")
	}
	return []passkeys.Evidence{one}, nil
}
