package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/password"
	"github.com/latchhq/latch/events"
)

// outboxEvent is one event_outbox row as consumers read it: its type and its data.
type outboxEvent struct {
	Type string
	Data map[string]any
}

// outbox lists the events written after seq (0: all), in commit order, with their data.
func (b *bundle) outbox(t *testing.T, after int64) []outboxEvent {
	t.Helper()
	rows, err := b.db.Query(context.Background(), `SELECT type, payload->'data' FROM event_outbox WHERE seq > $1 ORDER BY seq`, after)
	if err != nil {
		t.Fatal(err)
	}
	var out []outboxEvent
	defer rows.Close()
	for rows.Next() {
		var ev outboxEvent
		var raw []byte
		if err := rows.Scan(&ev.Type, &raw); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &ev.Data); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// lastSeq is the outbox's position now: outbox(t, lastSeq) lists what happens next.
func (b *bundle) lastSeq(t *testing.T) int64 {
	t.Helper()
	var seq int64
	if err := b.db.QueryRow(context.Background(), `SELECT coalesce(max(seq), 0) FROM event_outbox`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	return seq
}

// types lists the events' types.
func types(evs []outboxEvent) string {
	out := make([]string, len(evs))
	for n, ev := range evs {
		out[n] = ev.Type
	}
	return strings.Join(out, ",")
}

// wantTypes fails unless evs have exactly these types, in this order.
func wantTypes(t *testing.T, what string, evs []outboxEvent, want ...string) {
	t.Helper()
	if got := types(evs); got != strings.Join(want, ",") {
		t.Fatalf("%s: events\n got  [%s]\n want [%s]", what, got, strings.Join(want, ","))
	}
}

// wantData fails unless every key of want is in data with that value (compared as JSON).
func wantData(t *testing.T, what string, data map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		got, _ := json.Marshal(data[k])
		exp, _ := json.Marshal(v)
		if string(got) != string(exp) {
			t.Errorf("%s: data.%s = %s, want %s (data %v)", what, k, got, exp, data)
		}
	}
}

// wantNoSecrets fails if any event carries a password hash, a password or a session token.
func (b *bundle) wantNoSecrets(t *testing.T, passwords ...string) {
	t.Helper()
	rows, err := b.db.Query(context.Background(), `SELECT payload::text FROM event_outbox`)
	if err != nil {
		t.Fatal(err)
	}
	payloads, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range payloads {
		for _, secret := range append([]string{"hashed_password", "$2a$", "$argon2", "ory_st_"}, passwords...) {
			if strings.Contains(p, secret) {
				t.Fatalf("an event carries %q: %s", secret, p)
			}
		}
	}
}

func adminCreate(t *testing.T, b *bundle, body map[string]any) string {
	t.Helper()
	status, res := call(t, "POST", b.admin.URL+"/admin/identities", body)
	if status != 201 {
		t.Fatalf("admin create: %d %v", status, res["_raw"])
	}
	return res["id"].(string)
}

// Every admin write records its events in its own transaction: created, updated, state_changed
// with the previous state, credentials_changed when a password is set, and on delete the
// sessions that ended with the identity.
func TestAdminActionsRecordTheirEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	adm := b.admin.URL + "/admin/identities"

	seq := b.lastSeq(t)
	bare := adminCreate(t, b, map[string]any{"traits": map[string]any{"email": "bare@example.com"}})
	evs := b.outbox(t, seq)
	wantTypes(t, "create without password", evs, events.TypeIdentityCreated)
	if evs[0].Data["flow"] != nil || evs[0].Data["identity"].(map[string]any)["id"] != bare {
		t.Errorf("admin create event: %v", evs[0].Data)
	}

	seq = b.lastSeq(t)
	withPassword := adminCreate(t, b, map[string]any{
		"traits":      map[string]any{"email": "pw@example.com"},
		"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"password": goodPassword}}},
	})
	evs = b.outbox(t, seq)
	wantTypes(t, "create with password", evs, events.TypeIdentityCreated, events.TypeIdentityCredentialsChanged)
	wantData(t, "create with password", evs[1].Data, map[string]any{
		"identity_id": withPassword, "credential_types": []string{"password"}, "actor": "admin", "flow": nil,
	})

	// A PUT of traits only keeps the password: no credentials_changed.
	seq = b.lastSeq(t)
	if s, r := call(t, "PUT", adm+"/"+withPassword, map[string]any{"traits": map[string]any{"email": "pw@example.com"}, "metadata_public": map[string]any{"plan": "pro"}}); s != 200 {
		t.Fatalf("put: %d %v", s, r["_raw"])
	}
	wantTypes(t, "put traits", b.outbox(t, seq), events.TypeIdentityUpdated)

	// A PUT that deactivates and sets a password: updated, state_changed, credentials_changed.
	seq = b.lastSeq(t)
	if s, r := call(t, "PUT", adm+"/"+withPassword, map[string]any{
		"traits": map[string]any{"email": "pw@example.com"}, "state": "inactive",
		"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"password": "another-good-passphrase"}}},
	}); s != 200 {
		t.Fatalf("put: %d %v", s, r["_raw"])
	}
	evs = b.outbox(t, seq)
	wantTypes(t, "put state and password", evs, events.TypeIdentityUpdated, events.TypeIdentityStateChanged, events.TypeIdentityCredentialsChanged)
	wantData(t, "state_changed", evs[1].Data, map[string]any{"previous_state": "active"})
	if evs[1].Data["identity"].(map[string]any)["state"] != "inactive" {
		t.Errorf("state_changed identity: %v", evs[1].Data["identity"])
	}
	wantData(t, "put credentials_changed", evs[2].Data, map[string]any{"identity_id": withPassword, "actor": "admin"})

	// A JSON Patch back to active: updated, state_changed from inactive.
	seq = b.lastSeq(t)
	if s, r := call(t, "PATCH", adm+"/"+withPassword, []map[string]any{{"op": "replace", "path": "/state", "value": "active"}}); s != 200 {
		t.Fatalf("patch: %d %v", s, r["_raw"])
	}
	evs = b.outbox(t, seq)
	wantTypes(t, "patch state", evs, events.TypeIdentityUpdated, events.TypeIdentityStateChanged)
	wantData(t, "patch state_changed", evs[1].Data, map[string]any{"previous_state": "inactive"})

	// An import of a hash is a credential set by an admin too.
	seq = b.lastSeq(t)
	imported := adminCreate(t, b, map[string]any{
		"traits":      map[string]any{"email": "import@example.com"},
		"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"hashed_password": argonHash(t, goodPassword)}}},
	})
	evs = b.outbox(t, seq)
	wantTypes(t, "import", evs, events.TypeIdentityCreated, events.TypeIdentityCredentialsChanged)
	wantData(t, "import", evs[1].Data, map[string]any{"identity_id": imported})

	// Deleting an identity with sessions ends them: session.revoked (identity_deleted) with
	// the active ones only, then identity.deleted, in the delete's transaction.
	_, reg := b.register(t, "signed-in@example.com", goodPassword)
	signedIn := reg["identity"].(map[string]any)["id"].(string)
	live := reg["session"].(map[string]any)["id"].(string)
	_, second := b.login(t, "signed-in@example.com", goodPassword)
	revoked := second["session"].(map[string]any)["id"].(string)
	if s, _ := call(t, "DELETE", b.admin.URL+"/admin/sessions/"+revoked, nil); s != 204 {
		t.Fatalf("revoke: %d", s)
	}
	seq = b.lastSeq(t)
	if s, _ := call(t, "DELETE", adm+"/"+signedIn, nil); s != 204 {
		t.Fatalf("delete: %d", s)
	}
	evs = b.outbox(t, seq)
	wantTypes(t, "delete with sessions", evs, events.TypeSessionRevoked, events.TypeIdentityDeleted)
	wantData(t, "delete session.revoked", evs[0].Data, map[string]any{
		"identity_id": signedIn, "session_ids": []string{live}, "reason": events.ReasonIdentityDeleted,
	})
	if evs[1].Data["identity"].(map[string]any)["id"] != signedIn {
		t.Errorf("identity.deleted: %v", evs[1].Data)
	}
	if n := b.count(t, "sessions"); n != 0 {
		t.Fatalf("%d sessions left after the identity's deletion", n)
	}

	// Without sessions, only identity.deleted.
	seq = b.lastSeq(t)
	if s, _ := call(t, "DELETE", adm+"/"+bare, nil); s != 204 {
		t.Fatalf("delete: %d", s)
	}
	wantTypes(t, "delete without sessions", b.outbox(t, seq), events.TypeIdentityDeleted)
	b.wantNoSecrets(t, goodPassword, "another-good-passphrase")
}

