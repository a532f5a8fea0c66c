package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// closedPort returns a loopback URL nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

// TestEndpointErrors: the endpoint is missing, malformed or unreachable.
func TestEndpointErrors(t *testing.T) {
	t.Parallel()
	down := closedPort(t)
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"missing", nil, []string{"identities", "list"},
			"latch: identities list: no admin API endpoint: pass -e URL (e.g. -e http://127.0.0.1:4434) or set LATCH_ADMIN_URL\n"},
		{"not http", nil, []string{"identities", "list", "-e", "ftp://127.0.0.1:4434"},
			`latch: identities list: -e/--endpoint: the admin API endpoint "ftp://127.0.0.1:4434" is not an http:// or https:// URL` + "\n"},
		{"no scheme", []string{"LATCH_ADMIN_URL=127.0.0.1:4434"}, []string{"endpoints", "list"},
			`latch: endpoints list: $LATCH_ADMIN_URL: the admin API endpoint "127.0.0.1:4434" is not an http:// or https:// URL` + "\n"},
		{"refused", nil, []string{"identities", "get", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "--endpoint", down},
			"latch: identities get 3f2504e0-4f89-11d3-9a0c-0305e82c3301: cannot reach the admin API at " + down + ": connection refused"},
		{"kratos variable", []string{"KRATOS_ADMIN_URL=" + down}, []string{"deliveries", "list"},
			"latch: deliveries list: cannot reach the admin API at " + down + ": connection refused"},
		{"latch variable wins", []string{"KRATOS_ADMIN_URL=http://127.0.0.1:1", "LATCH_ADMIN_URL=" + down}, []string{"endpoints", "list"},
			"cannot reach the admin API at " + down + ":"},
		{"flag wins", []string{"LATCH_ADMIN_URL=http://127.0.0.1:1"}, []string{"endpoints", "list", "-e", down},
			"cannot reach the admin API at " + down + ":"},
		{"unresolvable", nil, []string{"endpoints", "list", "-e", "http://no-such-host.invalid:4434"},
			`cannot reach the admin API at http://no-such-host.invalid:4434: the host name "no-such-host.invalid" does not resolve`},
	}
	for _, c := range cases {
		r := run(t, c.env, "", c.args...)
		if r.code != 1 || !strings.Contains(r.stderr, c.want) || len(lines(r.stderr)) != 1 || r.stdout != "" {
			t.Errorf("%s: want exit 1 and one line with %q, got %s", c.name, c.want, r)
		}
	}
}

// TestUsage: command-line mistakes exit 2 with the usage; help exits 0.
func TestUsage(t *testing.T) {
	t.Parallel()
	env := []string{"LATCH_ADMIN_URL=" + closedPort(t)}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"identities"}, "latch: identities: missing action"},
		{[]string{"identities", "frobnicate"}, `latch: identities: unknown action "frobnicate"`},
		{[]string{"identities", "get"}, "latch: identities get: missing identity id (or - to read them from standard input)"},
		{[]string{"identities", "list", "--format", "yaml"}, `latch: identities list: --format must be table, json or json-pretty, not "yaml"`},
		{[]string{"identities", "list", "--bogus"}, "latch: identities list: flag provided but not defined: -bogus"},
		{[]string{"identities", "list", "extra"}, `latch: identities list: unexpected argument "extra"`},
		{[]string{"identities", "list", "--page-size", "5000"}, "--page-size must be between 1 and 1000, not 5000"},
		{[]string{"identities", "import", "--concurrency", "0"}, "--concurrency must be between 1 and 64, not 0"},
		{[]string{"endpoints", "create"}, "latch: endpoints create: --url is required (or --file)"},
		{[]string{"endpoints", "create", "--file", "x.json", "--url", "http://x"}, "--file and the endpoint's flags (--url, --event-type, ...) exclude each other"},
		{[]string{"endpoints", "create", "--url", "http://x", "--header", "novalue"}, `--header "novalue" is not "Name: value"`},
		{[]string{"deliveries", "replay", "--state", "dead", "--since", "1h", "3f2504e0-4f89-11d3-9a0c-0305e82c3301"}, "give delivery ids or filters, not both"},
		{[]string{"deliveries", "list", "--state", "lost"}, `--state must be pending, succeeded or dead, not "lost"`},
		{[]string{"deliveries", "list", "--identity", "bob"}, `--identity "bob": not a UUID`},
		{[]string{"deliveries", "list", "--timeout", "0s"}, "--timeout must be positive"},
	}
	for _, c := range cases {
		r := run(t, env, "", c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "Usage:") || r.stdout != "" {
			t.Errorf("%v: want exit 2, usage and %q, got %s", c.args, c.want, r)
		}
	}
	for _, args := range [][]string{{"identities", "help"}, {"identities", "--help"}, {"deliveries", "replay", "-h"}, {"endpoints", "create", "--help"}} {
		r := run(t, env, "", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || r.stderr != "" {
			t.Errorf("%v: want exit 0 and the usage on stdout, got %s", args, r)
		}
	}
	r := run(t, env, "", "endpoints", "create", "--help")
	contains(t, "endpoints create --help", r.stdout, "-event-type", "-e URL", "-format format")
}

