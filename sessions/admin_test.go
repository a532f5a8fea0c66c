package sessions

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestAdminGet(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	i := b.newIdentity(t, "admin-get@example.com")
	s, _ := b.issue(t, i)

	for _, prefix := range []string{"/admin", ""} {
		base := prefix + "/sessions/"
		wantStatus(t, serve(b.admin, http.MethodGet, base+"nope", nil), http.StatusBadRequest)
		wantStatus(t, serve(b.admin, http.MethodGet, base+uuid.NewString(), nil), http.StatusNotFound)
		wantStatus(t, serve(b.admin, http.MethodGet, base+s.ID.String()+"?expand=everything", nil), http.StatusBadRequest)

		w := serve(b.admin, http.MethodGet, base+s.ID.String(), nil)
		wantStatus(t, w, http.StatusOK)
		bare := decode[map[string]any](t, w)
		if bare["id"] != s.ID.String() || bare["identity"] != nil || bare["devices"] != nil || bare["active"] != true {
			t.Errorf("without expand: %v", bare)
		}

		w = serve(b.admin, http.MethodGet, base+s.ID.String()+"?expand=identity&expand=devices", nil)
		wantStatus(t, w, http.StatusOK)
		full := decode[map[string]any](t, w)
		id, _ := full["identity"].(map[string]any)
		if id["id"] != i.ID.String() || id["metadata_admin"].(map[string]any)["plan"] != "gold" {
			t.Errorf("expanded identity = %v, want it with metadata_admin", id)
		}
		if devices, _ := full["devices"].([]any); len(devices) != 1 {
			t.Errorf("expanded devices = %v", full["devices"])
		}
	}

	// Without the identity, active ignores the identity's state, as in Kratos.
	b.exec(t, `UPDATE identities SET state = 'inactive' WHERE id = $1`, i.ID)
	if got := decode[map[string]any](t, serve(b.admin, http.MethodGet, "/admin/sessions/"+s.ID.String(), nil)); got["active"] != true {
		t.Errorf("without expand, active = %v", got["active"])
	}
	if got := decode[map[string]any](t, serve(b.admin, http.MethodGet, "/admin/sessions/"+s.ID.String()+"?expand=identity", nil)); got["active"] != false {
		t.Errorf("with expand=identity, active = %v", got["active"])
	}
}

func TestAdminListPagination(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	a, c := b.newIdentity(t, "a@example.com"), b.newIdentity(t, "c@example.com")
	var all []*Session
	for n := range 5 {
		i := a
		if n%2 == 1 {
			i = c
		}
		s, _ := b.issue(t, i)
		all = append(all, s)
	}
	b.exec(t, `UPDATE sessions SET active = false WHERE id = $1`, all[1].ID)

	pages := func(target string) (ids []uuid.UUID, sizes []int) {
		for target != "" {
			w := serve(b.admin, http.MethodGet, target, nil)
			wantStatus(t, w, http.StatusOK)
			list := decode[[]*Session](t, w)
			sizes = append(sizes, len(list))
			for _, s := range list {
				ids = append(ids, s.ID)
			}
			target = nextLink(t, w)
		}
		return ids, sizes
	}

	ids, sizes := pages("/admin/sessions?page_size=2")
	if len(ids) != 5 || len(sizes) != 3 || sizes[0] != 2 || sizes[2] != 1 {
		t.Fatalf("pages = %v (%d ids)", sizes, len(ids))
	}
	for n, id := range ids { // newest first
		if want := all[len(all)-1-n].ID; id != want {
			t.Errorf("position %d: %s, want %s", n, id, want)
		}
	}
	if ids, _ := pages("/admin/sessions?active=true&page_size=3"); len(ids) != 4 {
		t.Errorf("active=true listed %d, want 4", len(ids))
	}
	if ids, _ := pages("/sessions?active=false"); len(ids) != 1 || ids[0] != all[1].ID {
		t.Errorf("active=false listed %v, want [%s]", ids, all[1].ID)
	}
	wantStatus(t, serve(b.admin, http.MethodGet, "/admin/sessions?active=maybe", nil), http.StatusBadRequest)
	wantStatus(t, serve(b.admin, http.MethodGet, "/admin/sessions?page_token=%25%25", nil), http.StatusBadRequest)

	w := serve(b.admin, http.MethodGet, "/admin/sessions?expand=identity", nil)
	for _, s := range decode[[]*Session](t, w) {
		if s.Identity == nil || s.Devices != nil {
			t.Errorf("expand=identity: identity %v, devices %v", s.Identity, s.Devices)
		}
	}

	// One identity's sessions, with identity and devices, and a total.
	w = serve(b.admin, http.MethodGet, "/admin/identities/"+a.ID.String()+"/sessions?page_size=1", nil)
	wantStatus(t, w, http.StatusOK)
	if got := w.Header().Get("X-Total-Count"); got != "3" {
		t.Errorf("X-Total-Count = %q, want 3", got)
	}
	if list := decode[[]*Session](t, w); len(list) != 1 || list[0].Identity == nil || len(list[0].Devices) != 1 {
		t.Errorf("identity sessions page = %+v", list)
	}
	if ids, _ := pages("/admin/identities/" + c.ID.String() + "/sessions?active=false"); len(ids) != 1 {
		t.Errorf("identity c inactive sessions = %v", ids)
	}
	wantStatus(t, serve(b.admin, http.MethodGet, "/admin/identities/x/sessions", nil), http.StatusBadRequest)
}

