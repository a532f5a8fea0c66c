package schemas

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// Kratos UI message ids for validation errors. They are Kratos' own numbers
// (ory/kratos text/id.go), because clients written against Kratos switch on
// them to pick a translation; renumbering one breaks those clients silently.
const (
	MessageIDValidationGeneric          int64 = 4000001 // any keyword without a dedicated id; text is the validator's reason
	MessageIDValidationRequired         int64 = 4000002 // "Property {name} is missing."
	MessageIDValidationMinLength        int64 = 4000003
	MessageIDValidationInvalidFormat    int64 = 4000004 // pattern mismatch
	MessageIDValidationMaxLength        int64 = 4000017
	MessageIDValidationMinimum          int64 = 4000018
	MessageIDValidationExclusiveMinimum int64 = 4000019
	MessageIDValidationMaximum          int64 = 4000020
	MessageIDValidationExclusiveMaximum int64 = 4000021
	MessageIDValidationMultipleOf       int64 = 4000022
	MessageIDValidationMaxItems         int64 = 4000023
	MessageIDValidationMinItems         int64 = 4000024
	MessageIDValidationUniqueItems      int64 = 4000025
	MessageIDValidationWrongType        int64 = 4000026
	MessageIDValidationConst            int64 = 4000029
	MessageIDValidationConstGeneric     int64 = 4000030 // const with an object or array value
	MessageIDValidationEmail            int64 = 4000040 // format "email"
	MessageIDValidationPhone            int64 = 4000041 // format "tel"
)

// Message types, as Kratos spells them in ui messages.
const (
	MessageTypeError   = "error"
	MessageTypeInfo    = "info"
	MessageTypeSuccess = "success"
)

// Message is a Kratos UI text. Clients translate by ID and fill placeholders
// from Context, so the ID, the English Text and the Context keys must be
// exactly what Kratos sends for the same condition.
type Message struct {
	ID      int64          `json:"id"`
	Text    string         `json:"text"`
	Type    string         `json:"type"`
	Context map[string]any `json:"context,omitempty"`
}

// FieldMessage binds a Message to the part of the submitted document it is
// about, so the transport can attach it to the right form node (or to the
// whole form) the way Kratos does.
type FieldMessage struct {
	// Pointer is a JSON pointer in fragment form: "#/traits/email", or "#/"
	// for the whole document.
	Pointer string
	Message Message
}

// Node returns the UI node name the message belongs to, in Kratos' dotted
// notation ("#/traits/email" -> "traits.email"), or "" when the message is
// about the whole document and belongs in the flow's top-level messages.
func (p FieldMessage) Node() string {
	path, ok := strings.CutPrefix(p.Pointer, "#")
	if !ok {
		path = p.Pointer
	}
	path = strings.TrimPrefix(path, "/")
	if path == "" {
		return ""
	}
	segments := strings.Split(path, "/")
	for i, s := range segments {
		segments[i] = unescapePointerToken(s)
	}
	return strings.Join(segments, ".")
}

// ValidationError reports why a submitted document was rejected. It carries
// every message at once, so one round trip shows the user all problems, and
// it stays a domain error: only the HTTP layer turns it into a 400 flow.
type ValidationError struct {
	Messages []FieldMessage
}

// Error lists the messages with their pointers, for logs and tests.
func (e *ValidationError) Error() string {
	if len(e.Messages) == 0 {
		return "validation failed"
	}
	parts := make([]string, len(e.Messages))
	for i, m := range e.Messages {
		parts[i] = fmt.Sprintf("%s: %s (%d)", m.Pointer, m.Message.Text, m.Message.ID)
	}
	return "validation failed: " + strings.Join(parts, "; ")
}

// escapePointerToken escapes one JSON pointer token the way the validator
// writes instance locations (RFC 6901, then URL path escaping), so pointers
// we build ourselves compare equal to the validator's.
func escapePointerToken(token string) string {
	token = strings.ReplaceAll(token, "~", "~0")
	token = strings.ReplaceAll(token, "/", "~1")
	return url.PathEscape(token)
}

