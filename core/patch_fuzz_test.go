package core

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/latchhq/latch/core/identity"
)

// FuzzParseIdentityPatch feeds parse-hook replies (the "identity" object of a web_hook's 200
// answer) to the checker. Whatever an endpoint sends, the checker must not panic, and what it
// accepts must be storable as the admin API would store it: objects for traits and metadata, a
// known state, a bounded external_id, no NUL and valid UTF-8 everywhere.
func FuzzParseIdentityPatch(f *testing.F) {
	for _, seed := range []string{
		`{"traits":{"email":"a@example.com"}}`,
		`{"metadata_public":{"plan":"pro"},"metadata_admin":null}`,
		`{"state":"inactive"}`,
		`{"external_id":"crm-42"}`,
		`{"metadata_public":"nope"}`,
		`{"traits":[1,2,3]}`,
		`{"metadata_admin":{"k":"nul\u0000"}}`,
		`{"metadata_admin":{"k":"escaped \\u0000 is fine"}}`,
		`{"state":"deleted"}`,
		`{"external_id":""}`,
		`[]`, `null`, `"x"`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := parseIdentityPatch(raw)
		if err != nil {
			return
		}
		for name, v := range map[string]json.RawMessage{"traits": p.Traits, "metadata_public": p.MetadataPublic, "metadata_admin": p.MetadataAdmin} {
			if v == nil {
				continue
			}
			var obj map[string]any
			if err := json.Unmarshal(v, &obj); err != nil || obj == nil {
				t.Fatalf("accepted %s that is not an object: %q", name, v)
			}
			if hasEscapedNUL(v) || !utf8.Valid(v) {
				t.Fatalf("accepted %s that Postgres cannot store: %q", name, v)
			}
		}
		if p.State != "" && p.State != identity.StateActive && p.State != identity.StateInactive {
			t.Fatalf("accepted state %q", p.State)
		}
		if p.ExternalID != nil {
			if id := *p.ExternalID; id == "" || len(id) > maxExternalIDLength || !utf8.ValidString(id) {
				t.Fatalf("accepted external_id %q", id)
			}
			for _, r := range *p.ExternalID {
				if r == 0 {
					t.Fatalf("accepted external_id with NUL %q", *p.ExternalID)
				}
			}
		}
	})
}
