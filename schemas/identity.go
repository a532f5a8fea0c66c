package schemas

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"
	"golang.org/x/text/unicode/norm"
)

// DefaultSchemaID is the id of the built-in identity schema, used when the
// configuration lists no schema. It matches Kratos' default
// `identity.default_schema_id`, so Kratos clients that send no schema id
// keep working.
const DefaultSchemaID = "default"

// maxDocumentSize caps every identity schema document. Schemas come from
// the operator, but a wrong path (a log file, a dump) should fail fast
// instead of being read into memory.
const maxDocumentSize = 1 << 20

//go:embed default.identity.schema.json
var defaultSchema []byte

// Definition is one entry of the `identity.schemas` config list. It says
// where a schema comes from; the registry decides whether that place is
// trusted.
type Definition struct {
	// ID names the schema; identities store it as their schema_id.
	ID string
	// URL is file://<path>, base64://<standard or URL-safe base64>, or ""
	// for the built-in default schema. http(s) is refused: a schema fetched
	// at start-up from the network would make start-up depend on that
	// network and let whoever controls it change what an identity is.
	URL string
}

// Registry holds every identity schema, compiled once at start-up, so a
// broken schema stops the server instead of failing a user's registration,
// and no request pays for compilation.
type Registry struct {
	byID map[string]*IdentitySchema
	list []*IdentitySchema
}

// NewRegistry loads and compiles every schema in defs. With no defs it
// holds the built-in default schema under [DefaultSchemaID]. Errors name
// the schema id and what is wrong with it.
//
// A schema without any password identifier is accepted (it may serve
// identities created by an admin, or other methods later); check
// [IdentitySchema.HasPasswordIdentifier] to warn about it.
func NewRegistry(defs []Definition) (*Registry, error) {
	if len(defs) == 0 {
		defs = []Definition{{ID: DefaultSchemaID}}
	}
	r := &Registry{byID: make(map[string]*IdentitySchema, len(defs))}
	for i, def := range defs {
		if strings.TrimSpace(def.ID) == "" {
			return nil, fmt.Errorf("identity schema #%d: id is empty", i+1)
		}
		if _, dup := r.byID[def.ID]; dup {
			return nil, fmt.Errorf("identity schema %q: id is listed twice", def.ID)
		}
		raw, err := loadDocument(def.URL)
		if err != nil {
			return nil, fmt.Errorf("identity schema %q: %w", def.ID, err)
		}
		s, err := compileIdentitySchema(def.ID, def.URL, raw)
		if err != nil {
			return nil, fmt.Errorf("identity schema %q: %w", def.ID, err)
		}
		r.byID[def.ID] = s
		r.list = append(r.list, s)
	}
	return r, nil
}

// Get returns the schema with the given id, so flows can resolve an
// identity's schema_id or a requested identity_schema.
func (r *Registry) Get(id string) (*IdentitySchema, bool) {
	s, ok := r.byID[id]
	return s, ok
}

// List returns every schema in config order, for GET /schemas.
func (r *Registry) List() []*IdentitySchema {
	return append([]*IdentitySchema(nil), r.list...)
}

// loadDocument reads a schema document from a trusted place, size-capped.
func loadDocument(rawURL string) ([]byte, error) {
	switch {
	case rawURL == "":
		return bytes.Clone(defaultSchema), nil
	case strings.HasPrefix(rawURL, "file://"):
		path := strings.TrimPrefix(rawURL, "file://")
		if path == "" {
			return nil, errors.New("file:// URL has no path")
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("unreadable: %w", err)
		}
		defer f.Close()
		raw, err := io.ReadAll(io.LimitReader(f, maxDocumentSize+1))
		if err != nil {
			return nil, fmt.Errorf("unreadable: %w", err)
		}
		if len(raw) > maxDocumentSize {
			return nil, fmt.Errorf("%s is larger than %d bytes", path, maxDocumentSize)
		}
		return raw, nil
	case strings.HasPrefix(rawURL, "base64://"):
		payload := strings.TrimPrefix(rawURL, "base64://")
		if len(payload) > base64.StdEncoding.EncodedLen(maxDocumentSize) {
			return nil, fmt.Errorf("base64:// document is larger than %d bytes", maxDocumentSize)
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			raw, err := enc.DecodeString(payload)
			if err != nil {
				continue
			}
			if len(raw) > maxDocumentSize {
				return nil, fmt.Errorf("base64:// document is larger than %d bytes", maxDocumentSize)
			}
			return raw, nil
		}
		return nil, errors.New("unreadable: base64:// payload is not valid standard or URL-safe base64")
	}
	if u, err := url.Parse(rawURL); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		return nil, fmt.Errorf("loading identity schemas from %s:// is not supported: load it from file:// or base64://", u.Scheme)
	}
	shown := rawURL
	if len(shown) > 64 {
		shown = shown[:64] + "..."
	}
	return nil, fmt.Errorf("URL %q is not supported: load identity schemas from file:// or base64://", shown)
}