// An admin write that fails records nothing: its events are part of its transaction.
func TestFailedAdminWritesRecordNoEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	adm := b.admin.URL + "/admin/identities"
	id := adminCreate(t, b, map[string]any{"traits": map[string]any{"email": "stays@example.com"}})
	adminCreate(t, b, map[string]any{"traits": map[string]any{"email": "taken@example.com"}})
	seq := b.lastSeq(t)

	withPassword := func(traits map[string]any) map[string]any {
		return map[string]any{"traits": traits, "state": "inactive",
			"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"password": "another-good-passphrase"}}}}
	}
	// Invalid traits: refused while the identity is locked, before any write.
	if s, r := call(t, "PUT", adm+"/"+id, withPassword(map[string]any{"email": 42})); s != 400 {
		t.Fatalf("invalid traits: %d %v", s, r["_raw"])
	}
	// A taken identifier: refused by Postgres after the identity row was written.
	if s, r := call(t, "PUT", adm+"/"+id, withPassword(map[string]any{"email": "taken@example.com"})); s != 409 {
		t.Fatalf("taken identifier: %d %v", s, r["_raw"])
	}
	if s, r := call(t, "PATCH", adm+"/"+id, []map[string]any{{"op": "replace", "path": "/traits/email", "value": "taken@example.com"}}); s != 409 {
		t.Fatalf("patch to a taken identifier: %d %v", s, r["_raw"])
	}
	if s, r := call(t, "POST", adm, map[string]any{"traits": map[string]any{"email": "taken@example.com"},
		"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"password": goodPassword}}}}); s != 409 {
		t.Fatalf("create with a taken identifier: %d %v", s, r["_raw"])
	}
	if s, r := call(t, "DELETE", adm+"/"+"00000000-0000-4000-8000-000000000000", nil); s != 404 {
		t.Fatalf("delete unknown: %d %v", s, r["_raw"])
	}
	if evs := b.outbox(t, seq); len(evs) != 0 {
		t.Fatalf("failed admin writes recorded events: %s", types(evs))
	}
	if got := b.adminIdentity(t, id); got["state"] != "active" {
		t.Fatalf("a failed PUT changed the identity: %v", got)
	}
}

// A password changed in settings is identity.credentials_changed from the owner, with the flow
// and session; a profile change, or a login re-hashing the same password, is not.
func TestCredentialsChangedBySettingsNotByRehash(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, reg := b.register(t, "creds@example.com", goodPassword)
	token := reg["session_token"].(string)
	sessionID := reg["session"].(map[string]any)["id"].(string)
	identityID := reg["identity"].(map[string]any)["id"].(string)
	flow := b.flow(t, "settings", "X-Session-Token", token)
	submit := func(body map[string]any) {
		t.Helper()
		if s, r := call(t, "POST", b.public.URL+"/self-service/settings?flow="+flow, body, "X-Session-Token", token); s != 200 {
			t.Fatalf("settings: %d %v", s, r["_raw"])
		}
	}

	seq := b.lastSeq(t)
	submit(map[string]any{"method": "profile", "traits": map[string]any{"email": "creds@example.com", "name": map[string]any{"first": "Cred"}}})
	wantTypes(t, "profile", b.outbox(t, seq), events.TypeIdentityUpdated)

	seq = b.lastSeq(t)
	submit(map[string]any{"method": "password", "password": "a-brand-new-passphrase"})
	evs := b.outbox(t, seq)
	wantTypes(t, "password", evs, events.TypeIdentityUpdated, events.TypeIdentityCredentialsChanged)
	wantData(t, "settings credentials_changed", evs[1].Data, map[string]any{
		"identity_id": identityID, "credential_types": []string{"password"}, "actor": "self_service", "session_id": sessionID,
	})
	if f, _ := evs[1].Data["flow"].(map[string]any); f["id"] != flow || f["type"] != "settings" || f["method"] != "password" {
		t.Errorf("credentials_changed flow: %v", evs[1].Data["flow"])
	}
	if r, _ := evs[1].Data["request"].(map[string]any); r["method"] != "POST" {
		t.Errorf("credentials_changed request: %v", evs[1].Data["request"])
	}

	// An imported argon2id hash is re-hashed with bcrypt at the first login: the same
	// password, so no credentials_changed beyond the import's.
	seq = b.lastSeq(t)
	imported := adminCreate(t, b, map[string]any{
		"traits":      map[string]any{"email": "argon@example.com"},
		"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"hashed_password": argonHash(t, goodPassword)}}},
	})
	var before string
	if err := b.db.QueryRow(context.Background(), `SELECT c.config->>'hashed_password' FROM identity_credentials c WHERE c.identity_id = $1`, imported).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if s, r := b.login(t, "argon@example.com", goodPassword); s != 200 {
		t.Fatalf("login: %d %v", s, r["_raw"])
	}
	var after string
	if err := b.db.QueryRow(context.Background(), `SELECT c.config->>'hashed_password' FROM identity_credentials c WHERE c.identity_id = $1`, imported).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after == before {
		t.Fatal("the login did not re-hash the imported password")
	}
	wantTypes(t, "import then login", b.outbox(t, seq), events.TypeIdentityCreated, events.TypeIdentityCredentialsChanged, events.TypeSessionCreated)
	b.wantNoSecrets(t, goodPassword, "a-brand-new-passphrase")
}

// argonHash hashes pw with argon2id (tiny parameters), as an export from another system would.
func argonHash(t *testing.T, pw string) string {
	t.Helper()
	other, err := password.NewHasher(password.Config{Algorithm: "argon2", Argon2: password.Argon2Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}})
	if err != nil {
		t.Fatal(err)
	}
	hash, err := other.Hash(context.Background(), []byte(pw))
	if err != nil {
		t.Fatal(err)
	}
	return string(hash)
}

