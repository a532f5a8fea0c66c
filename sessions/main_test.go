package sessions

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/dbtest"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	secretA = []byte("secret-A-0123456789abcdef")
	secretB = []byte("secret-B-0123456789abcdef")
)

// testBundle is what most tests need: a fresh database, a manager and its two muxes.
type testBundle struct {
	pool   *pgxpool.Pool
	ids    *identity.Store
	mgr    *Manager
	public *http.ServeMux
	admin  *http.ServeMux
}

// setup gives the test its own migrated database and a manager configured by cfg (secret A
// when cfg has none).
func setup(t testing.TB, cfg Config) *testBundle {
	t.Helper()
	pool := dbtest.New(t)
	if cfg.CookieSecrets == nil {
		cfg.CookieSecrets = [][]byte{secretA}
	}
	b := &testBundle{pool: pool, ids: identity.NewStore("https://latch.test/")}
	b.mgr = b.manager(t, cfg)
	b.public, b.admin = http.NewServeMux(), http.NewServeMux()
	b.mgr.PublicRoutes(b.public)
	b.mgr.AdminRoutes(b.admin)
	return b
}

// manager makes another manager on the same database, e.g. with other secrets.
func (b *testBundle) manager(t testing.TB, cfg Config) *Manager {
	t.Helper()
	m, err := NewManager(b.pool, b.ids, events.NewOutbox(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// inTx runs fn in a transaction that commits when fn succeeds.
func (b *testBundle) inTx(t testing.TB, fn func(tx pgx.Tx) error) {
	t.Helper()
	if err := pgx.BeginFunc(context.Background(), b.pool, fn); err != nil {
		t.Fatal(err)
	}
}

// newIdentity inserts an active identity with admin metadata, as a registration would.
func (b *testBundle) newIdentity(t testing.TB, email string) *identity.Identity {
	t.Helper()
	i := &identity.Identity{
		SchemaID:      "default",
		Traits:        json.RawMessage(`{"email":"` + email + `"}`),
		MetadataAdmin: json.RawMessage(`{"plan":"gold"}`),
	}
	b.inTx(t, func(tx pgx.Tx) error {
		return b.ids.Insert(context.Background(), tx, i, []identity.Credential{{
			Type: identity.CredentialsTypePassword, Identifiers: []string{email}, Config: json.RawMessage(`{"hashed_password":"x"}`),
		}})
	})
	return i
}

// issue issues a committed session for i from a request with a recognisable device.
func (b *testBundle) issue(t testing.TB, i *identity.Identity) (*Session, string) {
	t.Helper()
	dev := NewDevice(api.Meta{ClientAddress: netip.MustParseAddr("203.0.113.7"), UserAgent: "latch-test/1.0"})
	var s *Session
	var token string
	b.inTx(t, func(tx pgx.Tx) error {
		var err error
		s, token, err = b.mgr.Issue(context.Background(), tx, i, "password", dev)
		return err
	})
	return s, token
}

// exec runs SQL that a test needs to bend time or state.
func (b *testBundle) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := b.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

// serve sends one request to mux and returns the recorded response.
func serve(mux http.Handler, method, target string, header map[string]string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	return w
}

func tokenHeader(token string) map[string]string { return map[string]string{"X-Session-Token": token} }

// wantStatus fails the test with the body when the status is not want.
func wantStatus(t *testing.T, w *httptest.ResponseRecorder, want int) {
	t.Helper()
	if w.Code != want {
		t.Fatalf("status = %d, want %d; body: %s", w.Code, want, strings.TrimSpace(w.Body.String()))
	}
}

// decode reads the JSON body of w into a T.
func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %s: %v", w.Body.String(), err)
	}
	return v
}

// sessionCookie returns the session cookie w set, or fails.
func sessionCookie(t *testing.T, w *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	for _, c := range w.Result().Cookies() {
		if c.Name == CookieNameDefault {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", CookieNameDefault, w.Header().Values("Set-Cookie"))
	return nil
}

// eventsOf lists the outbox events of one type, oldest first, decoded into data maps.
func (b *testBundle) eventsOf(t testing.TB, eventType string) []map[string]any {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `SELECT payload->'data' FROM event_outbox WHERE type = $1 ORDER BY seq`, eventType)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[map[string]any])
	if err != nil {
		t.Fatal(err)
	}
	return out
}
