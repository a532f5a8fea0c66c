package config

import (
	"strings"
	"testing"
)

// serve.admin.console.enabled is read from the file and from SERVE_ADMIN_CONSOLE_ENABLED, left
// unset otherwise (the command decides: off, on under --dev), and a wrong type or an unknown
// key under it is an error naming the key.
func TestConsoleKey(t *testing.T) {
	t.Parallel()
	cfg, _ := mustLoad(t, false, nil, minimal)
	if cfg.Serve.Admin.Console.Enabled != nil {
		t.Fatalf("unset key read as %v", *cfg.Serve.Admin.Console.Enabled)
	}
	cfg, _ = mustLoad(t, false, nil, minimal+"serve:\n  admin:\n    port: 4444\n    console:\n      enabled: true\n")
	if e := cfg.Serve.Admin.Console.Enabled; e == nil || !*e || cfg.Serve.Admin.Port != 4444 {
		t.Fatalf("from the file: %+v", cfg.Serve.Admin)
	}
	cfg, _ = mustLoad(t, true, []string{"SERVE_ADMIN_CONSOLE_ENABLED=false"}, minimal)
	if e := cfg.Serve.Admin.Console.Enabled; e == nil || *e {
		t.Fatalf("from the environment: %+v", cfg.Serve.Admin.Console)
	}
	for _, bad := range []string{"serve:\n  admin:\n    console:\n      enabled: yes-please\n", "serve:\n  admin:\n    console:\n      enable: true\n",
		"serve:\n  public:\n    console:\n      enabled: true\n"} {
		if _, _, err := load(t, false, nil, minimal+bad); err == nil || !strings.Contains(err.Error(), "console") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
