package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/webhooks"
)

// courierOf returns the courier hook resolveConfig built, or nil.
func courierOf(t *testing.T, yaml string, env ...string) (*webhooks.Hook, error) {
	t.Helper()
	cfg, _ := mustLoad(t, false, env, minimal+yaml)
	_, hooks, err := resolveConfig(cfg)
	for i := range hooks {
		if hooks[i].Courier != nil {
			return &hooks[i], err
		}
	}
	return nil, err
}

// Kratos' courier keys become the courier hook of every process's registry, with the schedule
// from message_retries or Latch's retry.schedule; a file without a courier has none; errors
// name the key.
func TestCourierConfig(t *testing.T) {
	t.Parallel()
	if h, err := courierOf(t, ""); err != nil || h != nil {
		t.Fatalf("no courier configured: %+v, %v", h, err)
	}
	h, err := courierOf(t, `
courier:
  smtp:
    connection_uri: smtps://latch:secret@mail.example:465/
    from_address: no-reply@example.com
    from_name: Example
    headers: {X-SES-CONFIGURATION-SET: latch}
  message_retries: 8
  templates:
    recovery_code:
      valid:
        email:
          subject: base64://`+base64.StdEncoding.EncodeToString([]byte("Code {{ .RecoveryCode }}"))+`
`)
	if err != nil || h == nil {
		t.Fatalf("courier: %+v, %v", h, err)
	}
	if h.ID != events.CourierHookID || len(h.Schedule) != 9 || h.Schedule[8] != 2*time.Hour || h.URL != "smtps://mail.example:465" {
		t.Errorf("courier hook %+v", h)
	}
	if _, err := webhooks.NewRegistry([]webhooks.Hook{*h}); err != nil {
		t.Errorf("registry refuses the courier: %v", err)
	}

	h, err = courierOf(t, `
courier:
  delivery_strategy: http
  retry: {schedule: [0s, 30s]}
  timeout: 5s
  http:
    request_config:
      url: https://sender.example/mail
      auth: {type: basic_auth, config: {user: u, password: p}}
`)
	if err != nil || h == nil || len(h.Schedule) != 2 || h.Timeout != 5*time.Second || h.URL != "https://sender.example/mail" {
		t.Fatalf("http courier: %+v, %v", h, err)
	}

	// The environment sets Kratos' variables too.
	h, err = courierOf(t, "", "COURIER_SMTP_CONNECTION_URI=smtp://mail.example:2525/", "COURIER_SMTP_FROM_ADDRESS=a@example.com")
	if err != nil || h == nil || h.URL != "smtp://mail.example:2525" {
		t.Fatalf("courier from the environment: %+v, %v", h, err)
	}

	for yaml, key := range map[string]string{
		`courier: {smtp: {connection_uri: "smtp://mail.example/"}}`: "courier.smtp",
		`courier: {smtp: {connection_uri: "smtp://mail.example/", from_address: a@example.com}, templates: {verification_code: {invalid: {email: {body: {html: "base64://e3sgLlRvIA=="}}}}}}`: "courier.templates.verification_code.invalid.email.body.html",
	} {
		if _, err := courierOf(t, "\n"+yaml+"\n"); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v, want an error naming %s", yaml, err, key)
		}
	}
}

// The configurations of docs/COURIER.md load and build a courier: every yaml block that
// configures one, with its files (the Jsonnet body, template files) written where it says.
func TestCourierDocConfigsWork(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/COURIER.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	blocks := regexp.MustCompile("(?s)```(yaml|jsonnet)\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	files := map[string]string{
		"templates/recovery_code_valid.txt":  "Your code: {{ .RecoveryCode }}",
		"templates/recovery_code_valid.html": "<p>Your code: <b>{{ .RecoveryCode }}</b></p>",
	}
	for _, b := range blocks {
		if b[1] == "jsonnet" {
			files["courier.jsonnet"] = b[2]
		}
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, b := range blocks {
		if b[1] != "yaml" || !strings.HasPrefix(b[2], "courier:") {
			continue
		}
		n++
		yaml := strings.ReplaceAll(b[2], "file:///etc/latch/", "file://"+dir+"/")
		h, err := courierOf(t, "\n"+yaml)
		if err != nil || h == nil {
			t.Errorf("docs/COURIER.md block %d:\n%s\n%v", n, b[2], err)
		}
	}
	if n < 3 {
		t.Errorf("%d courier configurations in docs/COURIER.md, want the SMTP, HTTP and template ones", n)
	}
}