func unescapePointerToken(token string) string {
	if u, err := url.PathUnescape(token); err == nil {
		token = u
	}
	token = strings.ReplaceAll(token, "~1", "/")
	return strings.ReplaceAll(token, "~0", "~")
}

// fragmentPointer turns a validator instance location ("/traits/email", or
// "" for the root) into the "#/..." form Kratos uses.
func fragmentPointer(location string) string {
	if location == "" {
		return "#/"
	}
	return "#" + location
}

func errorMessage(id int64, text string, context map[string]any) Message {
	return Message{ID: id, Text: text, Type: MessageTypeError, Context: context}
}

// The constructors below reproduce ory/kratos text/message_validation.go.

func msgGeneric(reason string) Message {
	return errorMessage(MessageIDValidationGeneric, reason, map[string]any{"reason": reason})
}

func msgRequired(property string) Message {
	return errorMessage(MessageIDValidationRequired, fmt.Sprintf("Property %s is missing.", property),
		map[string]any{"property": property})
}

func msgWrongType(allowed []string, actual string) Message {
	return errorMessage(MessageIDValidationWrongType,
		fmt.Sprintf("expected %s, but got %s", strings.Join(allowed, " or "), actual),
		map[string]any{"allowed_types": allowed, "actual_type": actual})
}

func msgEmail(value string) Message {
	return errorMessage(MessageIDValidationEmail, fmt.Sprintf("%s is not a valid email address", value),
		map[string]any{"value": value})
}

func msgPhone(value string) Message {
	return errorMessage(MessageIDValidationPhone, fmt.Sprintf("%s is not a valid phone number", value),
		map[string]any{"value": value})
}

// translateLeaf maps one leaf validator error onto Kratos messages, the way
// Kratos' ui/container translateValidationError does. The validator's
// numbers are recovered from its message, as Kratos does; where the
// validator words a message differently from Kratos' fork, the format
// strings below follow santhosh-tekuri/jsonschema v5.3.1.
func translateLeaf(leaf *jsonschema.ValidationError, doc any) []FieldMessage {
	pointer := fragmentPointer(leaf.InstanceLocation)
	one := func(m Message) []FieldMessage { return []FieldMessage{{Pointer: pointer, Message: m}} }
	msg := leaf.Message
	keyword := leaf.KeywordLocation[strings.LastIndexByte(leaf.KeywordLocation, '/')+1:]

	switch keyword {
	case "required":
		names, ok := parseQuotedList(strings.TrimPrefix(msg, "missing properties: "))
		if !ok {
			return one(msgGeneric(msg))
		}
		out := make([]FieldMessage, 0, len(names))
		for _, name := range names {
			out = append(out, FieldMessage{
				Pointer: strings.TrimSuffix(pointer, "/") + "/" + escapePointerToken(name),
				Message: msgRequired(name),
			})
		}
		return out
	case "minLength", "maxLength":
		want, got := -1, -1
		if keyword == "minLength" {
			_, _ = fmt.Sscanf(msg, "length must be >= %d, but got %d", &want, &got)
			return one(errorMessage(MessageIDValidationMinLength,
				fmt.Sprintf("length must be >= %d, but got %d", want, got),
				map[string]any{"min_length": want, "actual_length": got}))
		}
		_, _ = fmt.Sscanf(msg, "length must be <= %d, but got %d", &want, &got)
		return one(errorMessage(MessageIDValidationMaxLength,
			fmt.Sprintf("length must be <= %d, but got %d", want, got),
			map[string]any{"max_length": want, "actual_length": got}))
	case "pattern":
		pattern, ok := unquoteSingle(strings.TrimPrefix(msg, "does not match pattern "))
		if !ok {
			return one(msgGeneric(msg))
		}
		return one(errorMessage(MessageIDValidationInvalidFormat,
			fmt.Sprintf("does not match pattern %q", pattern), map[string]any{"pattern": pattern}))
	case "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum":
		return one(translateBound(keyword, msg))
	case "multipleOf":
		base, actual := -1.0, -1.0
		_, _ = fmt.Sscanf(msg, "%v not multipleOf %v", &actual, &base)
		return one(errorMessage(MessageIDValidationMultipleOf, fmt.Sprintf("%v not multipleOf %v", actual, base),
			map[string]any{"base": base, "actual": actual}))
	case "maxItems":
		limit, actual := -1, -1
		_, _ = fmt.Sscanf(msg, "maximum %d items required, but found %d items", &limit, &actual)
		return one(errorMessage(MessageIDValidationMaxItems,
			fmt.Sprintf("maximum %d items allowed, but found %d items", limit, actual),
			map[string]any{"max_items": limit, "actual_items": actual}))
	case "minItems":
		limit, actual := -1, -1
		_, _ = fmt.Sscanf(msg, "minimum %d items required, but found %d items", &limit, &actual)
		return one(errorMessage(MessageIDValidationMinItems,
			fmt.Sprintf("minimum %d items allowed, but found %d items", limit, actual),
			map[string]any{"min_items": limit, "actual_items": actual}))
	case "uniqueItems":
		a, b := -1, -1
		_, _ = fmt.Sscanf(msg, "items at index %d and %d are equal", &a, &b)
		return one(errorMessage(MessageIDValidationUniqueItems, fmt.Sprintf("items at index %d and %d are equal", a, b),
			map[string]any{"index_a": a, "index_b": b}))
	case "type":
		allowed, actual, _ := strings.Cut(strings.TrimPrefix(msg, "expected "), ", but got ")
		return one(msgWrongType(strings.Split(allowed, " or "), actual))
	case "const":
		if msg == "const failed" {
			return one(errorMessage(MessageIDValidationConstGeneric, "const failed", nil))
		}
		expected := strings.TrimPrefix(msg, "value must be ")
		return one(errorMessage(MessageIDValidationConst, fmt.Sprintf("must be equal to constant %v", expected),
			map[string]any{"expected": expected}))
	case "format":
		return one(translateFormat(msg, instanceAt(doc, leaf.InstanceLocation)))
	default:
		return one(msgGeneric(msg))
	}
}

