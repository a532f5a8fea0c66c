package schemas

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// configSchemaJSON is the JSON Schema of Latch's configuration file. cmd/latch also walks it to
// map environment variables to keys, so the schema is the single list of keys Latch knows.
//
//go:embed config.schema.json
var configSchemaJSON []byte

// configSchemaURL names the schema inside the compiler; it is never fetched.
const configSchemaURL = "mem://latch/config.schema.json"

// ConfigSchema returns the configuration file's JSON Schema (a copy; callers may keep it).
// Besides standard keywords it carries two of Latch's own: "x-latch-unused" marks a Kratos key
// that Latch accepts but ignores, and "x-latch-message" replaces the validator's wording for
// errors inside that subschema.
func ConfigSchema() []byte { return bytes.Clone(configSchemaJSON) }

// configSchema is compiled once, on first use; the schema is embedded, so failing to compile
// is a programming error that every test catches.
var configSchema = sync.OnceValues(func() (*configCompiled, error) {
	var doc any
	dec := json.NewDecoder(bytes.NewReader(configSchemaJSON))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("config schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	if err := c.AddResource(configSchemaURL, bytes.NewReader(configSchemaJSON)); err != nil {
		return nil, fmt.Errorf("config schema: %w", err)
	}
	s, err := c.Compile(configSchemaURL)
	if err != nil {
		return nil, fmt.Errorf("config schema: %w", err)
	}
	return &configCompiled{schema: s, doc: doc}, nil
})

type configCompiled struct {
	schema *jsonschema.Schema
	doc    any // the schema itself, to look up the subschema an error came from
}

// ConfigProblem is one thing wrong with a configuration file.
type ConfigProblem struct {
	// Key is the dotted key path with list indexes, e.g.
	// "selfservice.flows.login.after.password.hooks[0].hook"; "(root)" for the file itself.
	Key string
	// Message says what is wrong, in lower case, without the key.
	Message string
}

// ConfigError is a configuration that does not match the schema (or, from cmd/latch, fails a
// semantic check). It lists every problem found, each naming its key, so an operator fixes a
// file in one pass rather than one error per restart.
type ConfigError struct {
	Problems []ConfigProblem
}

// Error prints one "config: key: message" line per problem.
func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = "config: " + p.Key + ": " + p.Message
	}
	return strings.Join(lines, "\n")
}

// ValidateConfig validates a configuration tree against the config schema. The tree must hold
// encoding/json types (map[string]any, []any, string, bool, nil, json.Number or float64), as
// produced by decoding JSON with UseNumber. It returns nil or a *ConfigError.
func ValidateConfig(tree any) (err error) {
	cs, err := configSchema()
	if err != nil {
		return err
	}
	defer func() {
		// The validator panics on a Go type JSON cannot hold; that is the caller's bug, but
		// it must not take the process down with an unhelpful trace.
		if r := recover(); r != nil {
			err = fmt.Errorf("config: the configuration tree holds a non-JSON value: %v", r)
		}
	}()
	verr := cs.schema.Validate(tree)
	if verr == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(verr, &ve) {
		return fmt.Errorf("config: %w", verr)
	}
	var problems []ConfigProblem
	for _, leaf := range configLeaves(ve, nil) {
		problems = append(problems, cs.translate(leaf, tree)...)
	}
	problems = sortConfigProblems(problems)
	if len(problems) == 0 {
		problems = []ConfigProblem{{Key: "(root)", Message: ve.Error()}}
	}
	return &ConfigError{Problems: problems}
}

// sortConfigProblems orders problems by key and drops duplicates (allOf/if-then can report the same
// leaf twice).
func sortConfigProblems(ps []ConfigProblem) []ConfigProblem {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Key < ps[j].Key })
	return slices.Compact(ps)
}

// configLeaves collects the errors that have no causes: the ones that say what is wrong.
func configLeaves(e *jsonschema.ValidationError, out []*jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return append(out, e)
	}
	for _, c := range e.Causes {
		out = configLeaves(c, out)
	}
	return out
}

