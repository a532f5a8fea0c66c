package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchhq/latch/core/hooks"
)

// secret16 is a cookie secret long enough for the schema.
const secret16 = "0123456789abcdef-test"

// dsnLine also names the NATS server: both are required without --dev.
const dsnLine = "dsn: postgres://latch@db.example:5432/latch\nnats: {url: \"nats://nats.example:4222\"}\n"

// minimal is the smallest file `latch serve` accepts without --dev.
const minimal = dsnLine + `secrets:
  cookie: ["` + secret16 + `"]
`

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "latch.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// load loads the given file contents (in order) with env.
func load(t *testing.T, dev bool, env []string, files ...string) (*Config, []string, error) {
	t.Helper()
	var paths []string
	for _, f := range files {
		paths = append(paths, writeConfig(t, f))
	}
	return Load(paths, dev, env)
}

func mustLoad(t *testing.T, dev bool, env []string, files ...string) (*Config, []string) {
	t.Helper()
	cfg, warnings, err := load(t, dev, env, files...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg, warnings
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	cfg, warnings := mustLoad(t, false, nil, minimal)
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	// The command's own keys take their defaults here.
	checks := []struct {
		key       string
		got, want any
	}{
		{"serve.public.host", cfg.Serve.Public.Host, ""},
		{"serve.public.port", cfg.Serve.Public.Port, 4433},
		{"serve.public.base_url", cfg.Serve.Public.BaseURL, "http://127.0.0.1:4433"},
		{"serve.admin.port", cfg.Serve.Admin.Port, 4434},
		{"serve.admin.base_url", cfg.Serve.Admin.BaseURL, "http://127.0.0.1:4434"},
		{"secrets.cookie", cfg.Secrets.Cookie, []string{secret16}},
		{"nats.store_dir", cfg.NATS.StoreDir, ".latch-dev/nats"},
		{"log.level", cfg.Log.Level, "info"},
		{"log.format", cfg.Log.Format, "text"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.key, c.got, c.want)
		}
	}
	// Every other unset key stays zero, so the package owning it applies its default, once.
	owned := map[string]any{
		"identity.default_schema_id":                            cfg.Identity.DefaultSchemaID,
		"session.lifespan":                                      cfg.Session.Lifespan,
		"session.earliest_possible_extend":                      cfg.Session.EarliestPossibleExtend,
		"session.cookie":                                        cfg.Session.Cookie,
		"hashers":                                               cfg.Hashers,
		"selfservice.flows.registration.enabled":                cfg.Selfservice.Flows.Registration.Enabled,
		"selfservice.flows.registration.lifespan":               cfg.Selfservice.Flows.Registration.Lifespan,
		"selfservice.flows.login.throttle":                      cfg.Selfservice.Flows.Login.Throttle,
		"selfservice.flows.settings.privileged_session_max_age": cfg.Selfservice.Flows.Settings.PrivilegedSessionMaxAge,
		"selfservice.methods.password":                          cfg.Selfservice.Methods.Password,
		"events":                                                cfg.Events,
		"webhooks":                                              cfg.Webhooks,
	}
	for key, v := range owned {
		if !reflect.ValueOf(v).IsZero() {
			t.Errorf("%s = %+v; an unset key must stay zero (its package's default)", key, v)
		}
	}
}

