package notifytest

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Block Kit limits, from Slack's block and composition-object reference.
const (
	maxBlocks          = 50
	maxHeaderText      = 150
	maxSectionText     = 3000
	maxSectionFields   = 10
	maxFieldText       = 2000
	maxActionsElements = 25
	maxContextElements = 10
	maxButtonText      = 75
	maxButtonURL       = 3000
	maxButtonValue     = 2000
	maxActionID        = 255
	maxBlockID         = 255
)

// blockTypes is the set of layout block types Slack accepts in messages.
var blockTypes = map[string]bool{
	"actions": true, "context": true, "divider": true, "file": true, "header": true,
	"image": true, "input": true, "markdown": true, "rich_text": true, "section": true,
	"video": true, "table": true, "context_actions": true,
}

// ValidateWebhookMessage checks a Slack incoming-webhook JSON body the way
// the fake answers it: a non-empty "text" fallback, and a "blocks" array of
// 1–50 blocks whose structure and lengths Slack would accept. For the block
// types oakallow sends (header, section, actions, context, divider) every
// documented limit is checked; other known types are checked for their type
// only.
func ValidateWebhookMessage(body []byte) error {
	var msg map[string]json.RawMessage
	if err := json.Unmarshal(body, &msg); err != nil {
		return fmt.Errorf("invalid_payload: %v", err)
	}
	var text string
	if raw, ok := msg["text"]; !ok || json.Unmarshal(raw, &text) != nil || text == "" {
		return errors.New("no_text: the top-level text fallback is missing or empty")
	}
	raw, ok := msg["blocks"]
	if !ok {
		return errors.New("invalid_blocks: no blocks array")
	}
	var blocks []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return fmt.Errorf("invalid_blocks: blocks is not an array of objects: %v", err)
	}
	if len(blocks) == 0 || len(blocks) > maxBlocks {
		return fmt.Errorf("invalid_blocks: %d blocks, want 1-%d", len(blocks), maxBlocks)
	}
	for i, b := range blocks {
		if err := validateBlock(b); err != nil {
			return fmt.Errorf("invalid_blocks: block %d: %w", i, err)
		}
	}
	return nil
}

