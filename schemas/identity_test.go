package schemas

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// customSchema exercises what the default schema does not: $id, local
// $refs, arrays of identifiers, phone numbers, numbers, booleans, nested
// required properties and const. Its keys are deliberately not sorted.
const customSchema = `{
  "$id": "https://example.com/customer.schema.json",
  "$schema": "http://json-schema.org/draft-07/schema#",
  "definitions": {
    "email": {
      "type": "string",
      "format": "email",
      "ory.sh/kratos": {
        "credentials": {"password": {"identifier": true}},
        "verification": {"via": "email"}
      }
    }
  },
  "type": "object",
  "properties": {
    "traits": {
      "type": "object",
      "properties": {
        "username": {
          "type": "string", "title": "Username", "pattern": "^[a-z0-9_]+$", "minLength": 3, "maxLength": 32,
          "ory.sh/kratos": {"credentials": {"password": {"identifier": true}}}
        },
        "emails": {"type": "array", "items": {"$ref": "#/definitions/email"}, "maxItems": 2},
        "phone": {
          "type": "string", "format": "tel", "title": "Phone",
          "ory.sh/kratos": {
            "credentials": {"password": {"identifier": true}},
            "verification": {"via": "sms"},
            "recovery": {"via": "sms"}
          }
        },
        "profile": {
          "type": "object",
          "properties": {
            "age": {"type": "integer", "minimum": 13, "title": "Age"},
            "newsletter": {"type": "boolean"},
            "birthday": {"type": "string", "format": "date"},
            "website": {"type": "string", "format": "uri"}
          },
          "required": ["age"]
        },
        "plan": {"const": "free"}
      },
      "required": ["username"]
    }
  }
}`

func base64URL(doc string) string {
	return "base64://" + base64.StdEncoding.EncodeToString([]byte(doc))
}

func defaultSchemaForTest(t *testing.T) *IdentitySchema {
	t.Helper()
	r, err := NewRegistry(nil)
	if err != nil {
		t.Fatalf("NewRegistry(nil): %v", err)
	}
	s, ok := r.Get(DefaultSchemaID)
	if !ok {
		t.Fatal("default schema missing")
	}
	return s
}

func customSchemaForTest(t *testing.T) *IdentitySchema {
	t.Helper()
	r, err := NewRegistry([]Definition{{ID: "customer", URL: base64URL(customSchema)}})
	if err != nil {
		t.Fatalf("NewRegistry(custom): %v", err)
	}
	s, _ := r.Get("customer")
	return s
}

func TestDefaultRegistry(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry(nil)
	if err != nil {
		t.Fatalf("NewRegistry(nil): %v", err)
	}
	list := r.List()
	if len(list) != 1 || list[0].ID != DefaultSchemaID || list[0].URL != "" {
		t.Fatalf("List() = %+v, want only the built-in default", list)
	}
	if !bytes.Equal(list[0].Raw, defaultSchema) {
		t.Error("Raw is not the embedded document")
	}
	if !list[0].HasPasswordIdentifier() {
		t.Error("default schema should have a password identifier")
	}
	if _, ok := r.Get("nope"); ok {
		t.Error("Get(nope) found a schema")
	}
	// An explicit entry with an empty URL is the built-in schema too.
	r, err = NewRegistry([]Definition{{ID: "people"}, {ID: "customer", URL: base64URL(customSchema)}})
	if err != nil {
		t.Fatalf("NewRegistry: %v", err)
	}
	if ids := []string{r.List()[0].ID, r.List()[1].ID}; ids[0] != "people" || ids[1] != "customer" {
		t.Errorf("List() order = %v, want config order", ids)
	}
}

// want is one expected message: where, which id, and optionally the text.
type want struct {
	pointer string
	id      int64
	text    string
}

func checkMessages(t *testing.T, err error, wants []want) {
	t.Helper()
	if len(wants) == 0 {
		if err != nil {
			t.Fatalf("Validate() = %v, want nil", err)
		}
		return
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate() = %v (%T), want *ValidationError", err, err)
	}
	if len(ve.Messages) != len(wants) {
		t.Fatalf("got %d messages, want %d: %v", len(ve.Messages), len(wants), ve)
	}
	for i, w := range wants {
		got := ve.Messages[i]
		if got.Pointer != w.pointer || got.Message.ID != w.id || got.Message.Type != MessageTypeError {
			t.Errorf("message %d = %s %d %q, want %s %d", i, got.Pointer, got.Message.ID, got.Message.Text, w.pointer, w.id)
		}
		if w.text != "" && got.Message.Text != w.text {
			t.Errorf("message %d text = %q, want %q", i, got.Message.Text, w.text)
		}
	}
}