func TestDevWithoutAnyConfig(t *testing.T) {
	t.Parallel()
	cfg, warnings, err := Load(nil, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	if cfg.DSN != devDSN {
		t.Errorf("dsn = %q", cfg.DSN)
	}
	if cfg.Serve.Public.Host != "127.0.0.1" || cfg.Serve.Admin.Host != "127.0.0.1" {
		t.Errorf("hosts = %q, %q", cfg.Serve.Public.Host, cfg.Serve.Admin.Host)
	}
	if !slices.Equal(cfg.Secrets.Cookie, []string{DevCookieSecret}) {
		t.Errorf("secrets.cookie = %q", cfg.Secrets.Cookie)
	}
	if h := cfg.Selfservice.Flows.Registration.After.Password.Hooks; len(h) != 1 || h[0].Hook != "session" {
		t.Errorf("dev registration hooks = %+v, want the session hook", h)
	}
	// Outside dev nothing is added: a production file says what it wants.
	prod, _ := mustLoad(t, false, nil, dsnLine+"secrets:\n  cookie: [\""+secret16+"\"]\n")
	if h := prod.Selfservice.Flows.Registration.After.Password.Hooks; len(h) != 0 {
		t.Errorf("production registration hooks = %+v, want none", h)
	}
}

func TestDevWithFile(t *testing.T) {
	t.Parallel()
	// The file's values win; --dev fills in what the file leaves out.
	cfg, _ := mustLoad(t, true, nil, `
serve:
  public: {port: 8080}
  admin: {host: 0.0.0.0}
secrets:
  default: ["`+secret16+`"]
hashers:
  bcrypt: {cost: 4}
`)
	if cfg.DSN != devDSN {
		t.Errorf("dsn = %q, want the development default", cfg.DSN)
	}
	if cfg.Serve.Public.Port != 8080 || cfg.Serve.Public.Host != "127.0.0.1" {
		t.Errorf("serve.public = %+v", cfg.Serve.Public)
	}
	if cfg.Serve.Admin.Host != "0.0.0.0" || cfg.Serve.Admin.BaseURL != "http://127.0.0.1:4434" {
		t.Errorf("serve.admin = %+v", cfg.Serve.Admin)
	}
	if !slices.Equal(cfg.Secrets.Cookie, []string{secret16}) {
		t.Errorf("secrets.cookie = %q: secrets.default from the file must win over the dev secret", cfg.Secrets.Cookie)
	}
	if cfg.Hashers.Bcrypt.Cost != 4 {
		t.Errorf("bcrypt cost = %d", cfg.Hashers.Bcrypt.Cost)
	}
}

func TestFilesCombine(t *testing.T) {
	t.Parallel()
	cfg, _ := mustLoad(t, false, nil, dsnLine+`
serve:
  public: {port: 1111, host: 10.0.0.1}
secrets:
  cookie: ["`+secret16+`-a", "`+secret16+`-b"]
`, `
serve:
  public: {port: 2222}
secrets:
  cookie: ["`+secret16+`-c"]
`)
	if cfg.Serve.Public.Port != 2222 || cfg.Serve.Public.Host != "10.0.0.1" {
		t.Errorf("serve.public = %+v: later file wins per key, mappings merge", cfg.Serve.Public)
	}
	if !slices.Equal(cfg.Secrets.Cookie, []string{secret16 + "-c"}) {
		t.Errorf("secrets.cookie = %q: a list is replaced whole", cfg.Secrets.Cookie)
	}
}

func TestEnvOverrides(t *testing.T) {
	t.Parallel()
	file := dsnLine + `
serve:
  public: {port: 1111}
secrets:
  cookie: ["` + secret16 + `-file0", "` + secret16 + `-file1"]
`
	tests := []struct {
		name  string
		env   []string
		check func(t *testing.T, c *Config)
	}{
		{"dsn", []string{"DSN=postgres://other@h/db"}, func(t *testing.T, c *Config) {
			if c.DSN != "postgres://other@h/db" {
				t.Errorf("dsn = %q", c.DSN)
			}
		}},
		{"integer wins over file", []string{"SERVE_PUBLIC_PORT=5000"}, func(t *testing.T, c *Config) {
			if c.Serve.Public.Port != 5000 {
				t.Errorf("port = %d", c.Serve.Public.Port)
			}
		}},
		{"underscore keys", []string{"SESSION_EARLIEST_POSSIBLE_EXTEND=1h", "SESSION_LIFESPAN=2h", "SERVE_ADMIN_BASE_URL=https://admin.example"}, func(t *testing.T, c *Config) {
			if c.Session.EarliestPossibleExtend != Duration(time.Hour) || c.Session.Lifespan != Duration(2*time.Hour) {
				t.Errorf("session = %+v", c.Session)
			}
			if c.Serve.Admin.BaseURL != "https://admin.example" {
				t.Errorf("base_url = %q", c.Serve.Admin.BaseURL)
			}
		}},
		{"boolean and deep underscore key", []string{"SESSION_COOKIE_PERSISTENT=false", "SELFSERVICE_METHODS_PASSWORD_CONFIG_MIN_PASSWORD_LENGTH=12"}, func(t *testing.T, c *Config) {
			if *c.Session.Cookie.Persistent {
				t.Error("persistent still true")
			}
			if c.Selfservice.Methods.Password.Config.MinPasswordLength != 12 {
				t.Errorf("min_password_length = %d", c.Selfservice.Methods.Password.Config.MinPasswordLength)
			}
		}},
		{"list as JSON", []string{`SECRETS_COOKIE=["` + secret16 + `-env"]`}, func(t *testing.T, c *Config) {
			if !slices.Equal(c.Secrets.Cookie, []string{secret16 + "-env"}) {
				t.Errorf("secrets.cookie = %q", c.Secrets.Cookie)
			}
		}},
		{"list items by index", []string{"SECRETS_COOKIE_1=" + secret16 + "-env1", "SECRETS_COOKIE_2=" + secret16 + "-env2"}, func(t *testing.T, c *Config) {
			want := []string{secret16 + "-file0", secret16 + "-env1", secret16 + "-env2"}
			if !slices.Equal(c.Secrets.Cookie, want) {
				t.Errorf("secrets.cookie = %q, want %q", c.Secrets.Cookie, want)
			}
		}},
		{"whole list then items", []string{"SECRETS_COOKIE_0=" + secret16 + "-env0", `SECRETS_COOKIE=["` + secret16 + `-a", "` + secret16 + `-b"]`}, func(t *testing.T, c *Config) {
			want := []string{secret16 + "-env0", secret16 + "-b"}
			if !slices.Equal(c.Secrets.Cookie, want) {
				t.Errorf("secrets.cookie = %q, want %q", c.Secrets.Cookie, want)
			}
		}},
		{"hooks as JSON", []string{`SELFSERVICE_FLOWS_LOGIN_AFTER_PASSWORD_HOOKS=[{"hook":"revoke_active_sessions"},{"hook":"web_hook","config":{"url":"https://hooks.example/login","method":"POST"}}]`}, func(t *testing.T, c *Config) {
			h := c.Selfservice.Flows.Login.After.Password.Hooks
			if len(h) != 2 || h[0].Hook != "revoke_active_sessions" || h[1].Hook != "web_hook" {
				t.Fatalf("hooks = %+v", h)
			}
			plan, err := hooks.Compile(c.HookLists())
			if err != nil {
				t.Fatal(err)
			}
			if inline := plan.Inline("login", "password"); len(inline) != 1 || string(inline[0].Config) != "{}" {
				t.Errorf("missing config not normalised to {}: %+v", inline)
			}
			var wh struct{ URL string }
			if err := json.Unmarshal(h[1].Config, &wh); err != nil || wh.URL != "https://hooks.example/login" {
				t.Errorf("web_hook config = %s", h[1].Config)
			}
		}},
		{"list of objects by index", []string{"IDENTITY_SCHEMAS_0_ID=customer", "IDENTITY_SCHEMAS_0_URL=file:///etc/latch/customer.json", "IDENTITY_DEFAULT_SCHEMA_ID=customer"}, func(t *testing.T, c *Config) {
			if len(c.Identity.Schemas) != 1 || c.Identity.Schemas[0] != (SchemaRef{ID: "customer", URL: "file:///etc/latch/customer.json"}) {
				t.Errorf("identity.schemas = %+v", c.Identity.Schemas)
			}
		}},
		{"webhook retention", []string{"WEBHOOKS_RETENTION=168h"}, func(t *testing.T, c *Config) {
			if c.Webhooks.Retention != Duration(7*24*time.Hour) {
				t.Errorf("webhooks.retention = %v", c.Webhooks.Retention)
			}
		}},
		{"byte size as string and as integer", []string{"HASHERS_ARGON2_MEMORY=1GB"}, func(t *testing.T, c *Config) {
			if c.Hashers.Argon2.Memory != 1<<30 {
				t.Errorf("memory = %d", c.Hashers.Argon2.Memory)
			}
		}},
		{"byte size integer", []string{"HASHERS_ARGON2_MEMORY=65536"}, func(t *testing.T, c *Config) {
			if c.Hashers.Argon2.Memory != 65536 {
				t.Errorf("memory = %d", c.Hashers.Argon2.Memory)
			}
		}},
		{"unrelated and ignored keys are skipped", []string{"PATH=/usr/bin", "HOME=/root", "COURIER_TEMPLATE_OVERRIDE_PATH=/x", "VERSION=1", "lower_case=1", "SERVE_PUBLIC_NOPE=1", "SERVE_PUBLIC_PORT=", "LOG_LEVEL="}, func(t *testing.T, c *Config) {
			if c.Serve.Public.Port != 1111 {
				t.Errorf("port = %d", c.Serve.Public.Port)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, warnings := mustLoad(t, false, tt.env, file)
			if len(warnings) != 0 {
				t.Errorf("warnings: %q", warnings)
			}
			tt.check(t, cfg)
		})
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		dev  bool
		env  []string
		file string
		want []string // each must appear in the error
	}{
		{"port too large", false, nil, minimal + "serve: {public: {port: 70000}}",
			[]string{"config: serve.public.port: must be <= 65535"}},
		{"port from env not an integer", false, []string{"SERVE_PUBLIC_PORT=http"}, minimal,
			[]string{"config: serve.public.port: environment variable SERVE_PUBLIC_PORT: \"http\" is not an integer"}},
		{"port from env too large", false, []string{"SERVE_PUBLIC_PORT=99999"}, minimal,
			[]string{"config: serve.public.port: must be <= 65535"}},
		{"index leaves a gap", false, []string{"SECRETS_COOKIE_5=" + secret16}, minimal,
			[]string{"config: secrets.cookie[5]: environment variable SECRETS_COOKIE_5: index 5 leaves a gap"}},
		{"unknown nested key", false, nil, minimal + "serve: {public: {prot: 1}}",
			[]string{"config: serve.public.prot: unknown key"}},
		{"unknown top-level key", false, nil, minimal + "webhookz: {}",
			[]string{"config: webhookz: unknown key"}},
		{"YAML's not-a-number", false, nil, minimal + "session: {lifespan: .nan}\nserve: {public: {port: -.inf}}",
			[]string{"config: serve.public.port:", "config: session.lifespan:"}},
		{"unknown key in a hook", false, nil, minimal + `
selfservice: {flows: {login: {before: {hooks: [{hook: web_hook, config: {url: "https://x", methd: POST}}]}}}}`,
			[]string{"config: selfservice.flows.login.before.hooks[0].config.methd: unknown key"}},
		{"hook not allowed here", false, nil, minimal + `
selfservice: {flows: {login: {after: {password: {hooks: [{hook: session}]}}}}}`,
			[]string{`config: selfservice.flows.login.after.password.hooks[0].hook: "session" is not allowed here (allowed: revoke_active_sessions, web_hook, `}},
		{"session not allowed in the global registration list", false, nil, minimal + `
selfservice: {flows: {registration: {after: {hooks: [{hook: session}]}}}}`,
			[]string{`config: selfservice.flows.registration.after.hooks[0].hook: "session" is not allowed here (allowed: web_hook`}},
		{"revoke_active_sessions not allowed in settings profile", false, nil, minimal + `
selfservice: {flows: {settings: {after: {profile: {hooks: [{hook: revoke_active_sessions}]}}}}}`,
			[]string{`config: selfservice.flows.settings.after.profile.hooks[0].hook: "revoke_active_sessions" is not allowed here`}},
		{"recovery by link refused", false, nil, minimal + `
selfservice: {flows: {recovery: {enabled: true, use: link}}}`,
			[]string{`config: selfservice.flows.recovery.use: "link" is not implemented by Latch`}},
		{"verification by link from env refused", false, []string{"SELFSERVICE_FLOWS_VERIFICATION_USE=link"}, minimal,
			[]string{`config: selfservice.flows.verification.use: "link" is not implemented by Latch`}},
		{"revoke_active_sessions not allowed after verification", false, nil, minimal + `
selfservice: {flows: {verification: {after: {hooks: [{hook: revoke_active_sessions}]}}}}`,
			[]string{`config: selfservice.flows.verification.after.hooks[0].hook: "revoke_active_sessions" is not allowed here`}},
		{"web_hook without url", false, nil, minimal + `
selfservice: {flows: {registration: {before: {hooks: [{hook: web_hook, config: {method: POST}}]}}}}`,
			[]string{"config: selfservice.flows.registration.before.hooks[0].config.url: is required"}},
		{"web_hook without config", false, nil, minimal + `
selfservice: {flows: {registration: {before: {hooks: [{hook: web_hook}]}}}}`,
			[]string{"config: selfservice.flows.registration.before.hooks[0].config: is required"}},
		{"web_hook ignore and parse", false, nil, minimal + `
selfservice: {flows: {registration: {after: {password: {hooks: [{hook: web_hook, config: {url: "https://x", response: {ignore: true, parse: true}}}]}}}}}`,
			[]string{"config: selfservice.flows.registration.after.password.hooks[0].config.response.parse: cannot be true when response.ignore is true"}},
		{"web_hook ignore and can_interrupt", false, nil, minimal + `
selfservice: {flows: {registration: {after: {password: {hooks: [{hook: web_hook, config: {url: "https://x", can_interrupt: true, response: {ignore: true}}}]}}}}}`,
			[]string{"config: selfservice.flows.registration.after.password.hooks[0].config.can_interrupt: cannot be true when response.ignore is true"}},
		{"web_hook basic_auth incomplete", false, nil, minimal + `
selfservice: {flows: {login: {before: {hooks: [{hook: web_hook, config: {url: "https://x", auth: {type: basic_auth, config: {user: u}}}}]}}}}`,
			[]string{"config: selfservice.flows.login.before.hooks[0].config.auth.config.password: is required"}},
		{"web_hook api_key bad in", false, nil, minimal + `
selfservice: {flows: {login: {before: {hooks: [{hook: web_hook, config: {url: "https://x", auth: {type: api_key, config: {name: n, value: v, in: query}}}}]}}}}`,
			[]string{`config: selfservice.flows.login.before.hooks[0].config.auth.config.in: "query" is not allowed here (allowed: header, cookie)`}},
		{"bcrypt cost below 12 without dev", false, nil, minimal + "hashers: {bcrypt: {cost: 10}}",
			[]string{"config: hashers.bcrypt.cost: must be >= 12 outside --dev (got 10)"}},
		{"code mails per address below 1", true, nil, "selfservice: {methods: {code: {config: {max_messages_per_address: 0}}}}",
			[]string{"config: selfservice.methods.code.config.max_messages_per_address: must be >= 1"}},
		{"bcrypt cost below 4 even in dev", true, nil, "hashers: {bcrypt: {cost: 3}}",
			[]string{"config: hashers.bcrypt.cost: must be >= 4"}},
		{"dsn required", false, nil, "secrets: {cookie: [" + secret16 + "]}",
			[]string{"config: dsn: is required"}},
		{"secrets required", false, nil, "dsn: postgres://x@y/z",
			[]string{"config: secrets.cookie: is required (or secrets.default)"}},
		{"short secret", false, nil, dsnLine + "secrets: {default: [short]}",
			[]string{"config: secrets.default[0]: must be a string of at least 16 characters"}},
		{"not postgres", false, nil, "dsn: sqlite:///tmp/x.db\nsecrets: {cookie: [" + secret16 + "]}",
			[]string{"config: dsn: Latch supports PostgreSQL only"}},
		{"bad duration", false, nil, minimal + "session: {lifespan: 1 day}",
			[]string{`config: session.lifespan: must be a duration like "1h"`}},
		{"zero lifespan", false, nil, minimal + "session: {lifespan: 0s}\nselfservice: {flows: {login: {lifespan: 0h0m}}}",
			[]string{"config: session.lifespan: must be more than zero", "config: selfservice.flows.login.lifespan: must be more than zero"}},
		{"zero memory", false, nil, minimal + "hashers: {argon2: {memory: 0MB}}",
			[]string{"config: hashers.argon2.memory: must be more than zero"}},
		{"bad size", false, nil, minimal + "hashers: {argon2: {memory: 12QB}}",
			[]string{`config: hashers.argon2.memory: must be a size like`}},
		{"same ports", false, nil, minimal + "serve: {public: {port: 5000}, admin: {port: 5000}}",
			[]string{"config: serve.admin.port: is the same as serve.public.port (5000)"}},
		{"default schema id not listed", false, nil, minimal + "identity: {default_schema_id: x, schemas: [{id: y, url: 'file:///y.json'}]}",
			[]string{`config: identity.default_schema_id: "x" is not the id of any identity.schemas entry`}},
		{"identity schema over http", false, nil, minimal + "identity: {schemas: [{id: default, url: 'https://x/y.json'}]}",
			[]string{"config: identity.schemas[0].url: must be a file:// or base64:// URL"}},
		{"wrong type", false, nil, minimal + "session: {cookie: {persistent: maybe}}",
			[]string{"config: session.cookie.persistent: expected boolean, but got string"}},
		{"nats required", false, nil, "dsn: postgres://x@y/z\nsecrets: {cookie: [" + secret16 + "]}",
			[]string{"config: nats.url: is required"}},
		{"bad webhook secret", false, nil, minimal + "webhooks: {signing_secrets: [nope]}",
			[]string{"config: webhooks.signing_secrets[0]: must be a Standard Webhooks secret"}},
		{"trusted proxy prefix too long", false, nil, minimal + "serve: {public: {trusted_proxies: [10.0.0.0/8, 10.0.0.0/33]}}",
			[]string{"config: serve.public.trusted_proxies[1]: must be a CIDR or an IP address"}},
		{"trusted proxy not an address", false, nil, minimal + "serve: {public: {trusted_proxies: [10.0.0.0/8, proxy.internal]}}",
			[]string{"config: serve.public.trusted_proxies[1]: must be a CIDR like 10.0.0.0/8 or an IP address"}},
		{"trusted proxy bad octet", false, nil, minimal + "serve: {public: {trusted_proxies: [300.1.1.1]}}",
			[]string{"config: serve.public.trusted_proxies[0]: must be a CIDR or an IP address"}},
		{"trusted proxies only on public", false, nil, minimal + "serve: {admin: {trusted_proxies: [10.0.0.0/8]}}",
			[]string{"config: serve.admin"}},
		{"client ip header not a header name", false, nil, minimal + "serve: {public: {client_ip_header: 'X Real IP'}}",
			[]string{"config: serve.public.client_ip_header: must be an HTTP header name"}},
		{"bad allowed network", false, nil, minimal + "webhooks: {allowed_networks: [10.0.0.0]}",
			[]string{"config: webhooks.allowed_networks[0]: must be a CIDR"}},
		{"bad webhook retention", false, nil, minimal + "webhooks: {retention: 30d}",
			[]string{"config: webhooks.retention: must be a duration"}},
		{"template over http", false, nil, minimal + `
selfservice: {flows: {registration: {after: {hooks: [{hook: web_hook, config: {url: "https://x", body: "https://x/t.jsonnet"}}]}}}}`,
			[]string{"config: selfservice.flows.registration.after.hooks[0].config.body: must be a file:// or base64:// URL"}},
		{"bad retry schedule", false, nil, minimal + `
selfservice: {flows: {registration: {after: {hooks: [{hook: web_hook, config: {url: "https://x", retry: {schedule: [soon]}}}]}}}}`,
			[]string{"config: selfservice.flows.registration.after.hooks[0].config.retry.schedule[0]: must be a duration"}},
		{"several problems at once", false, nil, minimal + "serve: {public: {port: 0}}\nlog: {level: loud}",
			[]string{"config: log.level: \"loud\" is not allowed here", "config: serve.public.port: must be >= 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := load(t, tt.dev, tt.env, tt.file)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
		})
	}
}

func TestKratosKeysWarn(t *testing.T) {
	t.Parallel()
	cfg, warnings := mustLoad(t, false, nil, minimal+`
courier: {smtp: {connection_uri: "smtps://x", client_cert_path: /c.pem}, template_override_path: /t}
feature_flags: {cacheable_sessions: true}
version: v1.3.0
serve:
  public:
    cors: {enabled: true}
selfservice:
  default_browser_return_url: http://127.0.0.1:4455/
  methods:
    password: {enabled: true, config: {haveibeenpwned_enabled: true}}
    oidc: {enabled: true, config: {providers: []}}
  flows:
    verification: {enabled: true}
    registration:
      after:
        password:
          hooks:
            - hook: session
            - hook: show_verification_ui
        oidc:
          hooks: [{hook: session}]
`)
	want := []string{
		"config key courier.smtp.client_cert_path is not used by Latch",
		"config key courier.template_override_path is not used by Latch",
		"config key feature_flags.cacheable_sessions is not used by Latch",
		"config key selfservice.flows.registration.after.oidc is not used by Latch",
		"config key selfservice.methods.oidc is not used by Latch",
		"config key serve.public.cors is not used by Latch",
		"config key version is not used by Latch",
		"config key selfservice.methods.password.config.haveibeenpwned_enabled is accepted but Latch makes no outbound breach check",
	}
	for _, w := range want {
		if !slices.Contains(warnings, w) {
			t.Errorf("missing warning %q in\n%s", w, strings.Join(warnings, "\n"))
		}
	}
	if len(warnings) != len(want) {
		t.Errorf("got %d warnings, want %d:\n%s", len(warnings), len(want), strings.Join(warnings, "\n"))
	}
	hooks := cfg.Selfservice.Flows.Registration.After.Password.Hooks
	if len(hooks) != 2 || hooks[0].Hook != "session" || hooks[1].Hook != "show_verification_ui" {
		t.Errorf("registration.after.password.hooks = %+v, want session and show_verification_ui", hooks)
	}
}

func TestMigrateNeedsOnlyDSN(t *testing.T) {
	t.Parallel()
	cfg, _, err := LoadFor(nil, false, []string{"DSN=postgres://a@b/c"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DSN != "postgres://a@b/c" {
		t.Errorf("dsn = %q", cfg.DSN)
	}
	if _, _, err := LoadFor(nil, false, nil, false); err == nil || !strings.Contains(err.Error(), "config: dsn: is required") {
		t.Errorf("err = %v", err)
	}
}

func TestFileProblems(t *testing.T) {
	t.Parallel()
	if _, _, err := Load([]string{filepath.Join(t.TempDir(), "missing.yaml")}, true, nil); err == nil {
		t.Error("missing file: no error")
	}
	p := writeConfig(t, "serve: [unclosed")
	if _, _, err := Load([]string{p}, true, nil); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("syntax error does not name the file: %v", err)
	}
	p = writeConfig(t, "- a\n- b\n")
	if _, _, err := Load([]string{p}, true, nil); err == nil || !strings.Contains(err.Error(), "top level must be a mapping") {
		t.Errorf("list file: %v", err)
	}
	p = writeConfig(t, "")
	if _, _, err := Load([]string{p}, true, nil); err != nil {
		t.Errorf("empty file: %v", err)
	}
}

func TestParseByteSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]ByteSize{
		"128MB": 128 << 20, "1GB": 1 << 30, "64KB": 64 << 10, "4096": 4096, "10B": 10,
		"1.5GB": 3 << 29, "64 kb": 64 << 10, "2MiB": 2 << 20, "1TB": 1 << 40,
	} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MB", "12QB", "-1MB", "1..2GB", "99999999999999999999GB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q): no error", in)
		}
	}
	if s := ByteSize(128 << 20).String(); s != "128MB" {
		t.Errorf("String = %q", s)
	}
}