func validateBlock(b map[string]json.RawMessage) error {
	typ, err := stringField(b, "type")
	if err != nil {
		return err
	}
	if !blockTypes[typ] {
		return fmt.Errorf("unknown block type %q", typ)
	}
	if id, ok := b["block_id"]; ok {
		var s string
		if json.Unmarshal(id, &s) != nil || s == "" || len(s) > maxBlockID {
			return fmt.Errorf("block_id must be a 1-%d character string", maxBlockID)
		}
	}
	switch typ {
	case "header":
		if err := allowKeys(b, "type", "block_id", "text", "level"); err != nil {
			return err
		}
		return validateTextObject(b["text"], "header text", maxHeaderText, true)
	case "section":
		if err := allowKeys(b, "type", "block_id", "text", "fields", "accessory", "expand"); err != nil {
			return err
		}
		_, hasText := b["text"]
		rawFields, hasFields := b["fields"]
		if !hasText && !hasFields {
			return errors.New("section needs text or fields")
		}
		if hasText {
			if err := validateTextObject(b["text"], "section text", maxSectionText, false); err != nil {
				return err
			}
		}
		if hasFields {
			var fields []json.RawMessage
			if err := json.Unmarshal(rawFields, &fields); err != nil || len(fields) == 0 || len(fields) > maxSectionFields {
				return fmt.Errorf("section fields must be 1-%d text objects", maxSectionFields)
			}
			for i, f := range fields {
				if err := validateTextObject(f, fmt.Sprintf("section field %d", i), maxFieldText, false); err != nil {
					return err
				}
			}
		}
		if acc, ok := b["accessory"]; ok {
			return validateElement(acc)
		}
		return nil
	case "actions":
		if err := allowKeys(b, "type", "block_id", "elements"); err != nil {
			return err
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(b["elements"], &elems); err != nil || len(elems) == 0 || len(elems) > maxActionsElements {
			return fmt.Errorf("actions needs 1-%d elements", maxActionsElements)
		}
		for _, e := range elems {
			if err := validateElement(e); err != nil {
				return err
			}
		}
		return nil
	case "context":
		if err := allowKeys(b, "type", "block_id", "elements"); err != nil {
			return err
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(b["elements"], &elems); err != nil || len(elems) == 0 || len(elems) > maxContextElements {
			return fmt.Errorf("context needs 1-%d elements", maxContextElements)
		}
		for i, e := range elems {
			var probe struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal(e, &probe); err != nil {
				return fmt.Errorf("context element %d: %v", i, err)
			}
			if probe.Type == "image" {
				continue
			}
			if err := validateTextObject(e, fmt.Sprintf("context element %d", i), maxSectionText, false); err != nil {
				return err
			}
		}
		return nil
	case "divider":
		return allowKeys(b, "type", "block_id")
	}
	return nil
}

// validateElement checks an interactive element; only buttons are checked
// in depth.
func validateElement(raw json.RawMessage) error {
	var e map[string]json.RawMessage
	if err := json.Unmarshal(raw, &e); err != nil {
		return fmt.Errorf("element is not an object: %v", err)
	}
	typ, err := stringField(e, "type")
	if err != nil {
		return fmt.Errorf("element: %w", err)
	}
	if typ != "button" {
		return nil
	}
	if err := allowKeys(e, "type", "text", "action_id", "url", "value", "style", "confirm", "accessibility_label"); err != nil {
		return fmt.Errorf("button: %w", err)
	}
	if err := validateTextObject(e["text"], "button text", maxButtonText, true); err != nil {
		return err
	}
	for key, max := range map[string]int{"action_id": maxActionID, "url": maxButtonURL, "value": maxButtonValue} {
		if raw, ok := e[key]; ok {
			var s string
			if json.Unmarshal(raw, &s) != nil || s == "" || len(s) > max {
				return fmt.Errorf("button %s must be a 1-%d character string", key, max)
			}
		}
	}
	if raw, ok := e["style"]; ok {
		var s string
		if json.Unmarshal(raw, &s) != nil || (s != "primary" && s != "danger") {
			return errors.New("button style must be primary or danger")
		}
	}
	return nil
}

// validateTextObject checks a composition text object.
func validateTextObject(raw json.RawMessage, what string, maxLen int, plainOnly bool) error {
	if raw == nil {
		return fmt.Errorf("%s: missing", what)
	}
	var t map[string]json.RawMessage
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("%s: not a text object", what)
	}
	if err := allowKeys(t, "type", "text", "emoji", "verbatim"); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	typ, err := stringField(t, "type")
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch {
	case typ == "plain_text":
	case typ == "mrkdwn" && !plainOnly:
		if _, ok := t["emoji"]; ok {
			return fmt.Errorf("%s: emoji is only valid on plain_text", what)
		}
	default:
		return fmt.Errorf("%s: type %q not allowed here", what, typ)
	}
	text, err := stringField(t, "text")
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n := utf8.RuneCountInString(text); n > maxLen {
		return fmt.Errorf("%s: %d characters, more than %d", what, n, maxLen)
	}
	return nil
}

// stringField returns a required, non-empty string member.
func stringField(obj map[string]json.RawMessage, key string) (string, error) {
	raw, ok := obj[key]
	if !ok {
		return "", fmt.Errorf("%q missing", key)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || s == "" {
		return "", fmt.Errorf("%q must be a non-empty string", key)
	}
	return s, nil
}

// allowKeys fails on members Slack does not define for the object.
func allowKeys(obj map[string]json.RawMessage, keys ...string) error {
	for k := range obj {
		known := false
		for _, want := range keys {
			if k == want {
				known = true
				break
			}
		}
		if !known {
			return fmt.Errorf("unexpected member %q", k)
		}
	}
	return nil
}