func TestValidateDefaultSchema(t *testing.T) {
	t.Parallel()
	s := defaultSchemaForTest(t)
	long := strings.Repeat("a", 320) + "@example.com"
	tests := []struct {
		name   string
		traits string
		want   []want
	}{
		{"valid", `{"email":"foo@example.com","name":{"first":"Ada","last":"Lovelace"}}`, nil},
		{"valid without optional name", `{"email":"foo@example.com"}`, nil},
		{"missing email", `{}`, []want{{"#/traits/email", MessageIDValidationRequired, "Property email is missing."}}},
		{"bad email format", `{"email":"not-an-email"}`, []want{
			{"#/traits/email", MessageIDValidationEmail, "not-an-email is not a valid email address"}}},
		{"too long", `{"email":"` + long + `"}`, []want{
			{"#/traits/email", MessageIDValidationEmail, ""},
			{"#/traits/email", MessageIDValidationMaxLength, "length must be <= 320, but got 332"}}},
		{"wrong type", `{"email":42}`, []want{
			{"#/traits/email", MessageIDValidationWrongType, "expected string, but got number"}}},
		{"nested wrong type", `{"email":"a@b.co","name":{"first":5,"last":true}}`, []want{
			{"#/traits/name/first", MessageIDValidationWrongType, "expected string, but got number"},
			{"#/traits/name/last", MessageIDValidationWrongType, "expected string, but got boolean"}}},
		{"unknown trait", `{"email":"a@b.co","nickname":"x"}`, []want{
			{"#/traits", MessageIDValidationGeneric, "additionalProperties 'nickname' not allowed"}}},
		{"every field wrong, in schema order", `{"name":{"last":1,"first":2},"email":3}`, []want{
			{"#/traits/email", MessageIDValidationWrongType, ""},
			{"#/traits/name/first", MessageIDValidationWrongType, ""},
			{"#/traits/name/last", MessageIDValidationWrongType, ""}}},
		{"invalid JSON", `{"email":`, []want{{"#/traits", MessageIDValidationGeneric, ""}}},
		{"empty", ``, []want{{"#/traits", MessageIDValidationGeneric, ""}}},
		{"trailing data", `{} {}`, []want{{"#/traits", MessageIDValidationGeneric, ""}}},
		{"not an object", `"foo@example.com"`, []want{
			{"#/traits", MessageIDValidationWrongType, "expected object, but got string"}}},
		{"null", `null`, []want{{"#/traits", MessageIDValidationWrongType, "expected object, but got null"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkMessages(t, s.Validate(json.RawMessage(tt.traits)), tt.want)
		})
	}
}

func TestValidateRequiredMessage(t *testing.T) {
	t.Parallel()
	s := defaultSchemaForTest(t)
	var ve *ValidationError
	if !errors.As(s.Validate(json.RawMessage(`{}`)), &ve) {
		t.Fatal("want *ValidationError")
	}
	m := ve.Messages[0]
	if m.Node() != "traits.email" {
		t.Errorf("Node() = %q, want traits.email", m.Node())
	}
	wantMsg := Message{ID: 4000002, Text: "Property email is missing.", Type: "error", Context: map[string]any{"property": "email"}}
	if !reflect.DeepEqual(m.Message, wantMsg) {
		t.Errorf("Message = %+v, want %+v", m.Message, wantMsg)
	}
	got, _ := json.Marshal(m.Message)
	if string(got) != `{"id":4000002,"text":"Property email is missing.","type":"error","context":{"property":"email"}}` {
		t.Errorf("JSON = %s", got)
	}
	if !strings.Contains(ve.Error(), "#/traits/email: Property email is missing.") {
		t.Errorf("Error() = %q", ve.Error())
	}
}

func TestValidateCustomSchema(t *testing.T) {
	t.Parallel()
	s := customSchemaForTest(t)
	tests := []struct {
		name   string
		traits string
		want   []want
	}{
		{"valid", `{"username":"ada_99","emails":["a@b.co"],"phone":"+49 170 1234567","profile":{"age":36,"newsletter":true,"birthday":"1815-12-10","website":"https://example.com"},"plan":"free"}`, nil},
		{"missing top-level", `{}`, []want{{"#/traits/username", MessageIDValidationRequired, "Property username is missing."}}},
		{"missing nested", `{"username":"ada","profile":{}}`, []want{{"#/traits/profile/age", MessageIDValidationRequired, "Property age is missing."}}},
		{"many errors in schema order", `{"plan":"pro","profile":{"age":5},"emails":["bad","a@b.co","c@d.ee"],"username":"A!","phone":"12345"}`, []want{
			{"#/traits/username", MessageIDValidationMinLength, "length must be >= 3, but got 2"},
			{"#/traits/username", MessageIDValidationInvalidFormat, `does not match pattern "^[a-z0-9_]+$"`},
			{"#/traits/emails", MessageIDValidationMaxItems, "maximum 2 items allowed, but found 3 items"},
			{"#/traits/emails/0", MessageIDValidationEmail, "bad is not a valid email address"},
			{"#/traits/phone", MessageIDValidationPhone, "12345 is not a valid phone number"},
			{"#/traits/profile/age", MessageIDValidationMinimum, "must be >= 13 but found 5"},
			{"#/traits/plan", MessageIDValidationConst, `must be equal to constant "free"`},
		}},
		{"integer", `{"username":"ada","profile":{"age":13.5}}`, []want{
			{"#/traits/profile/age", MessageIDValidationWrongType, "expected integer, but got number"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// The validator walks properties in map order; the result must
			// not depend on it.
			for range 20 {
				checkMessages(t, s.Validate(json.RawMessage(tt.traits)), tt.want)
				if t.Failed() {
					return
				}
			}
		})
	}
}

func TestMessageContext(t *testing.T) {
	t.Parallel()
	s := customSchemaForTest(t)
	var ve *ValidationError
	if !errors.As(s.Validate(json.RawMessage(`{"username":"ada","profile":{"age":5}}`)), &ve) {
		t.Fatal("want *ValidationError")
	}
	want := map[string]any{"minimum": 13.0, "actual": 5.0}
	if got := ve.Messages[0].Message.Context; !reflect.DeepEqual(got, want) {
		t.Errorf("Context = %#v, want %#v", got, want)
	}
}

func TestPasswordIdentifiers(t *testing.T) {
	t.Parallel()
	def := defaultSchemaForTest(t)
	custom := customSchemaForTest(t)
	tests := []struct {
		name   string
		schema *IdentitySchema
		traits string
		want   []string
	}{
		{"normalised", def, `{"email":"  Foo@Example.COM "}`, []string{"foo@example.com"}},
		{"NFKC folds full-width", def, `{"email":"ＦＯＯ@example.com"}`, []string{"foo@example.com"}},
		{"no identifier value", def, `{"name":{"first":"Ada"}}`, nil},
		{"nested, arrays, de-duplicated, schema order", custom,
			`{"phone":"+49 170 1234567","emails":["A@x.io","a@X.io ","b@y.io"],"username":" Bob "}`,
			[]string{"bob", "a@x.io", "b@y.io", "+49 170 1234567"}},
		{"blank values skipped", custom, `{"username":"   ","emails":[""]}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.schema.PasswordIdentifiers(json.RawMessage(tt.traits))
			if err != nil {
				t.Fatalf("PasswordIdentifiers: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := def.PasswordIdentifiers(json.RawMessage(`[`)); err == nil {
		t.Error("invalid JSON: want error")
	}
}

func TestAddresses(t *testing.T) {
	t.Parallel()
	def := defaultSchemaForTest(t)
	custom := customSchemaForTest(t)
	traits := json.RawMessage(`{"username":"bob","emails":["A@x.io","a@x.io","b@y.io"],"phone":" +49 170 1234567"}`)

	tests := []struct {
		name string
		got  []Address
		want []Address
	}{
		{"default verifiable", def.VerifiableAddresses(json.RawMessage(`{"email":" Foo@Example.com"}`)),
			[]Address{{Value: "foo@example.com", Via: "email"}}},
		{"default recovery", def.RecoveryAddresses(json.RawMessage(`{"email":"foo@example.com"}`)),
			[]Address{{Value: "foo@example.com", Via: "email"}}},
		{"custom verifiable", custom.VerifiableAddresses(traits), []Address{
			{Value: "a@x.io", Via: "email"}, {Value: "b@y.io", Via: "email"}, {Value: "+49 170 1234567", Via: "sms"}}},
		{"custom recovery", custom.RecoveryAddresses(traits), []Address{{Value: "+49 170 1234567", Via: "sms"}}},
		{"invalid JSON", def.VerifiableAddresses(json.RawMessage(`nope`)), nil},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.name, tt.got, tt.want)
		}
	}
}

func TestFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		schema *IdentitySchema
		want   []Field
	}{
		{"default", defaultSchemaForTest(t), []Field{
			{Name: "traits.email", InputType: "email", Title: "E-Mail", Required: true, Identifier: true, MaxLength: 320, Autocomplete: "email"},
			{Name: "traits.name.first", InputType: "text", Title: "First name"},
			{Name: "traits.name.last", InputType: "text", Title: "Last name"},
		}},
		{"custom", customSchemaForTest(t), []Field{
			{Name: "traits.username", InputType: "text", Title: "Username", Required: true, Identifier: true, Pattern: "^[a-z0-9_]+$", MaxLength: 32, Autocomplete: "username"},
			{Name: "traits.emails", InputType: "text", Identifier: true, Autocomplete: "email"},
			{Name: "traits.phone", InputType: "tel", Title: "Phone", Identifier: true, Autocomplete: "tel"},
			{Name: "traits.profile.age", InputType: "number", Title: "Age", Required: true},
			{Name: "traits.profile.newsletter", InputType: "checkbox"},
			{Name: "traits.profile.birthday", InputType: "date"},
			{Name: "traits.profile.website", InputType: "url"},
			{Name: "traits.plan", InputType: "text"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.schema.Fields()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Fields() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestLoadCustomSchema(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "customer.schema.json")
	if err := os.WriteFile(file, []byte(customSchema), 0o600); err != nil {
		t.Fatal(err)
	}
	urls := map[string]string{
		"file":           "file://" + file,
		"base64 std":     base64URL(customSchema),
		"base64 url-raw": "base64://" + base64.RawURLEncoding.EncodeToString([]byte(customSchema)),
	}
	for name, u := range urls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r, err := NewRegistry([]Definition{{ID: "customer", URL: u}})
			if err != nil {
				t.Fatalf("NewRegistry: %v", err)
			}
			s, ok := r.Get("customer")
			if !ok || s.URL != u || string(s.Raw) != customSchema {
				t.Fatalf("Get(customer) = %+v, %v", s, ok)
			}
			checkMessages(t, s.Validate(json.RawMessage(`{"username":"ada"}`)), nil)
			checkMessages(t, s.Validate(json.RawMessage(`{}`)), []want{{"#/traits/username", MessageIDValidationRequired, ""}})
		})
	}
}

func TestBadSchemasRejected(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, bytes.Repeat([]byte(" "), maxDocumentSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	traitsWith := func(trait string) string {
		return `{"type":"object","properties":{"traits":{"type":"object","properties":{"x":` + trait + `}}}}`
	}
	tests := []struct {
		name string
		defs []Definition
		want string // both the id and this must appear in the error
	}{
		{"https", []Definition{{ID: "remote", URL: "https://example.com/s.json"}}, "https:// is not supported: load it from file:// or base64://"},
		{"http", []Definition{{ID: "remote", URL: "http://example.com/s.json"}}, "not supported"},
		{"unknown scheme", []Definition{{ID: "odd", URL: "ftp://example.com/s.json"}}, "not supported"},
		{"missing file", []Definition{{ID: "gone", URL: "file://" + filepath.Join(dir, "nope.json")}}, "unreadable"},
		{"too large", []Definition{{ID: "big", URL: "file://" + big}}, "larger than"},
		{"bad base64", []Definition{{ID: "b64", URL: "base64://!!!"}}, "not valid standard or URL-safe base64"},
		{"not JSON", []Definition{{ID: "junk", URL: base64URL(`{"type":`)}}, "not valid JSON"},
		{"not an object", []Definition{{ID: "arr", URL: base64URL(`[]`)}}, "not a JSON object"},
		{"no traits", []Definition{{ID: "notraits", URL: base64URL(`{"type":"object","properties":{"email":{"type":"string"}}}`)}}, `no "properties.traits" object`},
		{"traits not object type", []Definition{{ID: "t", URL: base64URL(`{"properties":{"traits":{"type":"string","properties":{"a":{}}}}}`)}}, `must be "object"`},
		{"no trait", []Definition{{ID: "empty", URL: base64URL(`{"properties":{"traits":{"type":"object","properties":{}}}}`)}}, "at least one trait"},
		{"does not compile", []Definition{{ID: "broken", URL: base64URL(traitsWith(`{"type":"string","minLength":"three"}`))}}, "does not compile"},
		{"external ref", []Definition{{ID: "ref", URL: base64URL(traitsWith(`{"$ref":"https://example.com/email.json"}`))}}, "does not point to a schema in the same document"},
		{"bad via", []Definition{{ID: "via", URL: base64URL(traitsWith(`{"type":"string","ory.sh/kratos":{"verification":{"via":"pigeon"}}}`))}}, `via must be "email" or "sms"`},
		{"verification format", []Definition{{ID: "fmt", URL: base64URL(traitsWith(`{"type":"string","format":"uri","ory.sh/kratos":{"verification":{"via":"email"}}}`))}}, "used for verification"},
		{"identifier not bool", []Definition{{ID: "idb", URL: base64URL(traitsWith(`{"type":"string","ory.sh/kratos":{"credentials":{"password":{"identifier":"yes"}}}}`))}}, "must be a boolean"},
		{"duplicate id", []Definition{{ID: "twice"}, {ID: "twice"}}, "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewRegistry(tt.defs)
			if err == nil {
				t.Fatal("NewRegistry succeeded, want error")
			}
			id := tt.defs[len(tt.defs)-1].ID
			if !strings.Contains(err.Error(), `identity schema "`+id+`"`) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to name %q and say %q", err, id, tt.want)
			}
		})
	}
	if _, err := NewRegistry([]Definition{{ID: " "}}); err == nil || !strings.Contains(err.Error(), "id is empty") {
		t.Errorf("empty id: error = %v", err)
	}
}

func TestExternalRefInsideDefinitionsRefused(t *testing.T) {
	t.Parallel()
	doc := `{"properties":{"traits":{"type":"object","properties":{"x":{"type":"string"},
	  "y":{"allOf":[{"$ref":"https://example.com/other.json"}]}}}}}`
	_, err := NewRegistry([]Definition{{ID: "sneaky", URL: base64URL(doc)}})
	if err == nil || !strings.Contains(err.Error(), "is not supported") || !strings.Contains(err.Error(), `"sneaky"`) {
		t.Fatalf("error = %v, want the $ref refused", err)
	}
}

func TestSchemaWithoutIdentifierIsAllowed(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry([]Definition{{ID: "plain", URL: base64URL(
		`{"properties":{"traits":{"type":"object","properties":{"nickname":{"type":"string"}}}}}`)}})
	if err != nil {
		t.Fatalf("NewRegistry: %v", err)
	}
	s, _ := r.Get("plain")
	if s.HasPasswordIdentifier() {
		t.Error("HasPasswordIdentifier() = true")
	}
	ids, err := s.PasswordIdentifiers(json.RawMessage(`{"nickname":"x"}`))
	if err != nil || ids != nil {
		t.Errorf("PasswordIdentifiers = %v, %v", ids, err)
	}
}

func TestFieldMessageNode(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"#/traits/email":        "traits.email",
		"#/traits/name/first":   "traits.name.first",
		"#/traits/emails/0":     "traits.emails.0",
		"#/traits/a~1b/c~0d":    "traits.a/b.c~d",
		"#/traits/first%20name": "traits.first name",
		"#/password":            "password",
		"#/":                    "",
		"#":                     "",
		"":                      "",
	}
	for pointer, want := range tests {
		if got := (FieldMessage{Pointer: pointer}).Node(); got != want {
			t.Errorf("Node(%q) = %q, want %q", pointer, got, want)
		}
	}
}

func TestQuotedPropertyNames(t *testing.T) {
	t.Parallel()
	doc := `{"properties":{"traits":{"type":"object","properties":{"it's, \"x\"":{"type":"string"},"a/b":{"type":"string"}},
	  "required":["it's, \"x\"","a/b"]}}}`
	r, err := NewRegistry([]Definition{{ID: "odd", URL: base64URL(doc)}})
	if err != nil {
		t.Fatalf("NewRegistry: %v", err)
	}
	s, _ := r.Get("odd")
	checkMessages(t, s.Validate(json.RawMessage(`{}`)), []want{
		{"#/traits/it%27s%2C%20%22x%22", MessageIDValidationRequired, `Property it's, "x" is missing.`},
		{"#/traits/a~1b", MessageIDValidationRequired, "Property a/b is missing."},
	})
	var ve *ValidationError
	_ = errors.As(s.Validate(json.RawMessage(`{}`)), &ve)
	if got := ve.Messages[1].Node(); got != "traits.a/b" {
		t.Errorf("Node() = %q", got)
	}
}
