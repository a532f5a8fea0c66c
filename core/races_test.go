package core_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/webhooks"
)

// These tests race a user's step, held inside a slow before-persist web_hook, against an
// admin's write, with real concurrency: the hook's endpoint signals when the step reached it
// and holds its answer until the admin's write has committed. Whatever the admin did must
// survive, and the user's step must not commit on a session or identity that is gone.

// gate is a hook endpoint that holds each call until released.
type gate struct {
	*endpoint
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{endpoint: newEndpoint(t), entered: make(chan struct{}), release: make(chan struct{})}
	g.answer.Store(func(w http.ResponseWriter, _ []byte) {
		g.once.Do(func() { close(g.entered) })
		<-g.release
		w.WriteHeader(http.StatusNoContent)
	})
	t.Cleanup(func() {
		select {
		case <-g.release:
		default:
			close(g.release)
		}
	})
	return g
}

// wait blocks until the step is inside the hook.
func (g *gate) wait(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the step never reached its hook")
	}
}

type raceAnswer struct {
	status int
	body   map[string]any
}

// async runs a request in the background and hands its answer over.
func async(t *testing.T, method, u string, body any, header ...string) <-chan raceAnswer {
	out := make(chan raceAnswer, 1)
	go func() {
		status, res := call(t, method, u, body, header...)
		out <- raceAnswer{status, res}
	}()
	return out
}

func onSettingsProfile(entries ...hooks.Entry) option {
	return withHooks(func(l *hooks.Lists) {
		l.Settings.Methods = map[string][]hooks.Entry{hooks.Profile: entries}
	})
}

// settingsRace registers a user, opens a settings flow and starts a profile submit that will
// wait inside the gate's hook.
func settingsRace(t *testing.T, g *gate) (b *bundle, identityID, token string, result <-chan raceAnswer) {
	t.Helper()
	b = setupHooks(t, []webhooks.Hook{slowHook("guard", g.URL, false)}, true, func(c *core.Config) {
		onSettingsProfile(webHook("guard", false))(c)
		c.HookDeadline = raceDeadline
	})
	_, reg := b.register(t, "racer@example.com", goodPassword)
	token = reg["session_token"].(string)
	identityID = reg["identity"].(map[string]any)["id"].(string)
	flow := b.flow(t, "settings", "X-Session-Token", token)
	result = async(t, "POST", b.public.URL+"/self-service/settings?flow="+flow, map[string]any{
		"method": "profile", "traits": map[string]any{"email": "racer@example.com", "name": map[string]any{"first": "Late"}},
	}, "X-Session-Token", token)
	g.wait(t)
	return b, identityID, token, result
}

// raceDeadline is how long a held hook may wait for the admin's write: far longer than that
// write takes, even on a loaded CI machine; the gate releases it as soon as the write is done.
const raceDeadline = 20 * time.Second

// slowHook is callHook with room for the gate to hold the call.
func slowHook(id, url string, parse bool) webhooks.Hook {
	h := callHook(id, url, parse)
	h.Timeout = raceDeadline
	return h
}

func (b *bundle) adminIdentity(t *testing.T, id string) map[string]any {
	t.Helper()
	status, res := call(t, "GET", b.admin.URL+"/admin/identities/"+id, nil)
	if status != 200 {
		t.Fatalf("admin get: %d %v", status, res["_raw"])
	}
	return res
}

func TestSettingsRacingAdminDeactivationKeepsTheAdminsWrite(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	b, id, token, result := settingsRace(t, g)

	status, res := call(t, "PATCH", b.admin.URL+"/admin/identities/"+id, []map[string]any{
		{"op": "replace", "path": "/state", "value": "inactive"},
		{"op": "add", "path": "/metadata_admin", "value": map[string]any{"blocked": true}},
	})
	if status != 200 {
		t.Fatalf("admin patch: %d %v", status, res["_raw"])
	}
	close(g.release)
	got := <-result
	if e, _ := got.body["error"].(map[string]any); got.status != 401 || e["id"] != "session_inactive" {
		t.Fatalf("settings after deactivation: %d %v", got.status, got.body["_raw"])
	}
	after := b.adminIdentity(t, id)
	if after["state"] != "inactive" {
		t.Errorf("state = %v: the settings write put the old state back", after["state"])
	}
	if m, _ := after["metadata_admin"].(map[string]any); m["blocked"] != true {
		t.Errorf("metadata_admin = %v: the settings write put the old metadata back", after["metadata_admin"])
	}
	if traits := after["traits"].(map[string]any); traits["name"] != nil {
		t.Errorf("traits = %v: the settings write committed on a revoked session", traits)
	}
	if s, _ := b.login(t, "racer@example.com", goodPassword); s != 400 {
		t.Errorf("the blocked user logs in again: %d", s)
	}
	if b.whoami(t, token) != 401 {
		t.Error("the blocked user's session still works")
	}
}

