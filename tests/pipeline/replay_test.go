package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/latchhq/latch/tests/latchtest"
)

// TestReplayKeepsWebhookID: replaying a succeeded delivery through the admin API sends it again
// with the same webhook-id, the same bytes and a valid Standard Webhooks signature.
//
// Why it proves it: signatures are checked with the Standard Webhooks reference library, not
// with Latch's code, so a signing scheme that only agrees with itself fails; a wrong secret must
// fail the same check, so the check is not vacuous. The receiver must get exactly one more
// request, for the replayed delivery only, under its id (receivers de-duplicate on it), with the
// first request's body byte for byte and a timestamp no older than the first one's, and the
// delivery must be `succeeded` again with both attempts counted.
func TestReplayKeepsWebhookID(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	e.startWorker("latch worker")

	ids := e.registerMany(2)
	byIdentity := e.waitSucceeded(ids, nil, 30*time.Second)
	target, other := byIdentity[ids[0]], byIdentity[ids[1]]

	before := e.recv.requests()
	if n := len(byID(before)[target.ID]); n != 1 {
		t.Fatalf("delivery %s: want one request before the replay, got %d", target.ID, n)
	}
	if err := e.api.replay(t.Context(), target.ID); err != nil {
		t.Fatalf("replay: %v", err)
	}

	e.waitFor(30*time.Second, "the replayed request at the receiver", func() (bool, string) {
		n := len(byID(e.recv.requests())[target.ID])
		return n >= 2, fmt.Sprintf("%d requests for %s", n, target.ID)
	})
	e.waitFor(10*time.Second, "the replayed delivery to be succeeded again", func() (bool, string) {
		for _, d := range e.deliveries() {
			if d.ID == target.ID {
				return d.State == "succeeded" && d.Attempts >= 2, fmt.Sprintf("%+v", d)
			}
		}
		return false, "delivery not found"
	})

	reqs := byID(e.recv.requests())
	first, replayed := reqs[target.ID][0], reqs[target.ID][len(reqs[target.ID])-1]
	if n := len(reqs[other.ID]); n != 1 {
		t.Errorf("delivery %s was not replayed but the receiver got %d requests for it", other.ID, n)
	}

	for _, r := range []request{first, replayed} {
		verifyRequest(t, r, target.ID, ids[0])
	}
	if !bytes.Equal(first.Body, replayed.Body) {
		t.Errorf("the replay sent other bytes than the first attempt:\nfirst:  %s\nreplay: %s", latchtest.Clip(first.Body), latchtest.Clip(replayed.Body))
	}
	ts1, _ := strconv.ParseInt(first.Header.Get("webhook-timestamp"), 10, 64)
	ts2, _ := strconv.ParseInt(replayed.Header.Get("webhook-timestamp"), 10, 64)
	if ts2 < ts1 {
		t.Errorf("the replay's webhook-timestamp %d is older than the first attempt's %d", ts2, ts1)
	}
	if n := len(e.recv.requests()) - len(before); n != 1 {
		t.Errorf("want exactly one request from the replay, got %d", n)
	}
}

// verifyRequest checks one webhook request the way a receiver would: webhook-id, Standard
// Webhooks signature (with the reference library; an unrelated secret must not verify) and the
// identity.created envelope of the identity registered.
func verifyRequest(t *testing.T, r request, deliveryID, identityID string) {
	t.Helper()
	what := fmt.Sprintf("request %d (webhook-id %s)", r.Seq, r.ID)
	if r.ID != deliveryID {
		t.Errorf("%s: want webhook-id %s (the delivery id)", what, deliveryID)
	}
	wh, err := standardwebhooks.NewWebhook(signingSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(r.Body, r.Header); err != nil {
		t.Errorf("%s: signature does not verify with the configured secret: %v; headers: webhook-timestamp %q webhook-signature %q",
			what, err, r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"))
	}
	wrong, err := standardwebhooks.NewWebhook("whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB")
	if err != nil {
		t.Fatal(err)
	}
	if err := wrong.Verify(r.Body, r.Header); err == nil {
		t.Errorf("%s: signature verifies with an unrelated secret too", what)
	}
	var env struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(r.Body, &env); err != nil || env.Type != "identity.created" || env.ID == "" {
		t.Errorf("%s: want an identity.created event envelope, got %s (%v)", what, latchtest.Clip(r.Body), err)
	}
	if got := r.identityID(); got != identityID {
		t.Errorf("%s: want data.identity.id %s, got %q", what, identityID, got)
	}
}
