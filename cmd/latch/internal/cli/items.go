package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// Limits of what the CLI reads. An item is one request body, and the admin API refuses bodies
// over 1 MiB: the CLI says so before sending anything.
const (
	maxItemBytes  = 1 << 20
	maxStdinBytes = 256 << 20
	// itemSlack is how far the JSON decoder may read ahead of the item it decodes.
	itemSlack = 64 << 10
)

var errStdinTooLarge = fmt.Errorf("more than %d MiB; write it to a file and pass the file's name", maxStdinBytes>>20)

// readAllCapped reads r to the end, refusing more than max bytes.
func readAllCapped(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, errStdinTooLarge
	}
	return b, nil
}

// source is one input of a bulk command: a file, or standard input read once into memory (so
// that it can be read twice, like a file: once to check it, once to send it).
type source struct {
	name string // "users.json", "stdin"
	open func() (io.ReadCloser, error)
}

// sources returns the named files, or standard input when there are none or the name is "-".
func (c *command) sources(names []string) ([]source, error) {
	if len(names) == 0 {
		names = []string{"-"}
	}
	var stdin []byte
	var out []source
	for _, name := range names {
		if name != "-" {
			path := name
			out = append(out, source{name: name, open: func() (io.ReadCloser, error) { return os.Open(path) }})
			continue
		}
		if stdin == nil {
			c.stdinHint("JSON")
			b, err := readAllCapped(c.std.Stdin, maxStdinBytes)
			if err != nil {
				return nil, fmt.Errorf("stdin: %w", err)
			}
			stdin = b
		}
		data := stdin
		out = append(out, source{name: "stdin", open: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}})
	}
	return out, nil
}

// stdinHint tells a person who typed the command without input that it waits for some.
func (c *command) stdinHint(what string) {
	if f, ok := c.std.Stdin.(*os.File); ok && isTerminal(f) {
		fmt.Fprintf(c.std.Stderr, "latch: %s: reading %s from standard input; end it with Ctrl-D\n", c.name, what)
	}
}

// itemError is a problem with one item or with a source's JSON; it names where.
type itemError struct {
	where string
	msg   string
}

func (e *itemError) Error() string { return e.where + ": " + e.msg }

// scanItems reads the JSON items of r: one object, an array of objects, or objects one after
// the other (JSON Lines, `jq -c '.[]'`). It calls fn with each item's index and bytes, and
// stops at the first problem: invalid JSON (with its byte offset), an item that is not an
// object, an item over maxItemBytes. Memory stays bounded by the largest item, whatever the
// size of the input.
func scanItems(name string, r io.Reader, fn func(index int, raw json.RawMessage) error) error {
	lim := &itemLimiter{r: r, max: 2*maxItemBytes + itemSlack}
	br := bufio.NewReader(lim)
	first, err := firstByte(br)
	if err == io.EOF {
		return &itemError{name, "empty: no JSON object in it"}
	}
	if err != nil {
		return &itemError{name, err.Error()}
	}
	lim.arm(lim.read - int64(br.Buffered()))
	dec := json.NewDecoder(br)
	dec.UseNumber()
	array := first == '['
	if array {
		if _, err := dec.Token(); err != nil {
			return &itemError{name, err.Error()}
		}
	}
	decodeErr := func(index int, err error) error {
		var syn *json.SyntaxError
		switch {
		case errors.Is(err, errItemTooLarge):
			return &itemError{fmt.Sprintf("%s[%d]", name, index), fmt.Sprintf("larger than %d MiB, the admin API's limit for one request", maxItemBytes>>20)}
		case errors.As(err, &syn):
			// The decoder's offsets are approximate (where the value or token began, or just
			// after the bad byte), hence "near"; the item's index is exact.
			return &itemError{fmt.Sprintf("%s[%d]", name, index), fmt.Sprintf("invalid JSON near byte %d: %v", lim.base+syn.Offset, err)}
		case errors.Is(err, io.ErrUnexpectedEOF), err == io.EOF:
			return &itemError{name, "invalid JSON: it ends in the middle of a value"}
		default:
			return &itemError{name, "invalid JSON: " + err.Error()}
		}
	}
	index := 0
	for ; ; index++ {
		if array && !dec.More() {
			break
		}
		lim.start(dec.InputOffset())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if !array && err == io.EOF {
				if index == 0 {
					return &itemError{name, "empty: no JSON object in it"}
				}
				return nil
			}
			return decodeErr(index, err)
		}
		where := fmt.Sprintf("%s[%d]", name, index)
		if len(raw) > maxItemBytes {
			return &itemError{where, fmt.Sprintf("larger than %d MiB, the admin API's limit for one request", maxItemBytes>>20)}
		}
		if raw[0] != '{' {
			return &itemError{where, "not a JSON object"}
		}
		if err := fn(index, raw); err != nil {
			return err
		}
	}
	// The closing bracket, then nothing but white space.
	if _, err := dec.Token(); err != nil {
		return decodeErr(index, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return &itemError{name, fmt.Sprintf("invalid JSON near byte %d: more after the closing ]", lim.base+dec.InputOffset())}
	}
	return nil
}

func firstByte(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return b, br.UnreadByte()
	}
}

var errItemTooLarge = errors.New("item too large")

// itemLimiter fails reads once more than max bytes were read since the current item began, so
// that one huge value cannot make the decoder buffer gigabytes. The decoder and the bufio.Reader
// only read ahead of the item, so bytes read minus the item's start bounds what they hold.
type itemLimiter struct {
	r     io.Reader
	max   int64
	read  int64 // bytes read from r
	base  int64 // the stream offset of the decoder's offset 0
	begin int64 // the stream offset where the current item begins
	armed bool
}

// arm starts limiting; offset 0 of the decoder is base bytes into the stream.
func (l *itemLimiter) arm(base int64) { l.base, l.begin, l.armed = base, base, true }

// start marks where the next item begins, as an offset the decoder reports.
func (l *itemLimiter) start(offset int64) { l.begin = l.base + offset }

func (l *itemLimiter) Read(p []byte) (int, error) {
	if l.armed && l.read-l.begin > l.max {
		return 0, errItemTooLarge
	}
	n, err := l.r.Read(p)
	l.read += int64(n)
	return n, err
}
