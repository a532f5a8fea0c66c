package events

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The outbox writes envelopes without json.Marshal; what it writes must be what Marshal makes,
// which is what consumers (and Envelope's own decoding) expect.
func TestAppendEnvelopeMatchesMarshal(t *testing.T) {
	data, err := json.Marshal(map[string]any{"html": "<a href=\"x\">&</a>", "n": 1.5, "u": "é\u2028", "nested": []any{nil, true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range []time.Time{
		time.Date(2026, 12, 5, 6, 7, 8, 123456000, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 100000000, time.UTC),
	} {
		env := Envelope{ID: uuid.New(), Type: "identity.created", Timestamp: ts, Data: data}
		want, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendEnvelope(nil, &env); string(got) != string(want) {
			t.Errorf("appendEnvelope:\n got %s\nwant %s", got, want)
		}
	}
}