// byType keeps the events of one type.
func byType(evs []outboxEvent, typ string) []outboxEvent {
	var out []outboxEvent
	for _, ev := range evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

var updatedAt = regexp.MustCompile(`"updated_at":"[^"]*"`)

// A wrong password, an inactive identity and an unknown identifier each record login.failed
// with their reason, in a transaction of their own, and answer the client byte for byte alike.
func TestLoginFailuresAreRecordedNotShown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, reg := b.register(t, "victim@example.com", goodPassword)
	id := reg["identity"].(map[string]any)["id"].(string)
	flow := b.flow(t, "login")
	const typed = " Victim@Example.com" // as typed; the lookup normalises it
	attempt := func(pw string) (string, []outboxEvent) {
		t.Helper()
		seq := b.lastSeq(t)
		sessions := b.count(t, "sessions")
		status, res := call(t, "POST", b.public.URL+"/self-service/login?flow="+flow, map[string]any{
			"method": "password", "identifier": typed, "password": pw,
		}, "User-Agent", "events-test")
		wantInvalidCredentials(t, "failed login", status, res)
		if n := b.count(t, "sessions"); n != sessions {
			t.Fatalf("a failed login wrote a session")
		}
		// The same flow answers all three: only its updated_at, the time of the save, may differ.
		body := updatedAt.ReplaceAllString(res["_raw"].(string), `"updated_at":"-"`)
		return fmt.Sprintf("%d %s", status, body), b.outbox(t, seq)
	}

	wrong, evWrong := attempt(wrongPassword)
	if s, r := call(t, "PATCH", b.admin.URL+"/admin/identities/"+id, []map[string]any{{"op": "replace", "path": "/state", "value": "inactive"}}); s != 200 {
		t.Fatalf("deactivate: %d %v", s, r["_raw"])
	}
	inactive, evInactive := attempt(goodPassword)
	if s, _ := call(t, "DELETE", b.admin.URL+"/admin/identities/"+id, nil); s != 204 {
		t.Fatalf("delete: %d", s)
	}
	unknown, evUnknown := attempt(goodPassword)

	if wrong != unknown || wrong != inactive {
		t.Fatalf("the answers differ:\nwrong password: %s\nunknown:        %s\ninactive:       %s", wrong, unknown, inactive)
	}
	for _, c := range []struct {
		evs        []outboxEvent
		reason     string
		identityID any
	}{{evWrong, events.LoginWrongPassword, id}, {evInactive, events.LoginIdentityInactive, id}, {evUnknown, events.LoginUnknownIdentifier, nil}} {
		wantTypes(t, c.reason, c.evs, events.TypeLoginFailed)
		d := c.evs[0].Data
		wantData(t, c.reason, d, map[string]any{"identifier": typed, "reason": c.reason, "identity_id": c.identityID})
		if f, _ := d["flow"].(map[string]any); f["id"] != flow || f["type"] != "login" || f["method"] != "password" {
			t.Errorf("%s: flow %v", c.reason, d["flow"])
		}
		if r, _ := d["request"].(map[string]any); r["user_agent"] != "events-test" || r["method"] != "POST" {
			t.Errorf("%s: request %v", c.reason, d["request"])
		}
	}
	b.wantNoSecrets(t, goodPassword, wrongPassword)
}

