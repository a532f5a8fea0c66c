package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/google/uuid"
)

// identityView shows an identity: its id, state, schema, the identifier a person would search
// for, and when it was made.
var identityView = view{
	header: []string{"ID", "STATE", "SCHEMA", "IDENTIFIER", "CREATED AT"},
	row: func(raw json.RawMessage) []string {
		var id struct {
			ID          string                     `json:"id"`
			State       string                     `json:"state"`
			SchemaID    string                     `json:"schema_id"`
			CreatedAt   string                     `json:"created_at"`
			Traits      json.RawMessage            `json:"traits"`
			Credentials map[string]json.RawMessage `json:"credentials"`
			Verifiable  []struct{ Value string }   `json:"verifiable_addresses"`
			Recovery    []struct{ Value string }   `json:"recovery_addresses"`
		}
		_ = json.Unmarshal(raw, &id)
		ident := ""
		if c, ok := id.Credentials["password"]; ok {
			var pw struct{ Identifiers []string }
			if json.Unmarshal(c, &pw) == nil && len(pw.Identifiers) > 0 {
				ident = strings.Join(pw.Identifiers, ", ")
			}
		}
		for _, addrs := range [][]struct{ Value string }{id.Verifiable, id.Recovery} {
			if ident == "" && len(addrs) > 0 {
				ident = addrs[0].Value
			}
		}
		if ident == "" {
			ident = traitIdentifier(id.Traits)
		}
		return []string{id.ID, id.State, id.SchemaID, ident, timeText(id.CreatedAt)}
	},
}

