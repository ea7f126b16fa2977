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

// runBootstrap creates, on an installation without any team, the first team,
// its owner, an org and one management and one standard API key, and prints
// them as JSON. The raw keys exist only in that output: the database keeps
// their SHA-256. It refuses to run once a team exists, so it cannot be used
// later to mint keys for someone else's org.
func runBootstrap(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	email := fs.String("owner-email", "", "")
	owner := fs.String("owner-name", "Owner", "")
	team := fs.String("team", "", "")
	org := fs.String("org", "", "")
	if err := fs.Parse(args); err != nil {
		return usageError{"bootstrap: " + err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("bootstrap: unexpected arguments %q", fs.Args())}
	}
	in := api.BootstrapInput{TeamName: *team, OwnerEmail: *email, OwnerName: *owner, OrgName: *org, OnlyIfEmpty: true}
	if err := validateBootstrap(in); err != nil {
		return usageError{"bootstrap: " + err.Error()}
	}
	st, err := openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := api.Bootstrap(ctx, st, in, time.Now())
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

func validateBootstrap(in api.BootstrapInput) error {
	var errs []error
	for _, f := range []struct{ flag, v string }{
		{"-team", in.TeamName}, {"-org", in.OrgName}, {"-owner-email", in.OwnerEmail}, {"-owner-name", in.OwnerName},
	} {
		flagName, v := f.flag, f.v
		switch {
		case v == "":
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