func translateBound(keyword, msg string) Message {
	limit, actual := -1.0, -1.0
	var id int64
	var op, key string
	switch keyword {
	case "minimum":
		id, op, key = MessageIDValidationMinimum, ">=", "minimum"
	case "exclusiveMinimum":
		id, op, key = MessageIDValidationExclusiveMinimum, ">", "minimum"
	case "maximum":
		id, op, key = MessageIDValidationMaximum, "<=", "maximum"
	default:
		id, op, key = MessageIDValidationExclusiveMaximum, "<", "maximum"
	}
	_, _ = fmt.Sscanf(msg, "must be "+op+" %v but found %v", &limit, &actual)
	return errorMessage(id, fmt.Sprintf("must be %s %v but found %v", op, limit, actual),
		map[string]any{key: limit, "actual": actual})
}

// translateFormat gives email and phone numbers their dedicated Kratos ids;
// every other format keeps the validator's reason under the generic id, as
// in Kratos.
func translateFormat(msg string, value any) Message {
	format := ""
	if i := strings.LastIndex(msg, " is not valid "); i >= 0 {
		format, _ = unquoteSingle(msg[i+len(" is not valid "):])
	}
	s, ok := value.(string)
	if !ok {
		s = fmt.Sprint(value)
	}
	switch format {
	case "email":
		return msgEmail(s)
	case "tel":
		return msgPhone(s)
	default:
		return msgGeneric(msg)
	}
}

// instanceAt returns the value at a validator instance location, or nil.
func instanceAt(doc any, location string) any {
	if location == "" {
		return doc
	}
	cur := doc
	for _, token := range strings.Split(strings.TrimPrefix(location, "/"), "/") {
		token = unescapePointerToken(token)
		switch v := cur.(type) {
		case map[string]any:
			cur = v[token]
		case []any:
			i, err := strconv.Atoi(token)
			if err != nil || i < 0 || i >= len(v) {
				return nil
			}
			cur = v[i]
		default:
			return nil
		}
	}
	return cur
}

