package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/latchhq/latch/schemas"
)

// maxConfigFileSize caps a config file; a real one is a few KiB.
const maxConfigFileSize = 4 << 20

// Load reads the configuration for `latch serve`, Kratos-style:
//
//  1. every file in paths, in order, deep-merged (later files win; lists are replaced whole);
//  2. environment overrides on top (see applyEnv);
//  3. validation of the whole tree against schemas/config.schema.json;
//  4. decoding into Config, withDefaults(dev), then the semantic checks.
//
// Kratos keys Latch accepts but ignores come back as warnings. With dev and no file at all,
// no configuration is needed. Errors name the key in dotted form ("config: serve.public.port:
// must be <= 65535 but found 70000").
func Load(paths []string, dev bool, env []string) (*Config, []string, error) {
	return LoadFor(paths, dev, env, true)
}

// LoadFor is Load; requireServe=false skips the checks that only `latch serve`
// needs (secrets, hashing cost, ports), for `latch migrate`.
func LoadFor(paths []string, dev bool, env []string, requireServe bool) (*Config, []string, error) {
	tree, warnings, err := readConfigTree(paths, env)
	if err != nil {
		return nil, warnings, err
	}
	if err := checkExplicitZeros(tree); err != nil {
		return nil, warnings, err
	}
	cfg, err := decodeConfig(tree)
	if err != nil {
		return nil, warnings, err
	}
	cfg.withDefaults(dev)
	more, err := cfg.check(dev, requireServe)
	warnings = append(warnings, more...)
	if err != nil {
		return nil, warnings, err
	}
	return cfg, warnings, nil
}

// readConfigTree merges the files, applies the environment, converts the result to
// encoding/json types and validates it against the schema. It returns the validated tree and
// the warnings for keys Latch does not use.
func readConfigTree(paths []string, env []string) (map[string]any, []string, error) {
	tree := map[string]any{}
	for _, p := range paths {
		doc, err := readConfigFile(p)
		if err != nil {
			return nil, nil, err
		}
		tree = mergeTrees(tree, doc)
	}
	ks, err := keySchema()
	if err != nil {
		return nil, nil, err
	}
	if err := applyEnv(tree, ks, env); err != nil {
		return nil, nil, err
	}
	jtree, err := toJSONTree(tree)
	if err != nil {
		return nil, nil, err
	}
	obj, _ := jtree.(map[string]any)
	if obj == nil {
		obj = map[string]any{}
	}
	warnings := unusedKeys(obj, ks, "", nil)
	if err := schemas.ValidateConfig(obj); err != nil {
		return nil, warnings, err
	}
	return obj, warnings, nil
}

// readConfigFile reads one YAML (or JSON) file into a generic tree.
func readConfigFile(path string) (map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxConfigFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	if len(raw) > maxConfigFileSize {
		return nil, fmt.Errorf("config: %s is larger than %d bytes", path, maxConfigFileSize)
	}
	var doc any
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if doc == nil { // an empty file
		return map[string]any{}, nil
	}
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("config: %s: the top level must be a mapping of keys, not %T", path, doc)
	}
	return m, nil
}

// mergeTrees merges src into dst: mappings merge key by key, anything else (lists included)
// is replaced, as Kratos does when it combines several --config files.
func mergeTrees(dst, src map[string]any) map[string]any {
	for k, v := range src {
		sm, sok := v.(map[string]any)
		dm, dok := dst[k].(map[string]any)
		if sok && dok {
			dst[k] = mergeTrees(dm, sm)
			continue
		}
		dst[k] = v
	}
	return dst
}

// toJSONTree converts a YAML tree to the types encoding/json produces with UseNumber, which is
// what the schema validator and the decoder expect. It rejects what JSON cannot hold (mapping
// keys that are not strings), naming the key.
func toJSONTree(v any) (any, error) {
	raw, err := json.Marshal(jsonable(v))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return out, nil
}

// jsonable rewrites mappings with non-string keys (YAML allows `1: x`) into string-keyed ones,
// and non-finite numbers into strings, so json.Marshal accepts them; the schema then reports the
// key as unknown or of the wrong type.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = jsonable(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[fmt.Sprint(k)] = jsonable(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = jsonable(e)
		}
		return out
	case float64:
		// YAML has .nan and .inf; JSON has neither. As strings they reach the schema, which
		// names the key whose type they do not fit.
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return strconv.FormatFloat(t, 'g', -1, 64)
		}
		return v
	default:
		return v
	}
}

// decodeConfig decodes a validated tree into Config with encoding/json semantics. The schema
// is strict, so unknown keys never reach this point.
func decodeConfig(tree map[string]any) (*Config, error) {
	raw, err := json.Marshal(tree)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, fmt.Errorf("config: %s: expected %s", te.Field, te.Type)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	return &cfg, nil
}