// IdentitySchema is one compiled identity schema: the validator plus what
// the flows read from the schema document (field order, UI hints and the
// `ory.sh/kratos` extension).
type IdentitySchema struct {
	// ID is the configured schema id.
	ID string
	// URL is the configured URL ("" for the built-in default schema).
	URL string
	// Raw is the document exactly as loaded; GET /schemas/{id} serves it.
	// It is shared: callers must not modify it.
	Raw json.RawMessage

	compiled      *jsonschema.Schema
	traits        *trait
	fields        []Field
	order         map[string]int
	hasIdentifier bool
}

// schemaResourceURL names a schema inside the validator. It is never
// fetched; it only has to be absolute and unique per schema.
func schemaResourceURL(id string) string {
	return "latch://identity-schemas/" + url.PathEscape(id) + ".schema.json"
}

func compileIdentitySchema(id, rawURL string, raw []byte) (*IdentitySchema, error) {
	root, err := parseOrdered(raw)
	if err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if root.kind != 'o' {
		return nil, errors.New("the document is not a JSON object")
	}
	traitsNode := root.object("properties").object("traits")
	if traitsNode == nil {
		return nil, errors.New(`no "properties.traits" object`)
	}
	if ty := traitsNode.get("type"); ty != nil && (ty.kind != 's' || ty.str != "object") {
		return nil, errors.New(`"properties.traits.type" must be "object"`)
	}
	if props := traitsNode.object("properties"); props == nil || len(props.keys) == 0 {
		return nil, errors.New(`"properties.traits.properties" must declare at least one trait`)
	}
	traits, err := buildTrait(root, traitsNode, "", nil, 0)
	if err != nil {
		return nil, err
	}

	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft7 // Kratos identity schemas are draft-07 unless they say otherwise
	c.AssertFormat = true
	c.Formats = map[string]func(any) bool{
		"tel":         isPhoneNumber,
		"no-validate": func(any) bool { return true },
		"noformat":    func(any) bool { return true },
	}
	c.LoadURL = func(s string) (io.ReadCloser, error) {
		return nil, fmt.Errorf("$ref to %s is not supported: identity schemas must be self-contained", s)
	}
	loc := schemaResourceURL(id)
	if err := c.AddResource(loc, bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	compiled, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("does not compile: %w", err)
	}

	s := &IdentitySchema{
		ID:       id,
		URL:      rawURL,
		Raw:      json.RawMessage(raw),
		compiled: compiled,
		traits:   traits,
		fields:   collectFields(traits, nil),
		order:    map[string]int{},
	}
	pointerOrder(traits, "#/traits", s.order)
	walkTraits(traits, func(t *trait) {
		if t.identifier {
			s.hasIdentifier = true
		}
	})
	return s, nil
}

func walkTraits(t *trait, visit func(*trait)) {
	visit(t)
	for _, p := range t.props {
		walkTraits(p, visit)
	}
	if t.items != nil {
		walkTraits(t.items, visit)
	}
}

// isPhoneNumber approximates the "tel" format Kratos checks with
// libphonenumber: an international number, "+" then 7 to 15 digits, with
// the usual separators.
func isPhoneNumber(v any) bool {
	s, ok := v.(string)
	if !ok {
		return true
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), "+")
	if !ok {
		return false
	}
	digits := 0
	for _, c := range rest {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case strings.ContainsRune(" -().", c):
		default:
			return false
		}
	}
	return digits >= 7 && digits <= 15
}

// HasPasswordIdentifier reports whether any trait is marked as a password
// identifier. Without one, password registration cannot create credentials
// for this schema, which is worth a warning at start-up.
func (s *IdentitySchema) HasPasswordIdentifier() bool { return s.hasIdentifier }