// unquoteSingle reverses the validator's quote(): a Go-quoted string whose
// outer double quotes became single quotes, with ' escaped and " not.
func unquoteSingle(s string) (string, bool) {
	value, rest, ok := scanSingleQuoted(s)
	return value, ok && rest == ""
}

// parseQuotedList reads "'a', 'b'" as written in "missing properties: ...".
func parseQuotedList(s string) ([]string, bool) {
	var out []string
	for {
		value, rest, ok := scanSingleQuoted(s)
		if !ok {
			return nil, false
		}
		out = append(out, value)
		if rest == "" {
			return out, true
		}
		if s, ok = strings.CutPrefix(rest, ", "); !ok {
			return nil, false
		}
	}
}

func scanSingleQuoted(s string) (value, rest string, ok bool) {
	if !strings.HasPrefix(s, "'") {
		return "", "", false
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 >= len(s) {
				return "", "", false
			}
			i++
			if s[i] == '\'' {
				b.WriteByte('\'')
			} else {
				b.WriteByte('\\')
				b.WriteByte(s[i])
			}
		case '"':
			b.WriteString(`\"`)
		case '\'':
			b.WriteByte('"')
			v, err := strconv.Unquote(b.String())
			if err != nil {
				return "", "", false
			}
			return v, s[i+1:], true
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

// leaves appends every leaf of the validator's error tree, depth first, in
// the validator's order. Kratos reports leaves only: the wrappers ("doesn't
// validate with ...", "allOf failed") carry no information a user can act on.
func leaves(e *jsonschema.ValidationError, out []*jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return append(out, e)
	}
	for _, c := range e.Causes {
		out = leaves(c, out)
	}
	return out
}

// toValidationError converts a validator error into a *ValidationError with
// every leaf translated, ordered by the schema's property order (then by
// pointer), and exact duplicates (from anyOf/oneOf branches) removed. The
// validator walks properties in map order, so without sorting the same
// input would produce messages in a different order on every call.
func (s *IdentitySchema) toValidationError(err error, doc any) error {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("validate traits against identity schema %q: %w", s.ID, err)
	}
	var msgs []FieldMessage
	for _, leaf := range leaves(ve, nil) {
		msgs = append(msgs, translateLeaf(leaf, doc)...)
	}
	slices.SortStableFunc(msgs, func(a, b FieldMessage) int { return s.comparePointers(a.Pointer, b.Pointer) })
	msgs = slices.CompactFunc(msgs, func(a, b FieldMessage) bool {
		return a.Pointer == b.Pointer && a.Message.ID == b.Message.ID && a.Message.Text == b.Message.Text
	})
	return &ValidationError{Messages: msgs}
}

// comparePointers orders pointers by where their field appears in the
// schema document, so messages come out in form order.
func (s *IdentitySchema) comparePointers(a, b string) int {
	if c := s.rank(a) - s.rank(b); c != 0 {
		return c
	}
	as := strings.Split(strings.TrimPrefix(a, "#/"), "/")
	bs := strings.Split(strings.TrimPrefix(b, "#/"), "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] == bs[i] {
			continue
		}
		ai, aerr := strconv.Atoi(as[i])
		bi, berr := strconv.Atoi(bs[i])
		if aerr == nil && berr == nil {
			return ai - bi
		}
		return strings.Compare(as[i], bs[i])
	}
	return len(as) - len(bs)
}

// rank is the schema position of the deepest known field containing pointer:
// -1 for the whole document, len(order) for anything outside the traits.
func (s *IdentitySchema) rank(pointer string) int {
	if pointer == "#/" || pointer == "" {
		return -1
	}
	for p := pointer; p != "#"; p = p[:strings.LastIndexByte(p, '/')] {
		if r, ok := s.order[p]; ok {
			return r
		}
		if !strings.Contains(p, "/") {
			break
		}
	}
	return len(s.order)
}
