package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestScanItems(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		want     []string // the items, compacted
		err      string
	}{
		{"object", `{"a":1}`, []string{`{"a":1}`}, ""},
		{"array", " [ {\"a\":1} ,\n{\"b\":2} ] \n", []string{`{"a":1}`, `{"b":2}`}, ""},
		{"lines", "{\"a\":1}\n{\"b\":2}\n\n", []string{`{"a":1}`, `{"b":2}`}, ""},
		{"concatenated", `{"a":1}{"b":2}`, []string{`{"a":1}`, `{"b":2}`}, ""},
		{"empty array", `[]`, nil, ""},
		{"numbers kept", `{"n": 12345678901234567890}`, []string{`{"n": 12345678901234567890}`}, ""},
		{"empty", "", nil, "in: empty: no JSON object in it"},
		{"spaces", " \t\r\n", nil, "in: empty: no JSON object in it"},
		{"null", `null`, nil, "in[0]: not a JSON object"},
		{"array of numbers", `[1]`, nil, "in[0]: not a JSON object"},
		{"object then junk", `{"a":1} x`, nil, "in[1]: invalid JSON near byte 9: invalid character 'x' looking for beginning of value"},
		{"unclosed array", `[{"a":1}`, nil, "in: invalid JSON: it ends in the middle of a value"},
		{"unclosed object", `{"a":`, nil, "in: invalid JSON: it ends in the middle of a value"},
		{"after array", `[{"a":1}] [`, nil, "in: invalid JSON near byte 11: more after the closing ]"},
		{"nul", "{\"a\":\x00}", nil, "in[0]: invalid JSON near byte 6"},
		{"trailing comma", `[{"a":1},]`, nil, "in[1]: invalid JSON near byte 8: invalid character ']' looking for beginning of value"},
		{"missing comma", `[{"a":1} {"b":2}]`, nil, "in[1]: invalid JSON"},
		{"unopened", `{"a":1}]`, nil, "in[1]: invalid JSON"},
	}
	for _, c := range cases {
		var got []string
		err := scanItems("in", strings.NewReader(c.in), func(i int, raw json.RawMessage) error {
			if i != len(got) {
				t.Errorf("%s: index %d, want %d", c.name, i, len(got))
			}
			got = append(got, string(raw))
			return nil
		})
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err != "" && (err == nil || !strings.HasPrefix(err.Error(), c.err)):
			t.Errorf("%s: error %v, want %q", c.name, err, c.err)
		case c.err == "" && !slices.Equal(got, c.want):
			t.Errorf("%s: items %q, want %q", c.name, got, c.want)
		}
	}
}

// endless is an endless JSON string: `{"a": "xxxx...`.
type endless struct{ started bool }

