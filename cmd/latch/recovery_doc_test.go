package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The configurations of docs/RECOVERY.md are complete files that load as they stand: no
// warning (every key is one Latch reads), and a courier, SMTP or HTTP, built from them. The
// Jsonnet body they point to is COURIER.md's.
func TestRecoveryDocConfigsWork(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/RECOVERY.md")
	if err != nil {
		t.Fatal(err)
	}
	courierDoc, err := os.ReadFile("../../docs/COURIER.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	jsonnet := regexp.MustCompile("(?s)```jsonnet\n(.*?)```").FindSubmatch(courierDoc)
	if jsonnet == nil {
		t.Fatal("docs/COURIER.md has no jsonnet block")
	}
	if err := os.WriteFile(filepath.Join(dir, "courier.jsonnet"), jsonnet[1], 0o600); err != nil {
		t.Fatal(err)
	}

	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1)
	strategies := map[string]bool{}
	for i, b := range blocks {
		yaml := strings.ReplaceAll(string(b[1]), "file:///etc/latch/", "file://"+dir+"/")
		cfg, warnings := mustLoad(t, false, nil, yaml)
		if len(warnings) != 0 {
			t.Errorf("docs/RECOVERY.md block %d: warnings %q", i+1, warnings)
		}
		_, hooks, err := resolveConfig(cfg)
		if err != nil {
			t.Errorf("docs/RECOVERY.md block %d: %v", i+1, err)
			continue
		}
		for _, h := range hooks {
			if h.Courier != nil {
				strategies[strings.SplitN(h.URL, ":", 2)[0]] = true
			}
		}
	}
	if !strategies["smtp"] || !strategies["https"] {
		t.Errorf("docs/RECOVERY.md: want an SMTP and an HTTP courier configuration, got couriers %v from %d blocks", strategies, len(blocks))
	}
}