// TestHostilePeers: what an admin API behind a broken proxy, or a server that is not Latch,
// may answer. Every failure is one clean line; nothing from the peer reaches the terminal raw.
func TestHostilePeers(t *testing.T) {
	t.Parallel()
	peer := func(h http.HandlerFunc) string {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	html := peer(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte("<html>\n<body>\n<h1>502 Bad Gateway</h1>\n</body>\n</html>\n"))
	})
	escapes := peer(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error": {"code": 400, "status": "Bad Request", "id": "x\u001b[2J", "message": "m", "reason": "evil\u001b]0;pwned\u0007\nsecond line\ttab"}}`))
	})
	notArray := peer(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"identities": []}`)) })
	loop := peer(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", `</admin/identities?page_size=250&page_token=same>; rel="next"`)
		w.Write([]byte(`[{"id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"}]`))
	})
	bare404 := peer(http.NotFound)
	portal := peer(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>Please log in</html>")) })
	redirect := peer(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusFound)
	})
	hostileTraits := peer(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`[{"id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "state": "active\u001b[31m", "traits": {"email": "a\u001b[2J\tb@example.com\nINJECTED"}}]`))
	})
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	slow := peer(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	})

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"html", []string{"identities", "list", "-e", html}, "latch: identities list: 502 Bad Gateway: <html> <body> <h1>502 Bad Gateway</h1> </body> </html>\n"},
		{"escapes", []string{"endpoints", "list", "-e", escapes}, "latch: endpoints list: 400 Bad Request: evil ]0;pwned second line tab (error id x [2J)\n"},
		{"not an array", []string{"identities", "list", "-e", notArray}, "answered something other than a JSON array"},
		{"page loop", []string{"identities", "list", "-e", loop}, "answered the same next page again"},
		{"not the admin API", []string{"deliveries", "list", "-e", bare404}, "latch: deliveries list: 404 Not Found: 404 page not found (no such route: is this Latch's admin API?)\n"},
		{"not json", []string{"identities", "get", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "-e", portal},
			"unusable answer from the admin API at " + portal + ": GET /admin/identities/3f2504e0-4f89-11d3-9a0c-0305e82c3301 answered 200 OK with a body that is not JSON: <html>Please log in</html>\n"},
		{"redirect", []string{"identities", "get", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "-e", redirect}, "302 Found"},
		{"timeout", []string{"identities", "list", "-e", slow, "--timeout", "200ms"}, "cannot reach the admin API at " + slow + ": no answer within 200ms (see --timeout)"},
	}
	for _, c := range cases {
		r := run(t, nil, "", c.args...)
		if r.code != 1 || !strings.Contains(r.stderr, c.want) || len(lines(r.stderr)) != 1 || strings.ContainsAny(r.stderr, "\x1b\x07") {
			t.Errorf("%s: want exit 1 and one clean line with %q, got %s", c.name, c.want, r)
		}
	}
	r := run(t, nil, "", "identities", "list", "-e", hostileTraits)
	want(t, r, 0)
	if strings.ContainsAny(r.stdout, "\x1b\t") || len(lines(r.stdout)) != 2 {
		t.Errorf("a hostile identity reached the terminal raw:\n%q", r.stdout)
	}
	contains(t, "table", r.stdout, "a [2J b@example.com INJECTED")
}

// TestImportInterrupted: Ctrl-C during an import lets the request in flight finish (the server
// may have committed it), starts nothing more, and says what was and was not done.
func TestImportInterrupted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 2 {
			cancel() // the operator presses Ctrl-C while the second identity is being created
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": "3f2504e0-4f89-11d3-9a0c-03050000000%d", "state": "active", "traits": {"email": "u%d@example.com"}}`, n.Load(), n.Load())
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	r := &runner{std: Streams{Stdin: strings.NewReader(`{"traits":{}}{"traits":{}}{"traits":{}}{"traits":{}}{"traits":{}}`),
		Stdout: &out, Stderr: &errb}, env: []string{"LATCH_ADMIN_URL=" + srv.URL}}
	code := r.main(ctx, []string{"identities", "import", "--concurrency", "1"})
	res := result{code, out.String(), errb.String()}
	want(t, res, 1)
	if n.Load() != 2 {
		t.Errorf("the server got %d requests after the interrupt, want 2", n.Load())
	}
	contains(t, "stderr", res.stderr, "interrupted: imported 2 of 5 identities (3 not attempted)\n")
	if len(lines(res.stdout)) != 3 {
		t.Errorf("want both created identities shown:\n%s", res)
	}
}