func TestSettingsRacingAdminPutKeepsTheAdminsWrite(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	b, id, _, result := settingsRace(t, g)

	status, res := call(t, "PUT", b.admin.URL+"/admin/identities/"+id, map[string]any{
		"schema_id": "default", "state": "inactive",
		"traits":         map[string]any{"email": "racer@example.com"},
		"metadata_admin": map[string]any{"blocked": "put"},
	})
	if status != 200 {
		t.Fatalf("admin put: %d %v", status, res["_raw"])
	}
	close(g.release)
	if got := <-result; got.status != 401 {
		t.Fatalf("settings after the admin's PUT: %d %v", got.status, got.body["_raw"])
	}
	after := b.adminIdentity(t, id)
	if m, _ := after["metadata_admin"].(map[string]any); after["state"] != "inactive" || m["blocked"] != "put" {
		t.Errorf("state %v, metadata_admin %v: the settings write undid the admin's PUT", after["state"], after["metadata_admin"])
	}
}

func TestSettingsRacingAdminMetadataKeepsBoth(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	b, id, token, result := settingsRace(t, g)

	status, res := call(t, "PATCH", b.admin.URL+"/admin/identities/"+id, []map[string]any{
		{"op": "add", "path": "/metadata_admin", "value": map[string]any{"tier": "gold"}},
	})
	if status != 200 {
		t.Fatalf("admin patch: %d %v", status, res["_raw"])
	}
	close(g.release)
	if got := <-result; got.status != 200 {
		t.Fatalf("settings: %d %v", got.status, got.body["_raw"])
	}
	after := b.adminIdentity(t, id)
	if m, _ := after["metadata_admin"].(map[string]any); m["tier"] != "gold" {
		t.Errorf("metadata_admin = %v: the admin's write was lost", after["metadata_admin"])
	}
	if name, _ := after["traits"].(map[string]any)["name"].(map[string]any); name["first"] != "Late" {
		t.Errorf("traits = %v: the user's change was lost", after["traits"])
	}
	if b.whoami(t, token) != 200 {
		t.Error("the session stopped working")
	}
}

func TestSettingsRacingAdminDeleteAnswers401(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	b, id, _, result := settingsRace(t, g)
	if status, res := call(t, "DELETE", b.admin.URL+"/admin/identities/"+id, nil); status != 204 {
		t.Fatalf("admin delete: %d %v", status, res["_raw"])
	}
	close(g.release)
	if got := <-result; got.status != 401 {
		t.Fatalf("settings after the identity was deleted: %d %v", got.status, got.body["_raw"])
	}
	if n := b.count(t, "identities"); n != 0 {
		t.Errorf("%d identities after delete", n)
	}
}

func TestSettingsRacingSessionRevocationCommitsNothing(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	b, id, _, result := settingsRace(t, g)
	if status, res := call(t, "DELETE", b.admin.URL+"/admin/identities/"+id+"/sessions", nil); status != 204 {
		t.Fatalf("admin revoke: %d %v", status, res["_raw"])
	}
	close(g.release)
	if got := <-result; got.status != 401 {
		t.Fatalf("settings on a revoked session: %d %v", got.status, got.body["_raw"])
	}
	if traits := b.adminIdentity(t, id)["traits"].(map[string]any); traits["name"] != nil {
		t.Errorf("traits = %v: the write committed on a revoked session", traits)
	}
}

