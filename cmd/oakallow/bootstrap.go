package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/mail"
	"time"
	"unicode/utf8"

	"oakallow/api"
)

// maxBootstrapName bounds the names bootstrap takes.
const maxBootstrapName = 200

// runBootstrap sets up a new installation without SQL: the first team and
// an invitation for its owner, printed as JSON with the one-time sign-up
// link (its token exists only in that output). With -org it also creates
// that org with one management and one standard key, likewise printed once.
// It refuses to run once a team exists, so it cannot be used later to enter
// or mint keys for someone else's team.
func runBootstrap(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	email := fs.String("owner-email", "", "")
	team := fs.String("team", "", "")
	org := fs.String("org", "", "")
	if err := fs.Parse(args); err != nil {
		return usageError{"bootstrap: " + err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("bootstrap: unexpected arguments %q", fs.Args())}
	}
	in := api.FirstTeamInput{TeamName: *team, OwnerEmail: *email, OrgName: *org, PublicURL: getenv("OAKALLOW_PUBLIC_URL")}
	if err := validateBootstrap(in); err != nil {
		return usageError{"bootstrap: " + err.Error()}
	}
	caps, err := loadDiscoveryCaps()
	if err != nil {
		return err
	}
	in.DiscoveryCaps = &caps
	st, err := openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := api.BootstrapFirstTeam(ctx, st, in, time.Now())
	if errors.Is(err, api.ErrAlreadyBootstrapped) {
		return errors.New("bootstrap: this installation already has a team; bootstrap only sets up a new one")
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

func validateBootstrap(in api.FirstTeamInput) error {
	var errs []error
	for _, f := range []struct {
		flag, v  string
		required bool
	}{
		{"-team", in.TeamName, true}, {"-owner-email", in.OwnerEmail, true}, {"-org", in.OrgName, false},
	} {
		flagName, v := f.flag, f.v
		switch {
		case v == "" && f.required:
			errs = append(errs, fmt.Errorf("%s is required", flagName))
		case !utf8.ValidString(v) || utf8.RuneCountInString(v) > maxBootstrapName:
			errs = append(errs, fmt.Errorf("%s must be valid UTF-8 of at most %d characters", flagName, maxBootstrapName))
		}
	}
	if in.OwnerEmail != "" {
		if a, err := mail.ParseAddress(in.OwnerEmail); err != nil || a.Address != in.OwnerEmail {
			errs = append(errs, errors.New("-owner-email is not a plain e-mail address (name@example.com)"))
		}
	}
	return errors.Join(errs...)
}
