package mailtest

import (
	"io"
	"mime/quotedprintable"
	"strings"
)

// decodeBody undoes a quoted-printable transfer encoding.
func decodeBody(encoding, body string) string {
	if !strings.EqualFold(encoding, "quoted-printable") {
		return body
	}
	out, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(body)))
	if err != nil {
		return body
	}
	return string(out)
}
