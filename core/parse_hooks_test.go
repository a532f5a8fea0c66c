package core_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/webhooks"
)

// Parse hooks answer with identity changes; their answers are checked like admin input and
// applied through the same paths as an admin's changes.

func TestSettingsParseHookDeactivatingGoesThroughTheAdminPath(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	b := setupHooks(t, []webhooks.Hook{callHook("p", e.URL, true)}, true, func(c *core.Config) {
		onSettingsProfile(webHook("p", true))(c)
		c.Session.KeepSessionsOnDeactivate = false
	})
	_, reg := b.register(t, "parsed@example.com", goodPassword)
	token := reg["session_token"].(string)
	flow := b.flow(t, "settings", "X-Session-Token", token)
	e.respond(http.StatusOK, `{"identity":{"state":"inactive","metadata_public":{"reason":"hook"}}}`)
	status, res := call(t, "POST", b.public.URL+"/self-service/settings?flow="+flow,
		map[string]any{"method": "profile", "traits": map[string]any{"email": "parsed@example.com"}}, "X-Session-Token", token)
	if status != 200 {
		t.Fatalf("settings: %d %v", status, res["_raw"])
	}
	if b.whoami(t, token) != 401 {
		t.Error("a hook deactivated the identity but its session still works")
	}
	types := b.eventTypes(t)
	if !slices.Contains(types, "identity.state_changed:settings/profile") || !slices.Contains(types, "session.revoked") {
		t.Errorf("events = %v, want identity.state_changed and session.revoked", types)
	}
}

func TestParseHookRepliesAreCheckedLikeAdminInput(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	b := setupHooks(t, []webhooks.Hook{callHook("p", e.URL, true)}, true, onSettingsProfile(webHook("p", true)))
	_, reg := b.register(t, "checked@example.com", goodPassword)
	token := reg["session_token"].(string)
	id := reg["identity"].(map[string]any)["id"].(string)
	for _, reply := range []string{
		`{"identity":{"metadata_public":"not an object"}}`,
		`{"identity":{"metadata_admin":[1,2]}}`,
		`{"identity":{"traits":"x"}}`,
		`{"identity":{"state":"banned"}}`,
		`{"identity":{"external_id":""}}`,
		`{"identity":{"metadata_public":{"a":"nul\u0000here"}}}`,
	} {
		e.respond(http.StatusOK, reply)
		flow := b.flow(t, "settings", "X-Session-Token", token)
		status, res := call(t, "POST", b.public.URL+"/self-service/settings?flow="+flow,
			map[string]any{"method": "profile", "traits": map[string]any{"email": "checked@example.com"}}, "X-Session-Token", token)
		if status != http.StatusBadGateway {
			t.Errorf("reply %s: %d %v, want 502", reply, status, res["_raw"])
		}
	}
	after := b.adminIdentity(t, id)
	if after["metadata_public"] != nil || after["metadata_admin"] != nil || after["state"] != "active" {
		t.Errorf("a refused reply was stored: %v", after["_raw"])
	}
}

func TestParseHookTakenExternalIDAnswersLikeATakenIdentifier(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	b := setupHooks(t, []webhooks.Hook{callHook("p", e.URL, true)}, true, onRegistration(webHook("p", true)))
	e.respond(http.StatusOK, `{"identity":{"external_id":"crm-1"}}`)
	if s, r := b.register(t, "first@example.com", goodPassword); s != 200 {
		t.Fatalf("first: %d %v", s, r["_raw"])
	}
	status, res := b.register(t, "second@example.com", goodPassword)
	if status != 400 {
		t.Fatalf("taken external_id: %d %v", status, res["_raw"])
	}
	wantMessages(t, res, ":4000007")
	if n := b.count(t, "identities"); n != 1 {
		t.Errorf("%d identities", n)
	}
}
