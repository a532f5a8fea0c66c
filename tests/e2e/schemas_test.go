package e2e

import (
	"net/http"
	"testing"

	client "github.com/ory/client-go"
)

// TestSchemas reads the identity schemas. Kratos serves /schemas on both ports; IdentityAPI
// is asked on the admin URL as the rest of the admin calls are, and on the public URL, where a
// self-service UI asks.
func TestSchemas(t *testing.T) {
	t.Parallel()
	e := setup(t, primary)

	for _, port := range []struct {
		name string
		api  client.IdentityAPI
	}{
		{"admin", e.admin},
		{"public", e.srv.public.IdentityAPI},
	} {
		t.Run(port.name, func(t *testing.T) {
			list, resp, err := port.api.ListIdentitySchemas(e.ctx).Execute()
			wantOK(t, "ListIdentitySchemas", http.StatusOK, resp, err)
			var found bool
			for _, s := range list {
				if s.Id == "default" {
					found = true
					if _, ok := traitsProperties(s.Schema); !ok {
						t.Errorf("want schema default with properties.traits, got %s", outcome(resp, err))
					}
				}
			}
			if !found {
				t.Errorf("want a schema with id default, got %s", outcome(resp, err))
			}

			schema, resp, err := port.api.GetIdentitySchema(e.ctx, "default").Execute()
			wantOK(t, "GetIdentitySchema(default)", http.StatusOK, resp, err)
			props, ok := traitsProperties(schema)
			if !ok {
				t.Fatalf("want a JSON schema with properties.traits, got %s", outcome(resp, err))
			}
			if _, ok := props["email"]; !ok {
				t.Errorf("want properties.traits.properties.email, got %s", outcome(resp, err))
			}

			_, resp, err = port.api.GetIdentitySchema(e.ctx, "no-such-schema").Execute()
			wantGenericError(t, "GetIdentitySchema(no-such-schema)", http.StatusNotFound, "", resp, err)
		})
	}
}

// traitsProperties returns properties.traits.properties of a JSON schema document.
func traitsProperties(schema map[string]any) (map[string]any, bool) {
	props, _ := schema["properties"].(map[string]any)
	traits, ok := props["traits"].(map[string]any)
	if !ok {
		return nil, false
	}
	tp, _ := traits["properties"].(map[string]any)
	return tp, true
}