// traitIdentifier guesses, without the schema, the trait a person is known by: email,
// username or phone, else the first string trait, for tables and import messages.
func traitIdentifier(traits json.RawMessage) string {
	var m map[string]any
	if json.Unmarshal(traits, &m) != nil {
		return ""
	}
	for _, k := range []string{"email", "username", "phone", "phone_number", "name"} {
		if s, ok := m[k].(string); ok && s != "" {
			return s
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if s, ok := m[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

func identitiesList(ctx context.Context, c *command) error {
	pageSize := c.fs.Int("page-size", 250, "identities per request (1 to 1000)")
	limit := c.fs.Int("limit", 0, "stop after this many identities (0: all)")
	identifier := c.fs.String("identifier", "", "only the identity with this credentials identifier (e.g. an email address)")
	pos, err := c.parse()
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if err := checkPaging(*pageSize, *limit); err != nil {
		return err
	}
	if err := c.connect(); err != nil {
		return err
	}
	q := url.Values{}
	if *identifier != "" {
		q.Set("credentials_identifier", *identifier)
	}
	items, err := c.client.All(ctx, "/admin/identities", q, *pageSize, *limit)
	if err != nil {
		return err
	}
	return c.show(identityView, items, false)
}

// checkPaging checks --page-size and --limit.
func checkPaging(pageSize, limit int) error {
	if pageSize < 1 || pageSize > 1000 {
		return usagef("--page-size must be between 1 and 1000, not %d", pageSize)
	}
	if limit < 0 {
		return usagef("--limit must not be negative")
	}
	return nil
}

// parseIDs parses the action's flags, reads its ids (see ids) and connects: the start of every
// action that works on ids given by the user.
func (c *command) parseIDs(what string) ([]string, error) {
	pos, err := c.parse()
	if err != nil {
		return nil, err
	}
	ids, err := c.ids(pos, what)
	if err != nil {
		return nil, err
	}
	return ids, c.connect()
}

// ids reads the positional ids, or, with the single argument "-", whitespace-separated ids from
// standard input (`latch identities list -q | latch identities delete -`).
func (c *command) ids(pos []string, what string) ([]string, error) {
	if len(pos) == 1 && pos[0] == "-" {
		c.stdinHint(what + "s")
		b, err := readAllCapped(c.std.Stdin, maxStdinBytes)
		if err != nil {
			return nil, fmt.Errorf("read %ss from standard input: %w", what, err)
		}
		pos = strings.Fields(string(b))
		if len(pos) == 0 {
			return nil, fmt.Errorf("standard input holds no %s", what)
		}
		return pos, nil
	}
	if len(pos) == 0 {
		return nil, usagef("missing %s (or - to read them from standard input)", what)
	}
	return pos, nil
}

// checkUUID refuses an id that cannot name an identity, session or delivery before any request
// is sent, so the message says what is wrong with it rather than what the server guessed.
func checkUUID(id, what string) error {
	if _, err := uuid.Parse(id); err != nil {
		return fmt.Errorf("not a UUID (%s ids are UUIDs); nothing was sent", what)
	}
	return nil
}

// eachID runs one request per id, in order, printing each failure as it happens, with a
// progress bar when there are many (`identities delete -` with thousands of ids). It returns
// the answers of those that succeeded and whether any failed. what, when not "", is the kind
// of id, which must then be a UUID.
func (c *command) eachID(ctx context.Context, ids []string, what string, call func(id string) (json.RawMessage, error)) ([]json.RawMessage, bool) {
	var ok []json.RawMessage
	failed := false
	prog := c.newProgress(len(ids), c.name)
	defer prog.done()
	for _, id := range ids {
		err := ctx.Err()
		var raw json.RawMessage
		switch {
		case err != nil:
			err = errors.New("not attempted: interrupted")
		case what != "":
			err = checkUUID(id, what)
		case id == "" || id == "." || id == "..":
			// As a path segment it would name a different route, not a resource.
			err = errors.New("not an id; nothing was sent")
		}
		if err == nil {
			raw, err = call(id)
		}
		prog.step()
		switch {
		case errors.As(err, new(*keptFailure)):
			prog.println("latch: %s %s: %v", c.name, itemName(id), err)
			ok = append(ok, raw)
			failed = true
		case err != nil:
			prog.println("latch: %s %s: %v", c.name, itemName(id), err)
			failed = true
		default:
			ok = append(ok, raw)
		}
	}
	return ok, failed
}

// itemName is an id as messages show it: on one line, cut, and visible when empty.
func itemName(id string) string {
	if id == "" {
		return `""`
	}
	return oneLine(id, 80)
}

// keptFailure is what a call returns when the request worked but what it reports is a failure
// (a test send the endpoint refused): eachID prints why, and shows the answer as well.
type keptFailure struct{ msg string }

func (e *keptFailure) Error() string { return e.msg }

// finish turns "some items failed" into exit status 1 once the output is written.
func finish(printErr error, failed bool) error {
	if printErr != nil {
		return printErr
	}
	if failed {
		return errReported
	}
	return nil
}

func identitiesGet(ctx context.Context, c *command) error {
	ids, err := c.parseIDs("identity id")
	if err != nil {
		return err
	}
	items, failed := c.eachID(ctx, ids, "identity", func(id string) (json.RawMessage, error) {
		a, err := c.client.Do(ctx, http.MethodGet, pathf("/admin/identities/%s", id), nil, nil)
		if err != nil {
			return nil, err
		}
		return a.Body, nil
	})
	if len(items) == 0 && failed {
		return errReported
	}
	return finish(c.show(identityView, items, len(ids) == 1), failed)
}

func identitiesDelete(ctx context.Context, c *command) error {
	ids, err := c.parseIDs("identity id")
	if err != nil {
		return err
	}
	done, failed := c.eachID(ctx, ids, "identity", func(id string) (json.RawMessage, error) {
		if _, err := c.client.Do(ctx, http.MethodDelete, pathf("/admin/identities/%s", id), nil, nil); err != nil {
			return nil, err
		}
		raw, _ := json.Marshal(id)
		return raw, nil
	})
	return finish(c.showDone(done, "deleted"), failed)
}

// showDone prints what a command without an answer body did (deleted, revoked): the ids, as a
// table with the outcome, one a line with -q, or a JSON array of ids.
func (c *command) showDone(done []json.RawMessage, outcome string) error {
	ids := make([]string, len(done))
	for i, raw := range done {
		_ = json.Unmarshal(raw, &ids[i])
	}
	if len(ids) == 0 && !slices.Contains([]string{"json", "json-pretty"}, c.format) {
		return nil
	}
	switch {
	case c.quiet:
		for _, id := range ids {
			fmt.Fprintln(c.std.Stdout, id)
		}
		return nil
	case c.format == "table":
		rows := make([][]string, len(ids))
		for i, id := range ids {
			rows[i] = []string{id, outcome}
		}
		return c.table([]string{"ID", "RESULT"}, rows)
	default:
		return c.writeValue(ids)
	}
}
