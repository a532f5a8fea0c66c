package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchhq/latch/cmd/latch/internal/config"
	"github.com/latchhq/latch/core/password"
)

// secret16 is a cookie secret long enough for the schema.
const secret16 = "0123456789abcdef-test"

// minimal is the smallest file `latch serve` accepts without --dev.
const minimal = "dsn: postgres://latch@db.example:5432/latch\nnats: {url: \"nats://nats.example:4222\"}\n" + `secrets:
  cookie: ["` + secret16 + `"]
`

// mustLoad loads the given file contents (in order) with env, as `latch serve` does.
func mustLoad(t *testing.T, dev bool, env []string, files ...string) (*config.Config, []string) {
	t.Helper()
	var paths []string
	for _, f := range files {
		p := filepath.Join(t.TempDir(), "latch.yaml")
		if err := os.WriteFile(p, []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	cfg, warnings, err := config.Load(paths, dev, env)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	return cfg, warnings
}

// Unset keys reach the packages as zero, and each applies its own default.
func TestUnsetKeysTakeThePackagesDefaults(t *testing.T) {
	t.Parallel()
	cfg, _ := mustLoad(t, false, nil, minimal)
	c, err := coreConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Registration.Disabled || c.Throttle.Disabled || c.Session.KeepSessionsOnDeactivate || !c.PasswordPolicy.IdentifierSimilarityCheck {
		t.Errorf("core config = %+v; registration, throttling, revocation on deactivation and the similarity check are on by default", c)
	}
	if c.PasswordPolicy.MinLength != password.MinLengthDefault || c.PasswordPolicy.MaxBytes != password.BcryptMaxPasswordBytes {
		t.Errorf("password policy = %+v", c.PasswordPolicy)
	}
	if c.Registration.Lifespan != 0 || c.HookDeadline != 0 || c.Throttle.MaxFailures != 0 || c.DefaultSchemaID != "" {
		t.Errorf("core config = %+v; unset keys must reach core as zero", c)
	}
	if sc := sessionsConfig(cfg, false); sc.Lifespan != 0 || sc.Cookie.Name != "" || sc.Cookie.SameSite != 0 || sc.Cookie.Persistent != nil {
		t.Errorf("sessions config = %+v; unset keys must reach sessions as zero", sc)
	}
	if hc := hasherConfig(cfg.Hashers); hc != (password.Config{}) {
		t.Errorf("hasher config = %+v; unset keys must reach password as zero", hc)
	}
	if wc := workerConfig(cfg); wc.Concurrency != 0 || wc.ShutdownTimeout != 0 || wc.Retention != 0 {
		t.Errorf("worker config = %+v", wc)
	}
	set, _ := mustLoad(t, false, nil, minimal+"webhooks: {retention: 48h}\n")
	if wc := workerConfig(set); wc.Retention != 48*time.Hour {
		t.Errorf("webhooks.retention 48h reached the worker as %v", wc.Retention)
	}
	if rc := relayConfig(cfg); rc.Retention != 0 {
		t.Errorf("relay config = %+v", rc)
	}
}

// Keys that turn a default-on behaviour off reach core as its zero-means-default fields.
func TestOffSwitches(t *testing.T) {
	t.Parallel()
	cfg, _ := mustLoad(t, false, nil, minimal+`
session: {revoke_on_deactivate: false, cookie: {same_site: Strict}}
selfservice:
  flows:
    registration: {enabled: false}
    login: {throttle: {enabled: false, max_failures: 3}}
`)
	c, err := coreConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Registration.Disabled || !c.Throttle.Disabled || c.Throttle.MaxFailures != 3 || !c.Session.KeepSessionsOnDeactivate {
		t.Errorf("core config = %+v", c)
	}
	if sc := sessionsConfig(cfg, false); sc.Cookie.SameSite != http.SameSiteStrictMode {
		t.Errorf("same_site = %v", sc.Cookie.SameSite)
	}
}

// The public edge gets the parsed proxies; without the key it trusts no one.
func TestEdgeConfig(t *testing.T) {
	t.Parallel()
	cfg, _ := mustLoad(t, false, nil, minimal+"serve: {public: {trusted_proxies: [10.0.0.0/8, 192.0.2.1, '2001:db8::/32'], client_ip_header: True-Client-IP}}")
	e := edgeConfig(cfg)
	var got []string
	for _, p := range e.TrustedProxies {
		got = append(got, p.String())
	}
	if strings.Join(got, " ") != "10.0.0.0/8 192.0.2.1/32 2001:db8::/32" || e.ClientIPHeader != "True-Client-IP" {
		t.Fatalf("edge = %+v", e)
	}
	cc, err := coreConfig(cfg)
	if err != nil || len(cc.TrustedProxies) != 3 || cc.ClientIPHeader != "True-Client-IP" {
		t.Fatalf("core config: proxies %v, header %q, err %v", cc.TrustedProxies, cc.ClientIPHeader, err)
	}
	cfg, _ = mustLoad(t, false, []string{`SERVE_PUBLIC_TRUSTED_PROXIES=["198.51.100.0/24"]`}, minimal)
	if e := edgeConfig(cfg); len(e.TrustedProxies) != 1 || e.TrustedProxies[0].String() != "198.51.100.0/24" {
		t.Fatalf("from the environment: %+v", e)
	}
	cfg, _ = mustLoad(t, false, nil, minimal)
	if e := edgeConfig(cfg); len(e.TrustedProxies) != 0 || e.ClientIPHeader != "" {
		t.Fatalf("default edge trusts %+v", e)
	}
}