// decodeTraits parses submitted traits (numbers kept exact) and insists on
// a JSON object, reporting problems the same way as schema violations.
func decodeTraits(raw json.RawMessage) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	if err == nil {
		if _, tail := dec.Token(); !errors.Is(tail, io.EOF) {
			err = errors.New("unexpected data after the traits object")
		}
	}
	if err != nil {
		return nil, &ValidationError{Messages: []FieldMessage{{
			Pointer: "#/traits",
			Message: msgGeneric(fmt.Sprintf("traits are not valid JSON: %v", err)),
		}}}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &ValidationError{Messages: []FieldMessage{{
			Pointer: "#/traits",
			Message: msgWrongType([]string{"object"}, jsonTypeName(v)),
		}}}
	}
	return obj, nil
}

func jsonTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	default:
		return "object"
	}
}

// Validate checks traits the way Kratos does: the document
// {"traits": <traits>} is validated against the whole schema, and every
// violation is reported. It returns nil or a *ValidationError; any other
// error means the schema itself is broken (for example a $ref loop).
func (s *IdentitySchema) Validate(traits json.RawMessage) error {
	obj, err := decodeTraits(traits)
	if err != nil {
		return err
	}
	doc := map[string]any{"traits": obj}
	if err := s.compiled.Validate(doc); err != nil {
		return s.toValidationError(err, doc)
	}
	return nil
}

// NormalizeIdentifier makes equal-looking identifiers equal before they are
// stored or looked up (login and admin search use it too): Unicode NFKC (full-width and compatibility forms
// fold), surrounding space trimmed, lower case.
func NormalizeIdentifier(v string) string {
	return strings.ToLower(strings.TrimSpace(norm.NFKC.String(v)))
}

// PasswordIdentifiers returns the normalized values of every trait marked
// `"ory.sh/kratos": {"credentials": {"password": {"identifier": true}}}`,
// de-duplicated, in schema order; nested objects and arrays of strings are
// followed. These are what a user types to log in with a password, and
// what must be unique across identities. Only invalid traits JSON is an
// error (a *ValidationError).
func (s *IdentitySchema) PasswordIdentifiers(traits json.RawMessage) ([]string, error) {
	obj, err := decodeTraits(traits)
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	walkValues(s.traits, obj, func(t *trait, v string) {
		if !t.identifier {
			return
		}
		if n := NormalizeIdentifier(v); n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	})
	return out, nil
}

// Address is a value a message can be sent to, and the channel to use.
type Address struct {
	Value string `json:"value"`
	Via   string `json:"via"` // "email" or "sms"
}

// VerifiableAddresses returns the normalized addresses of traits marked
// with `"verification": {"via": ...}`, de-duplicated, in schema order; they
// become the identity's verifiable_addresses. Invalid traits give nil.
func (s *IdentitySchema) VerifiableAddresses(traits json.RawMessage) []Address {
	return s.addresses(traits, func(t *trait) string { return t.verificationVia })
}

// RecoveryAddresses is VerifiableAddresses for `"recovery": {"via": ...}`;
// they become the identity's recovery_addresses.
func (s *IdentitySchema) RecoveryAddresses(traits json.RawMessage) []Address {
	return s.addresses(traits, func(t *trait) string { return t.recoveryVia })
}

func (s *IdentitySchema) addresses(traits json.RawMessage, via func(*trait) string) []Address {
	obj, err := decodeTraits(traits)
	if err != nil {
		return nil
	}
	var out []Address
	seen := map[Address]bool{}
	walkValues(s.traits, obj, func(t *trait, v string) {
		a := Address{Value: NormalizeIdentifier(v), Via: via(t)}
		if a.Via != "" && a.Value != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	})
	return out
}

// Field describes one leaf trait as a form input, so flows can build UI
// nodes from the schema the way Kratos does.
type Field struct {
	// Name is the node name: "traits.email", "traits.name.first".
	Name string
	// InputType is the HTML input type: "email", "tel", "number",
	// "checkbox", "date", "datetime-local", "url" or "text".
	InputType string
	// Title is the schema's title, used as the node label.
	Title string
	// Required is true when the trait is listed in its parent's
	// "required".
	Required bool
	// Identifier is true for password identifiers.
	Identifier bool
	// Pattern is the schema's "pattern", for client-side checks.
	Pattern string
	// MaxLength is the schema's "maxLength"; 0 means none.
	MaxLength int
	// Autocomplete is "email" for email identifiers, "tel" for phone
	// numbers, "username" for other identifiers, else "".
	Autocomplete string
}

// Fields returns the leaf trait fields in the order the schema document
// lists them, so forms are stable and follow the operator's layout.
func (s *IdentitySchema) Fields() []Field {
	return append([]Field(nil), s.fields...)
}