func TestAdminExtend(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Lifespan: time.Hour, EarliestPossibleExtend: 10 * time.Minute})
	i := b.newIdentity(t, "extend@example.com")
	s, token := b.issue(t, i)

	extend := func(id string, want int) *Session {
		t.Helper()
		w := serve(b.admin, http.MethodPatch, "/admin/sessions/"+id+"/extend", nil)
		wantStatus(t, w, want)
		if want != http.StatusOK {
			return nil
		}
		return decode[*Session](t, w)
	}

	// Fresh session: expires in an hour, more than 10 minutes away, so nothing changes.
	got := extend(s.ID.String(), http.StatusOK)
	if !got.ExpiresAt.Equal(s.ExpiresAt) || got.Identity == nil {
		t.Errorf("early extend moved expiry %v -> %v (or identity missing)", s.ExpiresAt, got.ExpiresAt)
	}

	// Five minutes left: inside the window, so the expiry moves to now + lifespan.
	b.exec(t, `UPDATE sessions SET expires_at = now() + interval '5 minutes' WHERE id = $1`, s.ID)
	before := time.Now()
	got = extend(s.ID.String(), http.StatusOK)
	if got.ExpiresAt.Before(before.Add(time.Hour-time.Second)) || got.ExpiresAt.After(time.Now().Add(time.Hour)) {
		t.Errorf("late extend: expires_at = %v, want about now + 1h", got.ExpiresAt)
	}

	// An expired session is extended too (Kratos does not check), and works again.
	b.exec(t, `UPDATE sessions SET expires_at = now() - interval '1 minute' WHERE id = $1`, s.ID)
	wantStatus(t, serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(token)), http.StatusUnauthorized)
	if got = extend(s.ID.String(), http.StatusOK); !got.Active {
		t.Errorf("extended expired session is not active: %+v", got)
	}
	wantStatus(t, serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(token)), http.StatusOK)

	extend(uuid.NewString(), http.StatusNotFound)
	extend("bad", http.StatusBadRequest)
	wantStatus(t, serve(b.admin, http.MethodPatch, "/sessions/"+s.ID.String()+"/extend", nil), http.StatusOK)
}

func TestAdminExtendDefaultAlwaysWrites(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}) // earliest_possible_extend defaults to the lifespan
	s, _ := b.issue(t, b.newIdentity(t, "always@example.com"))
	// Most of the lifespan is left, yet the default window covers all of it.
	b.exec(t, `UPDATE sessions SET expires_at = expires_at - interval '1 minute' WHERE id = $1`, s.ID)
	w := serve(b.admin, http.MethodPatch, "/admin/sessions/"+s.ID.String()+"/extend", nil)
	wantStatus(t, w, http.StatusOK)
	if got := decode[*Session](t, w); got.ExpiresAt.Before(s.ExpiresAt) {
		t.Errorf("extend with defaults did not move expiry: %v -> %v", s.ExpiresAt, got.ExpiresAt)
	}
}

func TestAdminRevoke(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	s, token := b.issue(t, b.newIdentity(t, "revoke@example.com"))

	wantStatus(t, serve(b.admin, http.MethodDelete, "/admin/sessions/bad", nil), http.StatusBadRequest)
	wantStatus(t, serve(b.admin, http.MethodDelete, "/admin/sessions/"+uuid.NewString(), nil), http.StatusNotFound)
	wantStatus(t, serve(b.admin, http.MethodDelete, "/admin/sessions/"+s.ID.String(), nil), http.StatusNoContent)
	wantStatus(t, serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(token)), http.StatusUnauthorized)
	if got := decode[map[string]any](t, serve(b.admin, http.MethodGet, "/admin/sessions/"+s.ID.String(), nil)); got["active"] != false {
		t.Errorf("revoked session still active: %v", got)
	}
}

func TestAdminDeleteIdentitySessions(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	i := b.newIdentity(t, "delete@example.com")
	other := b.newIdentity(t, "keep@example.com")
	_, token := b.issue(t, i)
	b.issue(t, i)
	_, otherToken := b.issue(t, other)

	wantStatus(t, serve(b.admin, http.MethodDelete, "/admin/identities/"+i.ID.String()+"/sessions", nil), http.StatusNoContent)
	var left int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM sessions WHERE identity_id = $1`, i.ID).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d sessions left (%v), want them deleted", left, err)
	}
	wantStatus(t, serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(token)), http.StatusUnauthorized)
	wantStatus(t, serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(otherToken)), http.StatusOK)

	// No sessions left is fine; an unknown identity is not.
	wantStatus(t, serve(b.admin, http.MethodDelete, "/identities/"+i.ID.String()+"/sessions", nil), http.StatusNoContent)
	wantStatus(t, serve(b.admin, http.MethodDelete, "/admin/identities/"+uuid.NewString()+"/sessions", nil), http.StatusNotFound)
	wantStatus(t, serve(b.admin, http.MethodDelete, "/admin/identities/bad/sessions", nil), http.StatusBadRequest)
}