func (e *endless) Read(p []byte) (int, error) {
	if !e.started {
		e.started = true
		return copy(p, `{"a": "`), nil
	}
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// TestScanItemsBoundsMemory: an endless value is refused after a few MiB, not read to the end.
func TestScanItemsBoundsMemory(t *testing.T) {
	t.Parallel()
	lr := &countingReader{r: &endless{}}
	err := scanItems("in", lr, func(int, json.RawMessage) error { return nil })
	if err == nil || err.Error() != "in[0]: larger than 1 MiB, the admin API's limit for one request" {
		t.Fatalf("got %v", err)
	}
	if lr.n > 4*maxItemBytes {
		t.Errorf("read %d bytes of an endless value before refusing it", lr.n)
	}
	// Many items that are each small pass, however large the whole.
	var b strings.Builder
	b.WriteString("[")
	item := `{"traits": {"email": "` + strings.Repeat("z", 100<<10) + `"}}`
	for i := range 100 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(item)
	}
	b.WriteString("]")
	n := 0
	if err := scanItems("in", strings.NewReader(b.String()), func(int, json.RawMessage) error { n++; return nil }); err != nil || n != 100 {
		t.Errorf("100 items of 100 KiB: %d, %v", n, err)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestScanItemsStops(t *testing.T) {
	t.Parallel()
	stop := errors.New("stop")
	n := 0
	err := scanItems("in", strings.NewReader(`[{},{},{}]`), func(int, json.RawMessage) error {
		if n++; n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Errorf("got %v after %d items", err, n)
	}
}

func TestParseInterleaved(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args   []string
		pos    []string
		format string
		quiet  bool
	}{
		{[]string{"a", "--format", "json", "b"}, []string{"a", "b"}, "json", false},
		{[]string{"--format=json-pretty", "a", "-q"}, []string{"a"}, "json-pretty", true},
		{[]string{"a", "--", "-q", "--format"}, []string{"a", "-q", "--format"}, "table", false},
		{[]string{"-", "-q"}, []string{"-"}, "table", true},
		{nil, nil, "table", false},
	}
	for _, c := range cases {
		cmd := &command{runner: &runner{}, fs: flag.NewFlagSet("x", flag.ContinueOnError), args: c.args}
		cmd.fs.SetOutput(io.Discard)
		cmd.commonFlags()
		pos, err := cmd.parse()
		if err != nil || !slices.Equal(pos, c.pos) || cmd.format != c.format || cmd.quiet != c.quiet {
			t.Errorf("%q: pos %q format %q quiet %v err %v", c.args, pos, cmd.format, cmd.quiet, err)
		}
	}
}

func TestNextPageToken(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		`</admin/identities?page_size=2&page_token=abc>; rel="first",</admin/identities?page_size=2&page_token=def>; rel="next"`: "def",
		`</admin/identities?page_size=2>; rel="first"`:                    "",
		`<https://proxy/x/admin/identities?page_token=a%2Bb>; rel="next"`: "a+b",
		`</admin/identities?page_token=t>;rel="next"`:                     "t",
		`garbage`: "",
		`</admin/identities?page_token=t>; rel="prev"`:                        "",
		`</admin/identities?page_size=2&page_token=x>; rel=next`:              "",
		`</admin/identities?page_size=2&page_token=z>; title="a"; rel="next"`: "z",
	}
	for link, want := range cases {
		h := http.Header{"Link": {link}}
		if got := nextPageToken(h); got != want {
			t.Errorf("%s: got %q, want %q", link, got, want)
		}
	}
}

func TestOneLine(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"plain":                    "plain",
		"  two\n\nlines\t\tand ":   "two lines and",
		"\x1b[31mred\x1b[0m":       "[31mred [0m",
		"bell\x07 osc\x1b]0;t\x07": "bell osc ]0;t",
		"c1\u009b31m":              "c1 31m",
		"bad\xffutf8":              "bad?utf8",
		strings.Repeat("é", 100):   strings.Repeat("é", 10) + "…",
	}
	for in, want := range cases {
		if got := oneLine(in, 20); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTimeFlag(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]string{
		"":                          "",
		"24h":                       "2026-12-04T10:00:00Z",
		"90m":                       "2026-12-05T08:30:00Z",
		"2026-01-02T15:04:05+02:00": "2026-01-02T13:04:05Z",
	} {
		if got, err := timeFlag("since", in, now); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"yesterday", "-5h", "2026-01-02"} {
		if _, err := timeFlag("since", in, now); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	cases := []struct {
		t           tally
		interrupted bool
		want        string
	}{
		{tally{total: 3, ok: 3}, false, "imported 3 of 3 identities"},
		{tally{total: 5, ok: 3, failed: 2}, false, "imported 3 of 5 identities (2 failed)"},
		{tally{total: 9, ok: 3, failed: 2}, true, "interrupted: imported 3 of 9 identities (2 failed, 4 not attempted)"},
		{tally{total: 9, ok: 3}, true, "interrupted: imported 3 of 9 identities (6 not attempted)"},
	}
	for _, c := range cases {
		if got := c.t.summary("imported", "identities", c.interrupted); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}

func TestTraitIdentifier(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"email": "a@x", "username": "u"}`: "a@x",
		`{"username": "u"}`:                 "u",
		`{"zeta": "z", "alpha": "a"}`:       "a",
		`{"name": {"first": "A"}}`:          "",
		`[]`:                                "",
		``:                                  "",
	} {
		if got := traitIdentifier(json.RawMessage(in)); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}

// TestBulk: every item sent is worked on and handed back once; after cancellation nothing more
// starts, the items in flight finish with a context that is not cancelled, and no goroutine
// outlives the call. Not parallel, so that goleak sees only this test's goroutines.
func TestBulk(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var done []int
	var sawCancelled atomic.Bool
	err := bulk(ctx, 3, func(send func(int) bool) error {
		for i := range 100 {
			if !send(i) {
				return nil
			}
		}
		return errors.New("not stopped")
	}, func(ctx context.Context, i int) int {
		if i == 10 {
			cancel()
		}
		if ctx.Err() != nil {
			sawCancelled.Store(true)
		}
		return i * 2
	}, func(i, r int) {
		if r != i*2 {
			t.Errorf("result %d for item %d", r, i)
		}
		done = append(done, i)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(done) < 11 || len(done) > 10+3+1 {
		t.Errorf("%d items done after cancelling at the 11th with 3 workers", len(done))
	}
	if sawCancelled.Load() {
		t.Error("work saw a cancelled context")
	}
	slices.Sort(done)
	if done[0] != 0 || !slices.Equal(done, slices.Compact(slices.Clone(done))) {
		t.Errorf("items done: %v", done)
	}
}

// TestImportsNothingOfLatch keeps the CLI a client of the admin API: it reaches Latch over HTTP
// only, never through its packages (docs/ARCHITECTURE.md).
func TestImportsNothingOfLatch(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		parsed, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			if path := strings.Trim(imp.Path.Value, `"`); strings.HasPrefix(path, "github.com/latchhq/latch") {
				t.Errorf("%s imports %s", f, path)
			}
		}
	}
}
