package devtest

import (
	"context"
	"os/exec"
	"testing"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// Chromium is the headless browser the browser tests drive (Debian's
// chromium package; .ci/run installs it), or "" when none is installed.
func Chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// ChromiumTab starts a headless Chromium for t, stopped when t ends, and
// returns the context of its one tab, with which chromedp.Run drives it. It
// skips t when no Chromium is installed. Run the first actions on this
// context itself: the first run starts the browser, and one on a context
// with a deadline would end the browser with that deadline.
func ChromiumTab(t testing.TB) context.Context {
	t.Helper()
	path := Chromium()
	if path == "" {
		t.Skip("no chromium installed (apt-get install chromium); .ci/run installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path),
		chromedp.NoSandbox, chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	return ctx
}

// PasskeyAuthenticator gives a tab a virtual platform authenticator (the
// DevTools WebAuthn domain) that holds discoverable credentials and verifies
// the user at once, as a person with a passkey on their laptop would.
func PasskeyAuthenticator() chromedp.Action {
	return AddPasskeyAuthenticator(webauthn.AuthenticatorTransportInternal, nil)
}

// AddPasskeyAuthenticator adds a virtual authenticator as PasskeyAuthenticator
// does, reached over transport, and keeps its id in id (when not nil) so that
// a test can steer it. A second one of the same person (a security key or a
// phone) is an external one: Chromium allows one internal authenticator.
func AddPasskeyAuthenticator(transport webauthn.AuthenticatorTransport, id *webauthn.AuthenticatorID) chromedp.Action {
	return chromedp.Tasks{webauthn.Enable().WithEnableUI(false), chromedp.ActionFunc(func(ctx context.Context) error {
		got, err := webauthn.AddVirtualAuthenticator(&webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
			Transport: transport, HasResidentKey: true, HasUserVerification: true,
			IsUserVerified: true, AutomaticPresenceSimulation: true}).Do(ctx)
		if id != nil {
			*id = got
		}
		return err
	})}
}
