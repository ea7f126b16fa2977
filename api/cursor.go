package api

import (
	"encoding/base64"
	"net/http"
	"strconv"
)

// Cursors are opaque to clients: base64url of an internal position.

func encodeCursor(pos string) string {
	if pos == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(pos))
}

func decodeCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) > 200 {
		return "", problem(http.StatusBadRequest, CodeBadRequest, "cursor is not one this API returned")
	}
	return string(b), nil
}

func decodeSeqCursor(c string) (int64, error) {
	s, err := decodeCursor(c)
	if err != nil || s == "" {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, problem(http.StatusBadRequest, CodeBadRequest, "cursor is not one this API returned")
	}
	return n, nil
}
