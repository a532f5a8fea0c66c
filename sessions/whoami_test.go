package sessions

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/identity"
)

// whoami writes its answer by hand for speed; it must say exactly what encoding/json says for
// the same session with its public identity, escaping included.
func TestWhoamiAnswersLikeTheSessionJSON(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	i := &identity.Identity{
		SchemaID:       "default",
		Traits:         json.RawMessage(`{"email":"w@example.com","name":{"first":"<Zoë> & \"Co\"\u2028"}}`),
		MetadataPublic: json.RawMessage(`{"plan":"free","n":12.5}`),
		MetadataAdmin:  json.RawMessage(`{"secret":"never in whoami"}`),
	}
	ext := "ext-<1>"
	i.ExternalID = &ext
	b.inTx(t, func(tx pgx.Tx) error {
		return b.ids.Insert(context.Background(), tx, i, nil)
	})
	_, token := b.issue(t, i)

	w := serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(token))
	wantStatus(t, w, http.StatusOK)
	var got any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("whoami is not valid JSON: %v\n%s", err, w.Body)
	}

	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-Session-Token", token)
	s, err := b.mgr.FromRequest(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	s.Identity = s.Identity.Public()
	raw, _ := json.Marshal(s)
	var want any
	_ = json.Unmarshal(raw, &want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("whoami:\n%s\nencoding/json:\n%s", w.Body, raw)
	}
	if w.Header().Get("Content-Length") == "" || w.Header().Get("X-Kratos-Authenticated-Identity-Id") != i.ID.String() {
		t.Errorf("headers = %v", w.Header())
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\back`, "<tag>&amp;", "ctl\x01\n\t\r\b\f\x7f", "ünïcødé 日本", "\u2028\u2029", "bad\xffutf8"} {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

// Concurrent whoamis share batches (lookup.go). Each must get its own answer: its own session's
// identity, a 401 for a revoked or unknown token, never a neighbour's row, and no request may
// be left waiting.
func TestWhoamiConcurrentLookupsGetTheirOwnAnswers(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	type caller struct {
		token      string
		identityID string // empty: 401 expected
	}
	var callers []caller
	for n := range 12 {
		i := b.newIdentity(t, "batch-"+string(rune('a'+n))+"@example.com")
		s, token := b.issue(t, i)
		want := i.ID.String()
		if n%4 == 3 {
			b.exec(t, `UPDATE sessions SET active = false WHERE id = $1`, s.ID)
			want = ""
		}
		callers = append(callers, caller{token, want})
	}
	callers = append(callers, caller{"ory_st_unknownunknownunknownunknown00", ""}, caller{"", ""})

	const goroutines, rounds = 48, 25
	errs := make(chan string, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for r := range rounds {
				c := callers[(g*7+r)%len(callers)]
				header := map[string]string{}
				if c.token != "" {
					header = tokenHeader(c.token)
				}
				w := serve(b.public, http.MethodGet, "/sessions/whoami", header)
				switch {
				case c.identityID == "" && w.Code != http.StatusUnauthorized:
					errs <- "status " + strconv.Itoa(w.Code) + " for a revoked or unknown token"
					return
				case c.identityID != "" && (w.Code != http.StatusOK || w.Header().Get("X-Kratos-Authenticated-Identity-Id") != c.identityID):
					errs <- "status " + strconv.Itoa(w.Code) + ", identity " + w.Header().Get("X-Kratos-Authenticated-Identity-Id") + ", want 200 and " + c.identityID
					return
				case c.identityID != "" && !strings.Contains(w.Body.String(), `"identity":{"id":"`+c.identityID+`"`):
					errs <- "body of another session: " + w.Body.String()
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	b.mgr.lookups.mu.Lock()
	defer b.mgr.lookups.mu.Unlock()
	if b.mgr.lookups.running != 0 || len(b.mgr.lookups.pending) != 0 {
		t.Fatalf("after the last answer: %d batches in flight, %d lookups pending", b.mgr.lookups.running, len(b.mgr.lookups.pending))
	}
}
