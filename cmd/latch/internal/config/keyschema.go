package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/latchhq/latch/schemas"
)

// keyNode is what the loader needs to know about one key of the config schema: its JSON
// types, its child keys or list items, and whether Latch ignores it. It is derived from
// schemas/config.schema.json, so the schema stays the one list of keys.
type keyNode struct {
	types  []string // "string", "integer", "boolean", "number", "array", "object"; empty: any
	props  map[string]*keyNode
	names  []string // props' names, longest first, for environment name matching
	items  *keyNode
	unused bool // x-latch-unused: a Kratos key Latch accepts and ignores
}

// keySchema is the key tree of the config schema, built once.
var keySchema = sync.OnceValues(func() (*keyNode, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(schemas.ConfigSchema()))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("config schema: %w", err)
	}
	return buildKeyNode(doc, doc, 0)
})

// buildKeyNode folds a subschema (following local $refs and merging allOf branches, but not
// if/then, which only narrows) into a keyNode.
func buildKeyNode(root, s map[string]any, depth int) (*keyNode, error) {
	if depth > 32 {
		return nil, fmt.Errorf("config schema: nesting too deep")
	}
	n := &keyNode{}
	var merge func(s map[string]any) error
	merge = func(s map[string]any) error {
		if ref, ok := s["$ref"].(string); ok {
			target, err := resolveRef(root, ref)
			if err != nil {
				return err
			}
			if err := merge(target); err != nil {
				return err
			}
		}
		if u, ok := s["x-latch-unused"].(bool); ok && u {
			n.unused = true
		}
		switch t := s["type"].(type) {
		case string:
			n.types = []string{t}
		case []any:
			n.types = n.types[:0]
			for _, e := range t {
				if str, ok := e.(string); ok {
					n.types = append(n.types, str)
				}
			}
		}
		if props, ok := s["properties"].(map[string]any); ok {
			if n.props == nil {
				n.props = map[string]*keyNode{}
			}
			for name, ps := range props {
				psm, _ := ps.(map[string]any)
				child, err := buildKeyNode(root, psm, depth+1)
				if err != nil {
					return err
				}
				if prev := n.props[name]; prev != nil {
					child = mergeKeyNodes(prev, child)
				}
				n.props[name] = child
			}
		}
		if items, ok := s["items"].(map[string]any); ok {
			child, err := buildKeyNode(root, items, depth+1)
			if err != nil {
				return err
			}
			n.items = child
		}
		if all, ok := s["allOf"].([]any); ok {
			for _, a := range all {
				if am, ok := a.(map[string]any); ok {
					if err := merge(am); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	if err := merge(s); err != nil {
		return nil, err
	}
	n.sortNames()
	return n, nil
}

// sortNames lists props' names longest first, so SELFSERVICE_FLOWS_... tries the longer of two
// names sharing a prefix first.
func (n *keyNode) sortNames() {
	n.names = n.names[:0]
	for name := range n.props {
		n.names = append(n.names, name)
	}
	slices.SortFunc(n.names, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
}

// mergeKeyNodes combines two descriptions of the same key (a $ref plus sibling properties).
func mergeKeyNodes(a, b *keyNode) *keyNode {
	out := *a
	if len(b.types) > 0 {
		out.types = b.types
	}
	out.unused = a.unused || b.unused
	if b.items != nil {
		out.items = b.items
	}
	if len(b.props) > 0 {
		out.props = map[string]*keyNode{}
		for k, v := range a.props {
			out.props[k] = v
		}
		for k, v := range b.props {
			out.props[k] = v
		}
		out.names = nil
		out.sortNames()
	}
	return &out
}

// resolveRef resolves a local "#/$defs/name" reference.
func resolveRef(root map[string]any, ref string) (map[string]any, error) {
	frag, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("config schema: only local $refs are supported, got %q", ref)
	}
	var node any = root
	for _, t := range strings.Split(frag, "/") {
		m, ok := node.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("config schema: bad $ref %q", ref)
		}
		node = m[t]
	}
	m, ok := node.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("config schema: bad $ref %q", ref)
	}
	return m, nil
}

// resolveEnv maps an environment variable name to a key path, or reports that it names no
// key Latch uses. Where several readings are possible the longest key name wins at each level.
func (n *keyNode) resolveEnv(name string) ([]any, *keyNode, bool) {
	if n == nil || n.unused {
		return nil, nil, false
	}
	if name == "" {
		return nil, n, true
	}
	if n.items != nil {
		digits, rest, _ := strings.Cut(name, "_")
		idx, err := strconv.Atoi(digits)
		if err == nil && idx >= 0 && strconv.Itoa(idx) == digits {
			if path, leaf, ok := n.items.resolveEnv(rest); ok {
				return append([]any{idx}, path...), leaf, true
			}
		}
	}
	for _, prop := range n.names {
		up := strings.ToUpper(prop)
		var rest string
		switch {
		case name == up:
			rest = ""
		case strings.HasPrefix(name, up+"_"):
			rest = name[len(up)+1:]
			if rest == "" {
				continue
			}
		default:
			continue
		}
		if path, leaf, ok := n.props[prop].resolveEnv(rest); ok {
			return append([]any{prop}, path...), leaf, true
		}
	}
	return nil, nil, false
}

// coerce turns an environment value into the JSON value the key's schema type calls for.
// Lists and objects are JSON; a key that allows several types takes the first that parses.
func (n *keyNode) coerce(value string) (any, error) {
	// Strings last: "1024" for a key that is a size string or a number of bytes is the number.
	types := slices.Clone(n.types)
	slices.SortStableFunc(types, func(a, b string) int {
		return boolInt(a == "string") - boolInt(b == "string")
	})
	if len(types) == 0 {
		types = []string{"string"}
	}
	var firstErr error
	for _, t := range types {
		v, err := coerceAs(t, value)
		if err == nil {
			return v, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

func coerceAs(typ, value string) (any, error) {
	switch typ {
	case "string":
		return value, nil
	case "integer":
		if _, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64); err != nil {
			return nil, fmt.Errorf("%q is not an integer", value)
		}
		return json.Number(strings.TrimSpace(value)), nil
	case "number":
		if _, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err != nil {
			return nil, fmt.Errorf("%q is not a number", value)
		}
		return json.Number(strings.TrimSpace(value)), nil
	case "boolean":
		b, err := strconv.ParseBool(strings.TrimSpace(value))
		if err != nil {
			return nil, fmt.Errorf("%q is not a boolean (true or false)", value)
		}
		return b, nil
	case "null":
		if value == "" || value == "null" {
			return nil, nil
		}
		return nil, fmt.Errorf("%q is not null", value)
	case "array", "object":
		dec := json.NewDecoder(strings.NewReader(value))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("expected a JSON %s: %v", typ, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("expected a single JSON %s", typ)
		}
		switch v.(type) {
		case []any:
			if typ == "array" {
				return v, nil
			}
		case map[string]any:
			if typ == "object" {
				return v, nil
			}
		}
		return nil, fmt.Errorf("expected a JSON %s", typ)
	}
	return value, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