func TestLoginRacingAdminDeactivationIssuesNoSession(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	b := setupHooks(t, []webhooks.Hook{slowHook("deny", g.URL, false)}, true, func(c *core.Config) {
		withHooks(func(l *hooks.Lists) {
			l.Login.Methods = map[string][]hooks.Entry{hooks.Password: {webHook("deny", false)}}
		})(c)
		c.HookDeadline = raceDeadline
	})
	_, reg := b.register(t, "late@example.com", goodPassword)
	id := reg["identity"].(map[string]any)["id"].(string)
	before := b.count(t, "sessions")
	flow := b.flow(t, "login")
	result := async(t, "POST", b.public.URL+"/self-service/login?flow="+flow,
		map[string]any{"method": "password", "identifier": "late@example.com", "password": goodPassword})
	g.wait(t)
	if status, res := call(t, "PATCH", b.admin.URL+"/admin/identities/"+id,
		[]map[string]any{{"op": "replace", "path": "/state", "value": "inactive"}}); status != 200 {
		t.Fatalf("admin patch: %d %v", status, res["_raw"])
	}
	close(g.release)
	got := <-result
	if got.status != 400 {
		t.Fatalf("login of an identity deactivated meanwhile: %d %v", got.status, got.body["_raw"])
	}
	wantMessages(t, got.body, ":4000006")
	if n := b.count(t, "sessions"); n != before {
		t.Errorf("%d sessions, was %d: a session was issued to a blocked identity", n, before)
	}
}

func TestFlowsAreSingleUse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reg := b.flow(t, "registration")
	submit := func(email string) (int, map[string]any) {
		return call(t, "POST", b.public.URL+"/self-service/registration?flow="+reg, map[string]any{
			"method": "password", "password": goodPassword, "traits": map[string]any{"email": email},
		})
	}
	if s, r := submit("first@example.com"); s != 200 {
		t.Fatalf("first submit: %d %v", s, r["_raw"])
	}
	for _, email := range []string{"first@example.com", "second@example.com"} {
		s, r := submit(email)
		if s != 400 || r["state"] != "passed_challenge" {
			t.Fatalf("resubmitted registration (%s): %d %v", email, s, r["_raw"])
		}
		wantMessages(t, r, ":4000001")
	}
	if n := b.count(t, "identities"); n != 1 {
		t.Fatalf("%d identities from one flow", n)
	}

	login := b.flow(t, "login")
	submitLogin := func() (int, map[string]any) {
		return call(t, "POST", b.public.URL+"/self-service/login?flow="+login,
			map[string]any{"method": "password", "identifier": "first@example.com", "password": goodPassword})
	}
	before := b.count(t, "sessions")
	if s, r := submitLogin(); s != 200 {
		t.Fatalf("login: %d %v", s, r["_raw"])
	}
	if s, r := submitLogin(); s != 400 {
		t.Fatalf("resubmitted login: %d %v", s, r["_raw"])
	}
	if n := b.count(t, "sessions"); n != before+1 {
		t.Fatalf("%d sessions from one login flow", n-before)
	}
}

func TestConcurrentSubmitsOfOneFlowCreateOneThing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if s, r := b.register(t, "known@example.com", goodPassword); s != 200 {
		t.Fatalf("register: %d %v", s, r["_raw"])
	}
	const n = 8
	run := func(kind string, body func(int) map[string]any) []int {
		flow := b.flow(t, kind)
		var wg sync.WaitGroup
		statuses := make([]int, n)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				statuses[i], _ = call(t, "POST", b.public.URL+"/self-service/"+kind+"?flow="+flow, body(i))
			})
		}
		close(start)
		wg.Wait()
		return statuses
	}
	identities, sessions := b.count(t, "identities"), b.count(t, "sessions")
	got := run("registration", func(i int) map[string]any {
		return map[string]any{"method": "password", "password": goodPassword,
			"traits": map[string]any{"email": fmt.Sprintf("burst%d@example.com", i)}}
	})
	if countOf(got, 200) != 1 || countOf(got, 400) != n-1 || b.count(t, "identities") != identities+1 {
		t.Fatalf("concurrent submits of one registration flow: statuses %v, %d new identities", got, b.count(t, "identities")-identities)
	}
	sessions = b.count(t, "sessions")
	got = run("login", func(int) map[string]any {
		return map[string]any{"method": "password", "identifier": "known@example.com", "password": goodPassword}
	})
	if countOf(got, 200) != 1 || countOf(got, 400) != n-1 || b.count(t, "sessions") != sessions+1 {
		t.Fatalf("concurrent submits of one login flow: statuses %v, %d new sessions", got, b.count(t, "sessions")-sessions)
	}
}

func countOf(xs []int, v int) int {
	n := 0
	for _, x := range xs {
		if x == v {
			n++
		}
	}
	return n
}
