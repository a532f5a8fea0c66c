package webhooks

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"go.yaml.in/yaml/v3"
)

// openAPIYAML is the OpenAPI 3.1 document of the admin API of webhooks (openapi.yaml), written
// by hand. TestOpenAPI* hold it to AdminRoutes and to the handlers' real answers, so that it
// cannot drift from the code unnoticed. The admin port serves it as is.
//
//go:embed openapi.yaml
var openAPIYAML []byte

// openAPIJSON is the same document as JSON, converted on first use: clients and tools that
// read no YAML ask for it.
var openAPIJSON = sync.OnceValues(func() ([]byte, error) { return yamlToJSON(openAPIYAML) })

// serveOpenAPIYAML serves GET /admin/webhooks/openapi.yaml.
func (a *Admin) serveOpenAPIYAML(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openAPIYAML)
}

// serveOpenAPIJSON serves GET /admin/webhooks/openapi.json.
func (a *Admin) serveOpenAPIJSON(w http.ResponseWriter, r *http.Request) {
	b, err := openAPIJSON()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// yamlToJSON converts a YAML document whose mappings all have string keys (as an OpenAPI
// document's do) to JSON.
func yamlToJSON(y []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(y, &v); err != nil {
		return nil, fmt.Errorf("parse openapi.yaml: %w", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		// A mapping with a key that is not a string (an unquoted 200, say) cannot be JSON.
		return nil, fmt.Errorf("openapi.yaml as JSON: %w", err)
	}
	return b, nil
}
