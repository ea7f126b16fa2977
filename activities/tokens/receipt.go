package tokens

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Receipt is signed proof of one permission-check decision: the verdict
// and the request it answered (SPEC §2, §5). Receipts do not expire; they
// stop verifying only when their key is retired.
type Receipt struct {
	CheckID  string
	Org      string
	Tool     string
	Tenant   string
	Resource string
	Method   string
	// ParamsHash is HashParameters of the checked parameters ("" for none).
	ParamsHash string
	// Permission is the verdict: allowed, requires_approval or disabled.
	Permission string
	// Level, Scope and RuleID say which step of the resolution chain decided.
	Level  int
	Scope  string
	RuleID string
	// DecidedAt travels as unix milliseconds, so it lines up with the audit
	// log; VerifyReceipt returns it in UTC.
	DecidedAt time.Time
	// KeyID is the signing key's id; SignReceipt sets it.
	KeyID string
}

// receiptClaims is the wire form of Receipt.
type receiptClaims struct {
	Typ  string `json:"typ"`
	Kid  string `json:"kid"`
	Chk  string `json:"chk"`
	Org  string `json:"org"`
	Tl   string `json:"tl"`
	Tn   string `json:"tn,omitempty"`
	Rs   string `json:"rs,omitempty"`
	Mt   string `json:"mt,omitempty"`
	Ph   string `json:"ph,omitempty"`
	Perm string `json:"perm"`
	Lvl  int    `json:"lvl"`
	Scp  string `json:"scp,omitempty"`
	Rule string `json:"rule,omitempty"`
	At   int64  `json:"at"`
}

func (r *receiptClaims) header() (string, string) { return r.Typ, r.Kid }

// SignReceipt signs r with the active key and returns
// "oak_rcpt_<payload>.<mac>". It sets r.KeyID. CheckID, Org, Tool,
// Permission and DecidedAt are required. The construction is the token's,
// under a different prefix and type, so neither can pass for the other.
func (k *Keyring) SignReceipt(r Receipt) (string, error) {
	if err := r.validate(); err != nil {
		return "", fmt.Errorf("sign receipt: %w", err)
	}
	payload, err := json.Marshal(&receiptClaims{
		Typ: typReceipt, Kid: k.active.id, Chk: r.CheckID, Org: r.Org, Tl: r.Tool,
		Tn: r.Tenant, Rs: r.Resource, Mt: r.Method, Ph: r.ParamsHash, Perm: r.Permission,
		Lvl: r.Level, Scp: r.Scope, Rule: r.RuleID, At: r.DecidedAt.UnixMilli(),
	})
	if err != nil {
		return "", fmt.Errorf("sign receipt: %w", err)
	}
	s, err := k.seal(receiptPrefix, payload)
	if err != nil {
		return "", fmt.Errorf("sign receipt: %w", err)
	}
	return s, nil
}

func (r *Receipt) validate() error {
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"check id", r.CheckID}, {"org", r.Org}, {"tool", r.Tool}, {"permission", r.Permission},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if r.DecidedAt.IsZero() {
		missing = append(missing, "decision time")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrInvalidClaims, strings.Join(missing, ", "))
	}
	if !validParamsHash(r.ParamsHash) {
		return fmt.Errorf("%w: params hash must be empty or 64 lower-case hex digits", ErrInvalidClaims)
	}
	return nil
}

// VerifyReceipt authenticates a receipt and returns what it certifies.
// Errors wrap ErrMalformed, ErrUnknownKey or ErrBadSignature.
func (k *Keyring) VerifyReceipt(s string) (Receipt, error) {
	var w receiptClaims
	if err := k.open(s, receiptPrefix, typReceipt, &w); err != nil {
		return Receipt{}, fmt.Errorf("verify receipt: %w", err)
	}
	r := Receipt{
		CheckID: w.Chk, Org: w.Org, Tool: w.Tl, Tenant: w.Tn, Resource: w.Rs, Method: w.Mt,
		ParamsHash: w.Ph, Permission: w.Perm, Level: w.Lvl, Scope: w.Scp, RuleID: w.Rule,
		DecidedAt: time.UnixMilli(w.At).UTC(), KeyID: w.Kid,
	}
	if err := r.validate(); err != nil {
		return Receipt{}, fmt.Errorf("verify receipt: %w: %w", ErrMalformed, err)
	}
	return r, nil
}