// The throttle's lock of an (identifier, address) pair is identity.locked once, recorded with
// the failure that caused it; the attempts it refuses are login.failed "throttled". A new
// lockout after the first has ended is a new identity.locked.
func TestThrottleLockIsRecordedOncePerLockout(t *testing.T) {
	t.Parallel()
	b := setup(t, withThrottle(3, 50))
	_, reg := b.register(t, "lock@example.com", goodPassword)
	id := reg["identity"].(map[string]any)["id"].(string)
	seq := b.lastSeq(t)
	start := time.Now()
	for range 3 {
		s, r := b.loginFrom(t, "203.0.113.7", "lock@example.com", wrongPassword)
		wantInvalidCredentials(t, "wrong password", s, r)
	}
	for _, pw := range []string{wrongPassword, goodPassword} {
		s, r := b.loginFrom(t, "203.0.113.7", "lock@example.com", pw)
		wantInvalidCredentials(t, "locked pair", s, r)
	}
	evs := b.outbox(t, seq)
	wantTypes(t, "lockout", evs, events.TypeLoginFailed, events.TypeLoginFailed, events.TypeLoginFailed,
		events.TypeIdentityLocked, events.TypeLoginFailed, events.TypeLoginFailed)
	for n, want := range []string{"wrong_password", "wrong_password", "wrong_password", "", "throttled", "throttled"} {
		if want != "" && evs[n].Data["reason"] != want {
			t.Errorf("event %d: reason %v, want %s", n, evs[n].Data["reason"], want)
		}
	}
	locked := evs[3].Data
	wantData(t, "identity.locked", locked, map[string]any{"identity_id": id, "identifier": "lock@example.com", "failures": 3})
	until, err := time.Parse(time.RFC3339Nano, locked["until"].(string))
	if err != nil || !until.After(start) {
		t.Errorf("identity.locked until = %v (%v), want a time after the attempts started", locked["until"], err)
	}
	if r, _ := locked["request"].(map[string]any); r["ip"] != "203.0.113.7" {
		t.Errorf("identity.locked request: %v", locked["request"])
	}
	// Every wrong password, locked ones included, still counts against the address.
	b.wantCounter(t, "address", "203.0.113.7", 5, false)

	// The lock ends; three more failures lock the pair again: a second lockout, a second event.
	if _, err := b.db.Exec(context.Background(), `UPDATE login_throttle SET locked_until = now() - interval '1 second' WHERE kind = 'pair'`); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		s, r := b.loginFrom(t, "203.0.113.7", "lock@example.com", wrongPassword)
		wantInvalidCredentials(t, "wrong password after the lock", s, r)
	}
	if n := len(byType(b.outbox(t, seq), events.TypeIdentityLocked)); n != 2 {
		t.Fatalf("%d identity.locked events after two lockouts, want 2", n)
	}

	// An unknown identifier locks like a known one (nothing tells them apart), without an id.
	seq = b.lastSeq(t)
	for range 3 {
		s, r := b.loginFrom(t, "198.51.100.9", "ghost@example.com", wrongPassword)
		wantInvalidCredentials(t, "unknown identifier", s, r)
	}
	evs = byType(b.outbox(t, seq), events.TypeIdentityLocked)
	if len(evs) != 1 {
		t.Fatalf("%d identity.locked for the unknown identifier, want 1", len(evs))
	}
	wantData(t, "unknown identity.locked", evs[0].Data, map[string]any{"identity_id": nil, "identifier": "ghost@example.com"})
}

