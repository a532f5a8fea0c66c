package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// view is how one kind of resource shows as a table: a header and a row per item. The first
// column is the item's id: -q prints only that.
type view struct {
	header []string
	row    func(json.RawMessage) []string
}

// show prints items in the command's format. JSON is the API's own, item for item: one object
// when the command was about exactly one thing (single), an array otherwise.
func (c *command) show(v view, items []json.RawMessage, single bool) error {
	if single && len(items) == 0 {
		return nil // the one thing failed, and said so on stderr
	}
	switch {
	case c.quiet:
		var b strings.Builder
		for _, it := range items {
			b.WriteString(v.row(it)[0])
			b.WriteByte('\n')
		}
		_, err := io.WriteString(c.std.Stdout, b.String())
		return err
	case c.format == "table":
		rows := make([][]string, len(items))
		for i, it := range items {
			rows[i] = v.row(it)
		}
		return c.table(v.header, rows)
	case single && len(items) == 1:
		return c.writeJSON(items[0])
	default:
		return c.writeJSON(joinArray(items))
	}
}

// joinArray makes one JSON array of raw items without decoding them.
func joinArray(items []json.RawMessage) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(bytes.TrimSpace(it))
	}
	b.WriteByte(']')
	return b.Bytes()
}

// writeJSON prints raw JSON compact (json) or indented (json-pretty), with a final newline.
func (c *command) writeJSON(raw []byte) error {
	var b bytes.Buffer
	var err error
	if c.format == "json-pretty" {
		err = json.Indent(&b, raw, "", "  ")
	} else {
		err = json.Compact(&b, raw)
	}
	if err != nil {
		return fmt.Errorf("the admin API answered invalid JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err = c.std.Stdout.Write(b.Bytes())
	return err
}

// writeValue prints a value the CLI made itself (ids of deleted identities) as JSON.
func (c *command) writeValue(v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.writeJSON(raw)
}

// table prints an aligned table. Every cell is made safe for a terminal first: values come
// from the server and, before that, from users (traits), and must not carry escape sequences,
// tabs or newlines that would break the layout or the operator's terminal.
func (c *command) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(c.std.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, cell := range r {
			cells[i] = cellText(cell)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// cellText is a cell's text on one line: "-" for nothing, long values cut.
func cellText(s string) string {
	s = oneLine(s, 120)
	if s == "" {
		return "-"
	}
	return s
}

// fields prints "Name:  value" lines, aligned, for one resource shown in detail.
func (c *command) fields(pairs [][2]string) error {
	tw := tabwriter.NewWriter(c.std.Stdout, 0, 8, 2, ' ', 0)
	for _, p := range pairs {
		fmt.Fprintf(tw, "%s:\t%s\n", p[0], cellText(p[1]))
	}
	return tw.Flush()
}

// --- helpers to read loosely typed answers for tables -----------------------------------

// timeText shows an RFC 3339 time in UTC to the second; "" stays "".
func timeText(s string) string {
	if s == "" {
		return ""
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format(time.RFC3339)
}

func optTime(t *string) string {
	if t == nil {
		return ""
	}
	return timeText(*t)
}

func optInt(n *int) string {
	if n == nil {
		return ""
	}
	return strconv.Itoa(*n)
}

func optString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// idOf reads the "id" of an answer, for -q and messages.
func idOf(raw json.RawMessage) string {
	var v struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &v)
	return v.ID
}