// TestSchemaMatchesConfig keeps schemas/config.schema.json and Config in step: every key the
// schema accepts (and Latch uses) has a field, and every field has a key.
func TestSchemaMatchesConfig(t *testing.T) {
	t.Parallel()
	ks, err := keySchema()
	if err != nil {
		t.Fatal(err)
	}
	// Config fields the schema deliberately leaves out at some places.
	notInSchema := map[string]bool{
		"selfservice.flows.registration.after.profile": true, // AfterConfig is shared; Kratos has profile only in settings
		"selfservice.flows.login.after.profile":        true,
	}
	var walk func(key string, typ reflect.Type, n *keyNode)
	walk = func(key string, typ reflect.Type, n *keyNode) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			if typ.Kind() == reflect.Slice && typ != reflect.TypeFor[json.RawMessage]() {
				if n.items == nil {
					t.Errorf("%s: a list in Config, not in the schema", key)
					return
				}
				n = n.items
			}
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ == reflect.TypeFor[json.RawMessage]() {
			return
		}
		fields := jsonFields(typ)
		for name, ft := range fields {
			child := n.props[name]
			ck := strings.TrimPrefix(key+"."+name, ".")
			if child == nil || child.unused {
				if !notInSchema[ck] {
					t.Errorf("%s: a Config field the schema does not declare", ck)
				}
				continue
			}
			walk(ck, ft, child)
		}
		for name, child := range n.props {
			if _, ok := fields[name]; !ok && !child.unused {
				t.Errorf("%s: a schema key with no Config field", strings.TrimPrefix(key+"."+name, "."))
			}
		}
	}
	walk("", reflect.TypeFor[Config](), ks)
}

