package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// jnode is a JSON value that remembers object key order. Go maps forget it,
// and the order of properties in an identity schema is the order of the
// fields in every form Latch renders.
type jnode struct {
	kind byte // 'o' object, 'a' array, 's' string, 'n' number, 'b' bool, 'z' null
	keys []string
	vals []*jnode // object members (parallel to keys) or array elements
	str  string   // string value, or number text
	b    bool
}

// get returns the member named key (the last one if repeated, as
// encoding/json and the validator would), or nil.
func (n *jnode) get(key string) *jnode {
	if n == nil || n.kind != 'o' {
		return nil
	}
	for i := len(n.keys) - 1; i >= 0; i-- {
		if n.keys[i] == key {
			return n.vals[i]
		}
	}
	return nil
}

func (n *jnode) object(key string) *jnode {
	if v := n.get(key); v != nil && v.kind == 'o' {
		return v
	}
	return nil
}

func (n *jnode) string(key string) string {
	if v := n.get(key); v != nil && v.kind == 's' {
		return v.str
	}
	return ""
}

// parseOrdered decodes one JSON document (numbers as text, like UseNumber)
// and rejects trailing data.
func parseOrdered(raw []byte) (*jnode, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	n, err := parseValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the top-level value")
	}
	return n, nil
}

func parseValue(dec *json.Decoder) (*jnode, error) {
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		n := &jnode{kind: 'a'}
		if t == '{' {
			n.kind = 'o'
		}
		for dec.More() {
			if n.kind == 'o' {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k.(string))
			}
			v, err := parseValue(dec)
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, v)
		}
		if _, err := dec.Token(); err != nil { // closing delimiter
			return nil, err
		}
		return n, nil
	case string:
		return &jnode{kind: 's', str: t}, nil
	case json.Number:
		return &jnode{kind: 'n', str: t.String()}, nil
	case bool:
		return &jnode{kind: 'b', b: t}, nil
	default:
		return &jnode{kind: 'z'}, nil
	}
}

// resolveLocal follows a same-document JSON pointer ("#/definitions/x").
func resolveLocal(root *jnode, ref string) *jnode {
	path, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil
	}
	cur := root
	if path == "" {
		return cur
	}
	for _, token := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		token = unescapePointerToken(token)
		switch {
		case cur == nil:
			return nil
		case cur.kind == 'o':
			cur = cur.get(token)
		case cur.kind == 'a':
			i, err := strconv.Atoi(token)
			if err != nil || i < 0 || i >= len(cur.vals) {
				return nil
			}
			cur = cur.vals[i]
		default:
			return nil
		}
	}
	return cur
}

// trait is one schema node under properties.traits, with what the flows
// need from it: UI hints and the `ory.sh/kratos` extension.
type trait struct {
	name            string   // property name; "" for the traits root and array items
	path            []string // property names from the traits root
	types           []string
	format          string
	title           string
	pattern         string
	maxLength       int
	required        bool // listed in the parent's "required"
	identifier      bool // credentials.password.identifier
	verificationVia string
	recoveryVia     string
	props           []*trait // in document order
	items           *trait
}

func (t *trait) hasType(name string) bool { return slices.Contains(t.types, name) }

// maxTraitDepth bounds nesting and $ref chains, so a recursive schema
// cannot make start-up loop.
const maxTraitDepth = 32

// verificationFormats are the formats Kratos' identity meta-schema
// (embedx/identity_meta.schema.json) allows on a top-level trait that
// carries `ory.sh/kratos.verification`; older Kratos spells the last one
// "noformat", newer "no-validate", so both are accepted.
var verificationFormats = []string{"email", "tel", "date", "time", "date-time", "no-validate", "noformat"}

// buildTrait reads one schema node (following local $refs) into a trait and
// enforces the parts of Kratos' identity meta-schema the validator's own
// meta-schema does not know about.
func buildTrait(root, node *jnode, name string, path []string, depth int) (*trait, error) {
	where := "properties.traits"
	if len(path) > 0 {
		where += ".properties." + strings.Join(path, ".properties.")
	}
	for ref := node.string("$ref"); ref != ""; ref = node.string("$ref") {
		if depth++; depth > maxTraitDepth {
			return nil, fmt.Errorf("%s: $ref chain or nesting deeper than %d", where, maxTraitDepth)
		}
		target := resolveLocal(root, ref)
		if target == nil || target.kind != 'o' {
			return nil, fmt.Errorf("%s: $ref %q does not point to a schema in the same document", where, ref)
		}
		node = target
	}
	if depth > maxTraitDepth {
		return nil, fmt.Errorf("%s: nested deeper than %d levels", where, maxTraitDepth)
	}

	t := &trait{
		name:    name,
		path:    path,
		format:  node.string("format"),
		title:   node.string("title"),
		pattern: node.string("pattern"),
	}
	switch ty := node.get("type"); {
	case ty == nil:
	case ty.kind == 's':
		t.types = []string{ty.str}
	case ty.kind == 'a':
		for _, v := range ty.vals {
			if v.kind == 's' {
				t.types = append(t.types, v.str)
			}
		}
	}
	if ml := node.get("maxLength"); ml != nil && ml.kind == 'n' {
		if v, err := strconv.Atoi(ml.str); err == nil && v > 0 {
			t.maxLength = v
		}
	}
	if err := readExtension(node.get("ory.sh/kratos"), t, where); err != nil {
		return nil, err
	}

	var required []string
	if r := node.get("required"); r != nil && r.kind == 'a' {
		for _, v := range r.vals {
			if v.kind == 's' {
				required = append(required, v.str)
			}
		}
	}
	if props := node.object("properties"); props != nil {
		for i, key := range props.keys {
			if props.vals[i].kind != 'o' {
				continue // boolean schemas carry no UI or extension data
			}
			child, err := buildTrait(root, props.vals[i], key, append(slices.Clip(path), key), depth+1)
			if err != nil {
				return nil, err
			}
			child.required = slices.Contains(required, key)
			t.props = append(t.props, child)
		}
	}
	if items := node.object("items"); items != nil {
		child, err := buildTrait(root, items, "", path, depth+1)
		if err != nil {
			return nil, err
		}
		t.items = child
	}
	return t, nil
}

