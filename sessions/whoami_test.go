package sessions

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
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
