package api

import (
	"embed"
	"io/fs"
	"net/http"
)

// The interactive API reference at /docs is Stoplight Elements, served
// from the binary (api/docsassets, version 9.0.15 — the one huma pins, with
// the same sha384 integrity; refresh with `make docs-assets`). huma's own
// /docs page loads it from a CDN, which a self-hosted, possibly offline
// install cannot reach and a security product should not depend on.

//go:embed docsassets/web-components.min.js docsassets/styles.min.css docsassets/LICENSE-stoplight-elements
var docsAssets embed.FS

const docsPage = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>oakallow API reference</title>
  <link rel="stylesheet" href="/docs/assets/styles.min.css">
  <script src="/docs/assets/web-components.min.js"></script>
</head>
<body style="height: 100vh;">
  <elements-api apiDescriptionUrl="/openapi.json" router="hash" layout="sidebar" tryItCredentialsPolicy="same-origin"></elements-api>
</body>
</html>
`

// registerDocs serves /docs and its assets.
func registerDocs(mux *http.ServeMux) {
	mux.HandleFunc("GET /docs", func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'")
		_, _ = w.Write([]byte(docsPage))
	})
	assets, _ := fs.Sub(docsAssets, "docsassets")
	files := http.StripPrefix("/docs/assets/", http.FileServerFS(assets))
	mux.Handle("GET /docs/assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		files.ServeHTTP(w, r)
	}))
}