// readExtension reads the `ory.sh/kratos` keyword of a trait.
func readExtension(ext *jnode, t *trait, where string) error {
	if ext == nil {
		return nil
	}
	if ext.kind != 'o' {
		return fmt.Errorf("%s: \"ory.sh/kratos\" must be an object", where)
	}
	if id := ext.object("credentials").object("password").get("identifier"); id != nil {
		if id.kind != 'b' {
			return fmt.Errorf("%s: credentials.password.identifier must be a boolean", where)
		}
		t.identifier = id.b
	}
	for _, k := range []struct {
		key string
		via *string
	}{{"verification", &t.verificationVia}, {"recovery", &t.recoveryVia}} {
		block := ext.get(k.key)
		if block == nil {
			continue
		}
		via := block.string("via")
		if block.kind != 'o' || (via != "email" && via != "sms") {
			return fmt.Errorf("%s: \"ory.sh/kratos\".%s.via must be \"email\" or \"sms\"", where, k.key)
		}
		*k.via = via
	}
	if t.verificationVia != "" && len(t.path) == 1 && t.format != "" && !slices.Contains(verificationFormats, t.format) {
		return fmt.Errorf("%s: a trait used for verification must have \"format\" one of %s, not %q",
			where, strings.Join(verificationFormats, ", "), t.format)
	}
	return nil
}

// walkValues calls visit with every string in value that sits on a schema
// node, following the schema's property order, so results come out in
// schema order. An array's own node is visited for each of its strings, as
// is its items node.
func walkValues(t *trait, value any, visit func(*trait, string)) {
	switch v := value.(type) {
	case string:
		visit(t, v)
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				visit(t, s)
			}
			if t.items != nil {
				walkValues(t.items, e, visit)
			}
		}
	case map[string]any:
		for _, p := range t.props {
			if pv, ok := v[p.name]; ok {
				walkValues(p, pv, visit)
			}
		}
	}
}

// collectFields appends the leaf fields under t in document order. Objects
// are flattened into their leaves; arrays of objects are skipped (Kratos
// renders no input for free-form JSON either).
func collectFields(t *trait, out []Field) []Field {
	for _, p := range t.props {
		switch {
		case p.hasType("object") || (len(p.types) == 0 && len(p.props) > 0):
			out = collectFields(p, out)
			continue
		case p.hasType("array") && p.items != nil && (p.items.hasType("object") || p.items.hasType("array")):
			continue
		}
		out = append(out, fieldOf(p))
	}
	return out
}

func fieldOf(t *trait) Field {
	identifier := t.identifier || (t.items != nil && t.items.identifier)
	format := t.format
	if format == "" && t.items != nil {
		format = t.items.format
	}
	f := Field{
		Name:       "traits." + strings.Join(t.path, "."),
		InputType:  "text",
		Title:      t.title,
		Required:   t.required,
		Identifier: identifier,
		Pattern:    t.pattern,
		MaxLength:  t.maxLength,
	}
	switch {
	case t.hasType("boolean"):
		f.InputType = "checkbox"
	case t.hasType("number") || t.hasType("integer"):
		f.InputType = "number"
	case t.hasType("array"):
		// one text input holding the list; Kratos does the same
	default:
		switch format {
		case "email":
			f.InputType = "email"
		case "tel":
			f.InputType = "tel"
		case "date":
			f.InputType = "date"
		case "date-time":
			f.InputType = "datetime-local"
		case "uri", "url":
			f.InputType = "url"
		}
	}
	switch {
	case identifier && format == "email":
		f.Autocomplete = "email"
	case identifier && format == "tel":
		f.Autocomplete = "tel"
	case identifier:
		f.Autocomplete = "username"
	case format == "tel":
		f.Autocomplete = "tel"
	}
	return f
}

// pointerOrder numbers every schema node under t in document order (pre-
// order), keyed by its JSON pointer, so errors can be sorted in form order.
func pointerOrder(t *trait, prefix string, order map[string]int) {
	order[prefix] = len(order)
	for _, p := range t.props {
		pointerOrder(p, prefix+"/"+escapePointerToken(p.name), order)
	}
}
