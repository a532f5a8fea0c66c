package password

import (
	"context"
	"testing"
)

func TestSupports(t *testing.T) {
	h, err := NewHasher(Config{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	own, err := h.Hash(context.Background(), []byte("a-long-enough-password"))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]bool{
		string(own): true,
		"$argon2id$v=19$m=65536,t=1,p=2$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g": true,
		"plain-text": false,
		"$argon2id$v=19$m=4000000000,t=1,p=2$c2FsdA$aGFzaA": false,
		"": false,
	}
	for hash, want := range cases {
		if got := h.Supports([]byte(hash)); got != want {
			t.Errorf("Supports(%q) = %v, want %v", hash, got, want)
		}
	}
}