// translate turns one validator error into problems naming keys in dotted form.
func (cs *configCompiled) translate(leaf *jsonschema.ValidationError, tree any) []ConfigProblem {
	keyword, parent := cs.keywordAndParent(leaf.AbsoluteKeywordLocation)
	instance, key := configInstanceAt(tree, leaf.InstanceLocation)
	switch keyword {
	case "additionalProperties":
		// One problem per unknown key, named in full, rather than "additionalProperties 'x'".
		obj, _ := instance.(map[string]any)
		props, _ := parent["properties"].(map[string]any)
		var out []ConfigProblem
		for _, k := range configSortedKeys(obj) {
			if _, known := props[k]; !known {
				out = append(out, ConfigProblem{Key: configJoinKey(key, k), Message: "unknown key"})
			}
		}
		if len(out) > 0 {
			return out
		}
	case "required":
		obj, _ := instance.(map[string]any)
		req, _ := parent["required"].([]any)
		var out []ConfigProblem
		for _, r := range req {
			name, _ := r.(string)
			if _, ok := obj[name]; !ok {
				out = append(out, ConfigProblem{Key: configJoinKey(key, name), Message: "is required"})
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	if key == "" {
		key = "(root)"
	}
	if msg, ok := parent["x-latch-message"].(string); ok {
		return []ConfigProblem{{Key: key, Message: msg}}
	}
	if keyword == "enum" {
		enum, _ := parent["enum"].([]any)
		allowed := make([]string, 0, len(enum))
		for _, v := range enum {
			allowed = append(allowed, fmt.Sprint(v))
		}
		return []ConfigProblem{{Key: key, Message: fmt.Sprintf("%s is not allowed here (allowed: %s)",
			configShow(instance), strings.Join(allowed, ", "))}}
	}
	return []ConfigProblem{{Key: key, Message: leaf.Message}}
}

// keywordAndParent splits an absolute keyword location ("mem://...#/$defs/listen/properties/
// port/maximum") into the keyword ("maximum") and the subschema that holds it.
func (cs *configCompiled) keywordAndParent(loc string) (string, map[string]any) {
	_, frag, ok := strings.Cut(loc, "#")
	if !ok {
		return "", nil
	}
	tokens := strings.Split(strings.TrimPrefix(frag, "/"), "/")
	if len(tokens) == 0 {
		return "", nil
	}
	keyword := tokens[len(tokens)-1]
	var node any = cs.doc
	for _, t := range tokens[:len(tokens)-1] {
		t = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
		switch n := node.(type) {
		case map[string]any:
			node = n[t]
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(n) {
				return keyword, nil
			}
			node = n[i]
		default:
			return keyword, nil
		}
	}
	m, _ := node.(map[string]any)
	return keyword, m
}

// configInstanceAt follows a JSON pointer into the tree and returns the value there and the
// dotted key of that place ("hooks[0].config"); list indexes are told from numeric map keys by
// looking at the tree.
func configInstanceAt(tree any, pointer string) (any, string) {
	if pointer == "" {
		return tree, ""
	}
	var key strings.Builder
	node := tree
	for _, t := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		t = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
		switch n := node.(type) {
		case []any:
			key.WriteString("[" + t + "]")
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(n) {
				node = nil
				continue
			}
			node = n[i]
		case map[string]any:
			if key.Len() > 0 {
				key.WriteByte('.')
			}
			key.WriteString(t)
			node = n[t]
		default:
			if key.Len() > 0 {
				key.WriteByte('.')
			}
			key.WriteString(t)
			node = nil
		}
	}
	return node, key.String()
}

func configJoinKey(parent, child string) string {
	if parent == "" {
		return child
	}
	return parent + "." + child
}

func configSortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// configShow prints a value the way it appears in a config file: strings quoted, the rest as
// JSON.
func configShow(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
