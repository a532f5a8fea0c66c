package webhooks

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks v1 (HMAC-SHA256) signing. Receivers verify with any Standard Webhooks or
// Svix library; nothing here is Latch-specific.

// SecretPrefix marks a Standard Webhooks symmetric secret, so a key pasted in the wrong place
// is recognisable and so receivers' libraries accept it as is.
const SecretPrefix = "whsec_"

// Secret sizes from the Standard Webhooks spec ("random 24-64 bytes").
const (
	secretBytes    = 24
	minSecretBytes = 24
	maxSecretBytes = 64
)

// ErrInvalidSecret is wrapped by ParseSecret's errors, which say what is wrong without
// repeating the secret.
var ErrInvalidSecret = errors.New("invalid signing secret")

// ErrInvalidMessageID is returned by Sign (and Send) for an id that cannot be signed
// unambiguously or sent as a header: the signed content is "id.timestamp.body", so an id with a
// "." would let two messages collide.
var ErrInvalidMessageID = errors.New("invalid webhook-id")

// maxMessageIDLen bounds webhook-id; Latch's are UUIDs, 36 bytes.
const maxMessageIDLen = 255

// checkMessageID accepts a non-empty id of printable ASCII without spaces or ".".
func checkMessageID(id string) error {
	if id == "" || len(id) > maxMessageIDLen {
		return fmt.Errorf("%w: length %d; want 1 to %d", ErrInvalidMessageID, len(id), maxMessageIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f || c == '.' {
			return fmt.Errorf("%w: %q: only printable ASCII without spaces or '.'", ErrInvalidMessageID, id)
		}
	}
	return nil
}

// NewSecret returns a fresh "whsec_" secret of 24 random bytes (Svix's size), for operators
// who need one and for tests.
func NewSecret() string {
	b := make([]byte, secretBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails; it crashes the program instead.
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// ParseSecret decodes a "whsec_<standard base64>" secret into its HMAC key. It rejects keys
// shorter than 24 or longer than 64 bytes, as the spec asks, because a short key makes the
// signature guessable and receivers' libraries assume that range.
func ParseSecret(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: no %q prefix", ErrInvalidSecret, SecretPrefix)
	}
	if rest == "" {
		return nil, fmt.Errorf("%w: empty after %q", ErrInvalidSecret, SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: not standard (padded) base64 after %q", ErrInvalidSecret, SecretPrefix)
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return nil, fmt.Errorf("%w: %d bytes once decoded; want %d to %d", ErrInvalidSecret, len(key), minSecretBytes, maxSecretBytes)
	}
	return key, nil
}

// Sign returns the webhook-signature header value: one "v1,<base64 HMAC-SHA256>" per secret,
// space separated, over "msgID.<unix seconds of ts>.body". Every secret signs, so receivers
// holding either the old or the new secret verify during a rotation. body must be the exact
// bytes sent. Sign fails on no secrets (a header without signatures is not a signature) and on
// an id that is empty, contains "." or is not printable ASCII.
func Sign(secrets []string, msgID string, ts time.Time, body []byte) (string, error) {
	if len(secrets) == 0 {
		return "", fmt.Errorf("%w: no secrets", ErrInvalidSecret)
	}
	if err := checkMessageID(msgID); err != nil {
		return "", err
	}
	prefix := msgID + "." + strconv.FormatInt(ts.Unix(), 10) + "."

	var sb strings.Builder
	sum := make([]byte, 0, sha256.Size)
	for i, s := range secrets {
		key, err := ParseSecret(s)
		if err != nil {
			return "", fmt.Errorf("secret #%d: %w", i, err)
		}
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(prefix))
		mac.Write(body)
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString("v1,")
		sb.WriteString(base64.StdEncoding.EncodeToString(mac.Sum(sum[:0])))
	}
	return sb.String(), nil
}
