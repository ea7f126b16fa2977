package passkeys

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Config configures the relying party.
type Config struct {
	// RPID is the WebAuthn relying-party id: the registrable domain the
	// passkeys belong to ("oakallow.example.com", or "localhost" in
	// development). Required. Passkeys enrolled under one RP id work only
	// under it, so it must not change once people have enrolled.
	RPID string
	// RPName is the name authenticators show. Default "oakallow".
	RPName string
	// Origins are the web origins ceremonies may come from, scheme and host
	// (and port), e.g. "https://oakallow.example.com". At least one; each must
	// be https, or http on localhost. Each origin's host must be RPID or a
	// subdomain of it (WebAuthn §5.1.4.1).
	Origins []string
	// CeremonyTTL is how long a started ceremony may be finished. Default 5 min.
	CeremonyTTL time.Duration
}

// Validate checks c and fills in defaults.
func (c *Config) Validate() error {
	c.RPID = strings.ToLower(strings.TrimSpace(c.RPID))
	if c.RPID == "" {
		return errors.New("passkeys: relying-party id is required")
	}
	if strings.ContainsAny(c.RPID, ":/ ") {
		return fmt.Errorf("passkeys: relying-party id %q must be a bare host name", c.RPID)
	}
	if c.RPName == "" {
		c.RPName = "oakallow"
	}
	if len(c.Origins) == 0 {
		return errors.New("passkeys: at least one origin is required")
	}
	for i, o := range c.Origins {
		u, err := url.Parse(strings.TrimSpace(o))
		if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("passkeys: origin %q is not scheme://host[:port]", o)
		}
		host := strings.ToLower(u.Hostname())
		switch {
		case u.Scheme == "https":
		case u.Scheme == "http" && host == "localhost":
		default:
			return fmt.Errorf("passkeys: origin %q must be https (plain http only on localhost)", o)
		}
		if host != c.RPID && !strings.HasSuffix(host, "."+c.RPID) {
			return fmt.Errorf("passkeys: origin %q is not within the relying-party id %q", o, c.RPID)
		}
		c.Origins[i] = u.Scheme + "://" + strings.ToLower(u.Host)
	}
	if c.CeremonyTTL == 0 {
		c.CeremonyTTL = 5 * time.Minute
	}
	if c.CeremonyTTL < 10*time.Second || c.CeremonyTTL > time.Hour {
		return fmt.Errorf("passkeys: ceremony lifetime %s outside 10 s … 1 h", c.CeremonyTTL)
	}
	return nil
}