// A refresh login renews its session: session.extended with the login flow, not
// session.created (after-login webhooks fire for new sessions only).
func TestRefreshLoginRecordsSessionExtended(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, reg := b.register(t, "refresh@example.com", goodPassword)
	token := reg["session_token"].(string)
	sessionID := reg["session"].(map[string]any)["id"].(string)
	status, f := call(t, "GET", b.public.URL+"/self-service/login/api?refresh=true", nil, "X-Session-Token", token)
	if status != 200 {
		t.Fatalf("refresh flow: %d %v", status, f["_raw"])
	}
	seq := b.lastSeq(t)
	status, res := call(t, "POST", b.public.URL+"/self-service/login?flow="+f["id"].(string), map[string]any{
		"method": "password", "identifier": "refresh@example.com", "password": goodPassword,
	}, "X-Session-Token", token)
	if status != 200 || res["session"].(map[string]any)["id"] != sessionID {
		t.Fatalf("refresh login: %d %v", status, res["_raw"])
	}
	evs := b.outbox(t, seq)
	wantTypes(t, "refresh login", evs, events.TypeSessionExtended)
	if s, _ := evs[0].Data["session"].(map[string]any); s["id"] != sessionID {
		t.Errorf("session.extended session: %v", evs[0].Data["session"])
	}
	if fl, _ := evs[0].Data["flow"].(map[string]any); fl["id"] != f["id"] || fl["type"] != "login" {
		t.Errorf("session.extended flow: %v", evs[0].Data["flow"])
	}
	wantData(t, "refresh", evs[0].Data, map[string]any{"identity_id": reg["identity"].(map[string]any)["id"]})
}