// unusedKeys walks the tree along the schema and returns a warning for every key the schema
// marks x-latch-unused (a Kratos key Latch accepts so that a Kratos file loads, but ignores).
func unusedKeys(tree any, n *keyNode, key string, out []string) []string {
	if n == nil {
		return out
	}
	switch t := tree.(type) {
	case map[string]any:
		for _, k := range sortedKeys(t) {
			child := n.props[k]
			if child == nil {
				continue // unknown keys are the schema's to report
			}
			ck := k
			if key != "" {
				ck = key + "." + k
			}
			if child.unused {
				out = append(out, "config key "+ck+" is not used by Latch")
				continue
			}
			out = unusedKeys(t[k], child, ck, out)
		}
	case []any:
		for i, e := range t {
			out = unusedKeys(e, n.items, key+"["+strconv.Itoa(i)+"]", out)
		}
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// envOverride is one environment variable resolved to a key path.
type envOverride struct {
	name  string // DSN, SECRETS_COOKIE_0
	path  []any  // string keys and int list indexes
	node  *keyNode
	value string
}

// applyEnv applies environment overrides the way Kratos does: the variable's name is the key
// path upper-cased with "." replaced by "_" (SERVE_PUBLIC_PORT, SESSION_LIFESPAN). Because key
// names contain underscores themselves, names are resolved against the keys the schema
// declares, not split blindly. Lists and objects take JSON (SECRETS_COOKIE='["a...","b..."]',
// SELFSERVICE_FLOWS_LOGIN_AFTER_PASSWORD_HOOKS='[{"hook":"revoke_active_sessions"}]'); a list
// item takes its index (SECRETS_COOKIE_0, SECRETS_COOKIE_1). Scalars are coerced to the type
// the schema gives the key. Variables that are empty, name no key, or name a key Latch ignores
// are skipped.
func applyEnv(tree map[string]any, ks *keyNode, env []string) error {
	var overrides []envOverride
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || value == "" || !isEnvName(name) {
			continue // empty counts as unset, as with compose's ${VAR:-} pass-through
		}
		path, node, ok := ks.resolveEnv(name)
		if !ok {
			continue
		}
		overrides = append(overrides, envOverride{name: name, path: path, node: node, value: value})
	}
	// A whole list before its items, items in index order: SECRETS_COOKIE, then _0, _1, ..., _10.
	slices.SortFunc(overrides, func(a, b envOverride) int { return comparePaths(a.path, b.path) })
	for _, o := range overrides {
		key := dottedKey(o.path)
		v, err := o.node.coerce(o.value)
		if err != nil {
			return &schemas.ConfigError{Problems: []schemas.ConfigProblem{{
				Key: key, Message: fmt.Sprintf("environment variable %s: %v", o.name, err)}}}
		}
		if err := setPath(tree, o.path, v); err != nil {
			return &schemas.ConfigError{Problems: []schemas.ConfigProblem{{
				Key: key, Message: fmt.Sprintf("environment variable %s: %v", o.name, err)}}}
		}
	}
	return nil
}

func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// comparePaths orders key paths segment by segment, indexes numerically, a prefix first.
func comparePaths(a, b []any) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ai, aInt := a[i].(int)
		bi, bInt := b[i].(int)
		switch {
		case aInt && bInt:
			if ai != bi {
				return ai - bi
			}
		case aInt != bInt:
			if aInt {
				return -1
			}
			return 1
		default:
			if c := strings.Compare(a[i].(string), b[i].(string)); c != 0 {
				return c
			}
		}
	}
	return len(a) - len(b)
}

// dottedKey prints a path as "secrets.cookie[0]".
func dottedKey(path []any) string {
	var b strings.Builder
	for _, p := range path {
		switch t := p.(type) {
		case int:
			b.WriteString("[" + strconv.Itoa(t) + "]")
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(t)
		}
	}
	return b.String()
}

// setPath sets the value at path, creating mappings and lists on the way. A list index may
// replace an item or append one; it may not leave a gap.
func setPath(tree map[string]any, path []any, v any) error {
	var cur any = tree
	set := func(val any) {} // replaces cur in its parent
	for i, p := range path {
		last := i == len(path)-1
		switch key := p.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				m = map[string]any{}
				set(m)
			}
			if last {
				m[key] = v
				return nil
			}
			cur = m[key]
			set = func(val any) { m[key] = val }
		case int:
			l, ok := cur.([]any)
			if !ok {
				l = nil
			}
			if key > len(l) {
				return fmt.Errorf("index %d leaves a gap (the list has %d items; set them in order from 0)", key, len(l))
			}
			if key == len(l) {
				l = append(l, nil)
			}
			set(l)
			if last {
				l[key] = v
				return nil
			}
			cur = l[key]
			set = func(val any) { l[key] = val }
		}
	}
	return nil
}

// zeroMeansDefault lists the keys whose zero value withDefaults replaces by the default. Written
// out as zero ("0s", "0MB") they would silently become the default, so they are refused.
var zeroMeansDefault = []string{
	"session.lifespan",
	"session.earliest_possible_extend",
	"selfservice.flows.registration.lifespan",
	"selfservice.flows.login.lifespan",
	"selfservice.flows.settings.lifespan",
	"selfservice.flows.settings.privileged_session_max_age",
	"hashers.argon2.memory",
}

func checkExplicitZeros(tree map[string]any) error {
	var problems []schemas.ConfigProblem
	for _, key := range zeroMeansDefault {
		var v any = tree
		for _, k := range strings.Split(key, ".") {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		var zero bool
		switch t := v.(type) {
		case string:
			if strings.HasSuffix(key, ".memory") {
				n, err := ParseByteSize(t)
				zero = err == nil && n == 0
			} else {
				d, err := time.ParseDuration(t)
				zero = err == nil && d == 0
			}
		case json.Number:
			zero = t.String() == "0"
		}
		if zero {
			problems = append(problems, schemas.ConfigProblem{Key: key, Message: "must be more than zero (leave the key out for the default)"})
		}
	}
	if len(problems) > 0 {
		return &schemas.ConfigError{Problems: problems}
	}
	return nil
}
