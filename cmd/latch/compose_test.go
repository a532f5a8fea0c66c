package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchhq/latch/cmd/latch/internal/config"
	"go.yaml.in/yaml/v3"
)

// TestComposeFile checks what can be checked without a Docker engine: compose.yaml parses,
// names the services and files it should, and the configuration it mounts loads as
// `latch serve` (without --dev) would load it.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	raw, err := os.ReadFile(filepath.Join(root, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image     string
			Build     struct{ Context, Dockerfile string }
			Command   []string
			Volumes   []string
			Ports     []string
			DependsOn map[string]struct{ Condition string } `yaml:"depends_on"`
		}
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, name := range []string{"postgres", "nats", "migrate", "latch"} {
		if _, ok := compose.Services[name]; !ok {
			t.Errorf("compose.yaml: no service %q", name)
		}
	}
	m := compose.Services["migrate"]
	if _, err := os.Stat(filepath.Join(root, m.Build.Context, m.Build.Dockerfile)); err != nil {
		t.Errorf("migrate builds %s/%s: %v", m.Build.Context, m.Build.Dockerfile, err)
	}
	if got := strings.Join(m.Command[:2], " "); got != "migrate up" {
		t.Errorf("migrate runs %q", m.Command)
	}
	if m.DependsOn["postgres"].Condition != "service_healthy" {
		t.Errorf("migrate depends_on postgres: %+v", m.DependsOn)
	}
	l := compose.Services["latch"]
	if l.DependsOn["migrate"].Condition != "service_completed_successfully" {
		t.Errorf("latch depends_on migrate: %+v", l.DependsOn)
	}
	// The admin API has no authentication of its own: on the host it is bound to loopback only.
	if strings.Join(l.Ports, ",") != "4433:4433,127.0.0.1:4434:4434" {
		t.Errorf("latch ports: %q", l.Ports)
	}
	for _, svc := range []string{"migrate", "latch"} {
		for _, v := range compose.Services[svc].Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("%s mounts %s: %v", svc, src, err)
				}
			}
		}
	}

	cfg, warnings, err := config.Load([]string{filepath.Join(root, "docs", "compose", "latch.yaml")}, false, nil)
	if err != nil {
		t.Fatalf("docs/compose/latch.yaml: %v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("docs/compose/latch.yaml warnings: %q", warnings)
	}
	if !strings.Contains(cfg.DSN, "@postgres:5432/") {
		t.Errorf("dsn %q does not point at the postgres service", cfg.DSN)
	}
	if cfg.Serve.Public.Port != 4433 || cfg.Serve.Admin.Port != 4434 {
		t.Errorf("ports %d, %d", cfg.Serve.Public.Port, cfg.Serve.Admin.Port)
	}

	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FROM golang:1.26 AS build", "CGO_ENABLED=0", "-trimpath", "-X main.version=", "gcr.io/distroless/static", "USER nonroot", "ENTRYPOINT"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
