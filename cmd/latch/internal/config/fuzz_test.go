package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchhq/latch/core/hooks"
)

// FuzzLoadConfig feeds the loader a hostile file and environment: whatever they hold, loading
// returns a configuration or an error that starts "config: " (and names the key or the file),
// never a panic, and a configuration it accepts compiles into a hook plan or fails the same way.
// The seed corpus in testdata/fuzz/FuzzLoadConfig is replayed by every `go test`; run the fuzzer
// with `go test -run '^$' -fuzz FuzzLoadConfig ./cmd/latch/internal/config/`.
func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte(minimal), "", false)
	f.Add([]byte(""), "DSN=postgres://x@db/latch\nNATS_URL=nats://n:4222\nSECRETS_COOKIE_0="+secret16, false)
	f.Add([]byte(""), "", true)
	f.Add([]byte(minimal+`
selfservice:
  flows:
    registration:
      after:
        password: {hooks: [{hook: session}, {hook: web_hook, config: {url: "https://x.example", response: {parse: true}}}]}
    login:
      after: {hooks: [{hook: revoke_active_sessions}]}
`), "SELFSERVICE_FLOWS_LOGIN_AFTER_PASSWORD_HOOKS=[{\"hook\":\"web_hook\",\"config\":{\"id\":\"d\"}}]", false)
	f.Add([]byte(minimal+"hashers: {argon2: {memory: 64KB}}\nsession: {lifespan: 1h}\n"), "SESSION_LIFESPAN=0s\nSERVE_PUBLIC_PORT=70000", false)
	f.Fuzz(func(t *testing.T, file []byte, env string, dev bool) {
		p := filepath.Join(t.TempDir(), "latch.yaml")
		if err := os.WriteFile(p, file, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := Load([]string{p}, dev, strings.Split(env, "\n"))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("error does not say it is the configuration's: %v", err)
			}
			return
		}
		if _, err := hooks.Compile(cfg.HookLists()); err != nil && !strings.HasPrefix(err.Error(), "config: ") {
			t.Fatalf("hook plan error does not name the key: %v", err)
		}
	})
}
