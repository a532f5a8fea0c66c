package schemas

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestValidateConfig(t *testing.T) {
	t.Parallel()
	tree := func(doc string) any {
		dec := json.NewDecoder(strings.NewReader(doc))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := ValidateConfig(tree(`{"dsn":"postgres://x","serve":{"public":{"port":4433}}}`)); err != nil {
		t.Errorf("valid config: %v", err)
	}
	err := ValidateConfig(tree(`{"serve":{"public":{"port":70000,"x":1}},"identity":{"schemas":[{"id":"a"}]}}`))
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *ConfigError", err)
	}
	want := []ConfigProblem{
		{Key: "identity.schemas[0].url", Message: "is required"},
		{Key: "serve.public.port", Message: "must be <= 65535 but found 70000"},
		{Key: "serve.public.x", Message: "unknown key"},
	}
	if len(ce.Problems) != len(want) {
		t.Fatalf("problems = %+v, want %+v", ce.Problems, want)
	}
	for i := range want {
		if ce.Problems[i] != want[i] {
			t.Errorf("problem %d = %+v, want %+v", i, ce.Problems[i], want[i])
		}
	}
	if err := ValidateConfig([]any{}); err == nil || !strings.Contains(err.Error(), "config: (root): expected object") {
		t.Errorf("list at the top: %v", err)
	}
	if err := ValidateConfig(map[string]any{"dsn": struct{}{}}); err == nil {
		t.Error("non-JSON value: no error")
	}
	if !json.Valid(ConfigSchema()) {
		t.Error("ConfigSchema is not JSON")
	}
}
