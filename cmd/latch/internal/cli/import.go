package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// importItem is one identity to create: where it came from and its body, as written.
type importItem struct {
	index int    // across every source, in reading order
	where string // "users.json[3]"
	raw   json.RawMessage
}

// label names the item in messages: its place and, when it has one, the identifier a person
// would recognise (external_id, else an email, username or phone trait).
func (it importItem) label() string {
	var b struct {
		ExternalID string          `json:"external_id"`
		Traits     json.RawMessage `json:"traits"`
	}
	_ = json.Unmarshal(it.raw, &b)
	name := b.ExternalID
	if name == "" {
		name = traitIdentifier(b.Traits)
	}
	if name == "" {
		return it.where
	}
	return it.where + " (" + oneLine(name, 80) + ")"
}

type importResult struct {
	answer json.RawMessage
	err    error
}

var errStopped = errors.New("stopped")

// identitiesImport creates identities from Kratos' CreateIdentityBody objects. Every source is
// read twice: first to check it (JSON, objects, sizes) and count, so that a broken file imports
// nothing; then to send, at most --concurrency at a time. The body is sent as written: the
// server decides what it accepts, and says so per item.
func identitiesImport(ctx context.Context, c *command) error {
	concurrency := c.fs.Int("concurrency", 4, "identities created at once (1 to 64)")
	failedTo := c.fs.String("failed-to", "", "write the items the server refused to this `file`, a JSON array to import again once fixed")
	pos, err := c.parse()
	if err != nil {
		return err
	}
	if *concurrency < 1 || *concurrency > 64 {
		return usagef("--concurrency must be between 1 and 64, not %d", *concurrency)
	}
	srcs, err := c.sources(pos)
	if err != nil {
		return err
	}
	total := 0
	for _, s := range srcs {
		err := readSource(s, func(int, json.RawMessage) error { total++; return nil })
		if err != nil {
			return fmt.Errorf("%w; nothing was imported", err)
		}
	}
	if total == 0 {
		return errors.New("no identities to import: the input holds an empty array")
	}
	if err := c.connect(); err != nil {
		return err
	}

	prog := c.newProgress(total, "importing identities")
	created := make([]json.RawMessage, total)
	refused := make([]json.RawMessage, total)
	t := tally{total: total}
	sent := 0
	produceErr := bulk(ctx, *concurrency, itemProducer(srcs, total, &sent), func(ctx context.Context, it importItem) importResult {
		a, err := c.client.Do(ctx, http.MethodPost, "/admin/identities", nil, it.raw)
		if err != nil {
			return importResult{err: err}
		}
		return importResult{answer: a.Body}
	}, func(it importItem, r importResult) {
		prog.step()
		if r.err != nil {
			t.failed++
			refused[it.index] = it.raw
			prog.println("latch: %s %s: %v", c.name, it.label(), r.err)
			return
		}
		t.ok++
		created[it.index] = r.answer
	})
	prog.done()
	printErr := c.show(identityView, present(created), false)
	interrupted := ctx.Err() != nil && sent < total
	if produceErr == nil && !interrupted && sent < total {
		produceErr = errors.New("the input changed while it was imported (fewer items than when it was checked)")
	}
	if produceErr != nil {
		fmt.Fprintf(c.std.Stderr, "latch: %s: %v\n", c.name, produceErr)
	}
	if !c.quiet || t.failed > 0 || interrupted || produceErr != nil {
		fmt.Fprintln(c.std.Stderr, t.summary("imported", "identities", interrupted))
	}
	if *failedTo != "" && t.failed > 0 {
		c.writeRefused(*failedTo, present(refused))
	}
	return finish(printErr, t.failed > 0 || interrupted || produceErr != nil)
}

// writeRefused writes the items the server refused, as a JSON array in input order, for a
// fixed-up second run. They may hold passwords: a new file is readable by its owner only.
func (c *command) writeRefused(path string, items []json.RawMessage) {
	if err := os.WriteFile(path, joinArray(items), 0o600); err != nil {
		fmt.Fprintf(c.std.Stderr, "latch: %s: --failed-to: %v\n", c.name, err)
	} else if !c.quiet {
		fmt.Fprintf(c.std.Stderr, "the %d refused items are in %s\n", len(items), path)
	}
}

// itemProducer reads srcs again and sends their items in order, numbered across sources, until
// send refuses (Ctrl-C). *sent counts the items handed over. An input that grew since it was
// checked is an error: the progress and the summary were sized by the check.
func itemProducer(srcs []source, total int, sent *int) func(send func(importItem) bool) error {
	return func(send func(importItem) bool) error {
		for _, s := range srcs {
			err := readSource(s, func(i int, raw json.RawMessage) error {
				if *sent >= total {
					return fmt.Errorf("%s: changed while it was imported (more items than when it was checked)", s.name)
				}
				if !send(importItem{index: *sent, where: fmt.Sprintf("%s[%d]", s.name, i), raw: raw}) {
					return errStopped
				}
				*sent++
				return nil
			})
			if errors.Is(err, errStopped) {
				return nil
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// present drops the nil entries: what failed or was never sent.
func present(items []json.RawMessage) []json.RawMessage {
	var out []json.RawMessage
	for _, raw := range items {
		if raw != nil {
			out = append(out, raw)
		}
	}
	return out
}

// readSource opens s and scans its items.
func readSource(s source, fn func(int, json.RawMessage) error) error {
	rc, err := s.open()
	if err != nil {
		return err // *os.PathError names the file: "open users.json: no such file or directory"
	}
	defer rc.Close()
	return scanItems(s.name, rc, fn)
}
