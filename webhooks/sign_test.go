package webhooks

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func TestSecretNewAndParse(t *testing.T) {
	t.Parallel()
	s := NewSecret()
	if !strings.HasPrefix(s, "whsec_") {
		t.Fatalf("NewSecret() = %q, no whsec_ prefix", s)
	}
	key, err := ParseSecret(s)
	if err != nil || len(key) != 24 {
		t.Fatalf("ParseSecret(NewSecret()) = %d bytes, %v", len(key), err)
	}
	if NewSecret() == s {
		t.Error("two NewSecret calls returned the same secret")
	}

	enc := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	for _, tc := range []struct {
		in, want string
	}{
		{enc(24), ""}, // prefix missing
		{"whsec_", "empty"},
		{"whsec_not*base64!", "not standard (padded) base64"},
		{"whsec_" + base64.RawStdEncoding.EncodeToString(make([]byte, 25)), "padded"},
		{"whsec_" + enc(16), "16 bytes"},
		{"whsec_" + enc(65), "65 bytes"},
	} {
		_, err := ParseSecret(tc.in)
		if !errors.Is(err, ErrInvalidSecret) {
			t.Errorf("ParseSecret(%q) = %v, want ErrInvalidSecret", tc.in, err)
			continue
		}
		if tc.want == "" {
			tc.want = "prefix"
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSecret(%q) = %q, want it to say %q", tc.in, err, tc.want)
		}
	}
	for _, n := range []int{24, 32, 64} {
		if _, err := ParseSecret("whsec_" + enc(n)); err != nil {
			t.Errorf("ParseSecret of %d bytes: %v", n, err)
		}
	}
}

// TestSignVerifiesWithReferenceLibrary checks Sign against the Standard Webhooks Go library,
// which shares no code with it, including a rotation: both the old and the new secret sign, and
// a receiver holding either verifies.
func TestSignVerifiesWithReferenceLibrary(t *testing.T) {
	t.Parallel()
	oldSecret, newSecret := NewSecret(), NewSecret()
	body := []byte(`{"id":"e1","type":"identity.created","data":{"identity":{"id":"i1"}}}`)
	msgID := "0198c7e4-5b1e-7c1a-9b0e-3f4f2a1c0d9e"
	now := time.Now()

	sig, err := Sign([]string{newSecret, oldSecret}, msgID, now, body)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(sig, " ")
	if len(parts) != 2 || !strings.HasPrefix(parts[0], "v1,") || !strings.HasPrefix(parts[1], "v1,") {
		t.Fatalf("signature header %q: want two space-separated v1 signatures", sig)
	}
	headers := http.Header{}
	headers.Set("webhook-id", msgID)
	headers.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	headers.Set("webhook-signature", sig)

	for name, secret := range map[string]string{"old": oldSecret, "new": newSecret} {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, headers); err != nil {
			t.Errorf("receiver with only the %s secret: %v", name, err)
		}
		// The signature covers the body, the id and the timestamp.
		if err := wh.Verify(append([]byte(nil), append(body[:len(body)-1:len(body)-1], ' ', '}')...), headers); err == nil {
			t.Errorf("%s secret verified a modified body", name)
		}
		h2 := headers.Clone()
		h2.Set("webhook-id", msgID+"x")
		if err := wh.Verify(body, h2); err == nil {
			t.Errorf("%s secret verified another webhook-id", name)
		}
	}
	stranger, _ := standardwebhooks.NewWebhook(NewSecret())
	if err := stranger.Verify(body, headers); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Errorf("unrelated secret: %v, want ErrNoMatchingSignature", err)
	}

	// Byte for byte what the library itself produces for the same secret.
	wh, _ := standardwebhooks.NewWebhook(newSecret)
	want, _ := wh.Sign(msgID, now, body)
	if parts[0] != want {
		t.Errorf("Sign = %q, library signs %q", parts[0], want)
	}
}

// TestSignSpecVector is the Standard Webhooks spec's published example.
func TestSignSpecVector(t *testing.T) {
	t.Parallel()
	got, err := Sign([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "msg_p5jXN8AQM9LWM0D4loKWxJek",
		time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
}

func TestSignRejects(t *testing.T) {
	t.Parallel()
	now := time.Now()
	if _, err := Sign(nil, "id", now, nil); !errors.Is(err, ErrInvalidSecret) {
		t.Errorf("no secrets: %v", err)
	}
	if _, err := Sign([]string{"bogus"}, "id", now, nil); !errors.Is(err, ErrInvalidSecret) {
		t.Errorf("bad secret: %v", err)
	}
	for _, id := range []string{"", "a.b", "a b", "a\nb", strings.Repeat("x", 256)} {
		if _, err := Sign([]string{NewSecret()}, id, now, nil); !errors.Is(err, ErrInvalidMessageID) {
			t.Errorf("id %q: %v, want ErrInvalidMessageID", id, err)
		}
	}
}
