package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/latchhq/latch/cmd/latch/internal/config"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/webhooks"
)

// serve.admin.console.enabled: off by default, on under --dev, and the key wins either way; an
// enabled console without a secret to sign its forms is a configuration error naming the key.
func TestAdminConsoleSwitch(t *testing.T) {
	reg, err := webhooks.NewRegistry(nil)
	if err != nil {
		t.Fatal(err)
	}
	on, off := true, false
	for _, c := range []struct {
		dev     bool
		enabled *bool
		want    bool
	}{{false, nil, false}, {true, nil, true}, {true, &off, false}, {false, &on, true}} {
		cfg := &config.Config{}
		cfg.Serve.Admin.Console.Enabled = c.enabled
		cfg.Secrets.Cookie = []string{"a-cookie-secret-of-some-length"}
		con, err := adminConsole(cfg, c.dev, nil, events.NewOutbox(), nil, nil, reg, slog.New(slog.DiscardHandler))
		if err != nil || (con != nil) != c.want {
			t.Errorf("dev %v, enabled %v: console %v, %v; want %v", c.dev, c.enabled, con != nil, err, c.want)
		}
	}
	cfg := &config.Config{}
	cfg.Serve.Admin.Console.Enabled = &on
	if _, err := adminConsole(cfg, false, nil, events.NewOutbox(), nil, nil, reg, slog.New(slog.DiscardHandler)); err == nil ||
		!strings.Contains(err.Error(), "serve.admin.console.enabled") {
		t.Errorf("no secrets: %v", err)
	}
}