// jsonFields lists a struct's json keys, flattening embedded structs as encoding/json does.
func jsonFields(typ reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Anonymous {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = f.Type
	}
	return out
}

// TestRecoveryVerificationKeys: Kratos' recovery, verification, code method and feature flag
// keys load from the file and the environment, and the verification hooks are kept.
func TestRecoveryVerificationKeys(t *testing.T) {
	t.Parallel()
	cfg, warnings := mustLoad(t, false, []string{"SELFSERVICE_FLOWS_RECOVERY_ENABLED=true",
		"SELFSERVICE_METHODS_CODE_CONFIG_MAX_SUBMISSIONS=7", "SELFSERVICE_METHODS_CODE_CONFIG_MAX_MESSAGES_PER_ADDRESS=4"}, minimal+`
feature_flags: {use_continue_with_transitions: true}
selfservice:
  methods: {code: {config: {lifespan: 15m, message_window: 30m}}}
  flows:
    recovery:
      notify_unknown_recipients: true
      after: {hooks: [{hook: revoke_active_sessions}]}
    verification: {enabled: true, use: code}
    login: {after: {hooks: [{hook: require_verified_address}, {hook: verification}, {hook: show_verification_ui}]}}
`)
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	f := cfg.Selfservice.Flows
	if !f.Recovery.Enabled || !f.Recovery.NotifyUnknownRecipients || !f.Verification.Enabled || !cfg.FeatureFlags.UseContinueWithTransitions {
		t.Errorf("flags not read: %+v %+v %+v", f.Recovery, f.Verification, cfg.FeatureFlags)
	}
	if got := cfg.Selfservice.Methods.Code.Config; got.MaxSubmissions != 7 || time.Duration(got.Lifespan) != 15*time.Minute ||
		got.MaxMessagesPerAddress != 4 || time.Duration(got.MessageWindow) != 30*time.Minute {
		t.Errorf("code config: %+v", got)
	}
	if len(f.Login.After.Hooks) != 3 || len(f.Recovery.After.Hooks) != 1 {
		t.Errorf("hooks dropped: login %+v recovery %+v", f.Login.After.Hooks, f.Recovery.After.Hooks)
	}
}
