package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// identityIDs lists every identity through the admin API.
func (s *server) identityIDs(t *testing.T) map[string]string {
	t.Helper()
	var list []struct {
		ID     string `json:"id"`
		Traits struct {
			Email string `json:"email"`
		} `json:"traits"`
	}
	s.adminJSON(t, "GET", "/admin/identities?page_size=1000", nil, 200, &list)
	out := map[string]string{}
	for _, i := range list {
		out[i.Traits.Email] = i.ID
	}
	return out
}

func TestIdentities(t *testing.T) {
	t.Parallel()
	s := startLatch(t)

	// import: an array whose items 3 and 4 fail (invalid traits, a duplicate), one at a time
	// so that the duplicate is the later one.
	users := writeFile(t, "users.json", `[
  {"schema_id": "default", "traits": {"email": "ada@example.com", "name": {"first": "Ada"}},
   "credentials": {"password": {"config": {"password": "correct horse battery staple"}}}},
  {"traits": {"email": "grace@example.com"}},
  {"traits": {"email": "edsger@example.com"}, "state": "inactive"},
  {"traits": {"email": "not-an-email"}},
  {"traits": {"email": "ada@example.com"}}
]`)
	retry := filepath.Join(t.TempDir(), "retry.json")
	r := s.cli(t, "identities", "import", users, "--concurrency", "1", "--failed-to", retry)
	want(t, r, 1)
	var refused []struct {
		Traits struct{ Email string }
	}
	b, err := os.ReadFile(retry)
	if err != nil || json.Unmarshal(b, &refused) != nil || len(refused) != 2 ||
		refused[0].Traits.Email != "not-an-email" || refused[1].Traits.Email != "ada@example.com" {
		t.Errorf("--failed-to: %v\n%s", err, b)
	}
	if fi, err := os.Stat(retry); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("--failed-to file mode: %v %v", fi.Mode(), err)
	}
	contains(t, "stderr", r.stderr,
		"latch: identities import "+users+"[3] (not-an-email): 400 Bad Request: The identity's traits are invalid",
		"latch: identities import "+users+"[4] (ada@example.com): 409 Conflict: This identity conflicts with another identity that already exists.",
		"imported 3 of 5 identities (2 failed)", "the 2 refused items are in "+retry+"\n")
	if strings.Contains(r.stderr, "\r") {
		t.Errorf("a progress bar was drawn on a stderr that is not a terminal:\n%q", r.stderr)
	}
	if got := lines(r.stdout); len(got) != 4 || !strings.HasPrefix(got[0], "ID ") {
		t.Fatalf("want a header and 3 rows, got:\n%s", r.stdout)
	}
	contains(t, "stdout", r.stdout, "ada@example.com", "grace@example.com", "edsger@example.com", "inactive", "default")
	ids := s.identityIDs(t)
	if len(ids) != 3 || ids["ada@example.com"] == "" || ids["not-an-email"] != "" {
		t.Fatalf("the server holds %v", ids)
	}
	ada, grace, edsger := ids["ada@example.com"], ids["grace@example.com"], ids["edsger@example.com"]
	var withPassword struct {
		Credentials struct {
			Password struct {
				Config struct {
					HashedPassword string `json:"hashed_password"`
				} `json:"config"`
			} `json:"password"`
		} `json:"credentials"`
	}
	s.adminJSON(t, "GET", "/admin/identities/"+ada+"?include_credential=password", nil, 200, &withPassword)
	if !strings.HasPrefix(withPassword.Credentials.Password.Config.HashedPassword, "$2") {
		t.Errorf("the imported password was not stored as a hash: %+v", withPassword)
	}

	// import from standard input, JSON Lines, printing JSON.
	r = run(t, s.env(), `{"traits": {"email": "barbara@example.com"}}
{"traits": {"email": "alan@example.com"}}
`, "identities", "import", "--format", "json")
	want(t, r, 0)
	var created []struct{ ID, State string }
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || len(created) != 2 || created[0].State != "active" {
		t.Fatalf("import --format json: %v\n%s", err, r)
	}
	contains(t, "stderr", r.stderr, "imported 2 of 2 identities")

	// list follows every page; --limit stops early; -q prints ids.
	r = s.cli(t, "identities", "list", "--page-size", "2")
	want(t, r, 0)
	if got := len(lines(r.stdout)); got != 6 {
		t.Errorf("list --page-size 2: want a header and 5 rows, got %d:\n%s", got, r.stdout)
	}
	if row := rowWith(r.stdout, edsger); !strings.Contains(row, "inactive") || !strings.Contains(row, "edsger@example.com") {
		t.Errorf("edsger's row: %q", row)
	}
	r = s.cli(t, "identities", "list", "--page-size", "2", "--limit", "3", "--format", "json")
	want(t, r, 0)
	var limited []json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &limited); err != nil || len(limited) != 3 {
		t.Errorf("list --limit 3 --format json: %v\n%s", err, r)
	}
	r = s.cli(t, "identities", "list", "-q")
	want(t, r, 0)
	if got := lines(r.stdout); len(got) != 5 || uuid.Validate(got[0]) != nil {
		t.Errorf("list -q: want 5 ids:\n%s", r.stdout)
	}
	r = s.cli(t, "identities", "list", "--identifier", "grace@example.com", "-q")
	want(t, r, 0)
	if strings.TrimSpace(r.stdout) != grace {
		t.Errorf("list --identifier: want %s, got %s", grace, r)
	}

	// get: flags after the id; one id prints an object, several a table.
	r = s.cli(t, "identities", "get", ada, "--format", "json-pretty")
	want(t, r, 0)
	var one struct{ ID string }
	if err := json.Unmarshal([]byte(r.stdout), &one); err != nil || one.ID != ada || !strings.Contains(r.stdout, "\n  \"") {
		t.Errorf("get --format json-pretty: %v\n%s", err, r)
	}
	missing := uuid.NewString()
	r = s.cli(t, "identities", "get", ada, missing, grace, "not-a-uuid")
	want(t, r, 1)
	if len(lines(r.stdout)) != 3 || rowWith(r.stdout, ada) == "" || rowWith(r.stdout, grace) == "" {
		t.Errorf("get with failures: want the two found:\n%s", r)
	}
	contains(t, "stderr", r.stderr,
		"latch: identities get "+missing+": 404 Not Found: Unable to locate the resource\n",
		"latch: identities get not-a-uuid: not a UUID (identity ids are UUIDs); nothing was sent\n")

	// delete several, one unknown; then the rest through standard input.
	r = s.cli(t, "identities", "delete", ada, missing)
	want(t, r, 1)
	contains(t, "stdout", r.stdout, ada, "deleted")
	contains(t, "stderr", r.stderr, "latch: identities delete "+missing+": 404 Not Found")
	if code, _ := s.admin(t, "GET", "/admin/identities/"+ada, nil); code != 404 {
		t.Errorf("ada still exists after delete: %d", code)
	}
	list := s.cli(t, "identities", "list", "-q")
	r = run(t, s.env(), list.stdout, "identities", "delete", "-", "--format", "json")
	want(t, r, 0)
	var deleted []string
	if err := json.Unmarshal([]byte(r.stdout), &deleted); err != nil || len(deleted) != 4 {
		t.Errorf("delete - --format json: %v\n%s", err, r)
	}
	if left := s.identityIDs(t); len(left) != 0 {
		t.Errorf("identities left after deleting all: %v", left)
	}
	r = s.cli(t, "identities", "list")
	want(t, r, 0)
	if strings.TrimSpace(r.stdout) != strings.Join(identityView.header, "  ") {
		t.Errorf("an empty list prints its header only:\n%q", r.stdout)
	}

	// The binary: main dispatches to the package, statuses and streams as in-process.
	cmd := exec.Command(latchBin, "identities", "import", "-")
	cmd.Env = append(os.Environ(), "LATCH_ADMIN_URL=", "KRATOS_ADMIN_URL="+s.adminURL)
	cmd.Stdin = strings.NewReader(`{"traits": {"email": "kratos-env@example.com"}}`)
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), "kratos-env@example.com") {
		t.Errorf("latch identities import with KRATOS_ADMIN_URL: %v\n%s", err, out)
	}
	cmd = exec.Command(latchBin, "identities", "get", uuid.NewString(), "-e", s.adminURL)
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "404 Not Found") {
		t.Errorf("latch identities get unknown: want exit 1 and a 404, got %v\n%s", err, out)
	}
}

// TestImportProgress draws the bar (into a buffer, as on a terminal) and checks it reaches the
// end and leaves the summary on a clean line.
func TestImportProgress(t *testing.T) {
	t.Parallel()
	s := startLatch(t)
	var b strings.Builder
	b.WriteString("[")
	const n = 40
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"traits": {"email": "user%d@example.com"}}`, i)
	}
	b.WriteString("]")
	r := runWith(t, true, s.env(), b.String(), "identities", "import", "-q")
	want(t, r, 0)
	if got := lines(r.stdout); len(got) != n {
		t.Errorf("import -q: want %d ids, got %d", n, len(got))
	}
	// -q: the bar (stderr is a terminal here), but no summary.
	if !strings.Contains(r.stderr, "importing identities") || strings.Contains(r.stderr, "imported") {
		t.Errorf("import -q on a terminal: want the bar and no summary, got %q", r.stderr)
	}
	r = runWith(t, true, s.env(), strings.ReplaceAll(b.String(), "@", "+2@"), "identities", "import")
	want(t, r, 0)
	contains(t, "stderr", r.stderr, "importing identities", fmt.Sprintf("/%d", n), "\rimported 40 of 40 identities\n")
	if len(s.identityIDs(t)) != 2*n {
		t.Errorf("want %d identities on the server", 2*n)
	}
	// Many ids on the command line or stdin show progress too, failures above the bar.
	list := s.cli(t, "identities", "list", "-q")
	r = runWith(t, true, s.env(), list.stdout+" "+uuid.NewString(), "identities", "delete", "-", "-q")
	want(t, r, 1)
	contains(t, "stderr", r.stderr, "identities delete", "/81", ": 404 Not Found: Unable to locate the resource\n")
	if got := len(lines(r.stdout)); got != 2*n {
		t.Errorf("delete -q: %d ids printed, want %d", got, 2*n)
	}
	if left := s.identityIDs(t); len(left) != 0 {
		t.Errorf("%d identities left", len(left))
	}
}

// TestImportRefusesBrokenInput checks what is wrong with an input before anything is sent:
// nothing is imported from a file that is broken anywhere.
func TestImportRefusesBrokenInput(t *testing.T) {
	t.Parallel()
	s := startLatch(t)
	big := `[{"traits": {"email": "big@example.com", "name": {"first": "` + strings.Repeat("x", maxItemBytes) + `"}}}]`
	cases := []struct {
		name, content, want string
	}{
		{"truncated", `[{"traits": {"email": "a@example.com"}}, {"traits": `, "truncated.json: invalid JSON: it ends in the middle of a value; nothing was imported"},
		{"syntax", `[{"traits": {"email": "a@example.com"}}, {oops}]`, "syntax.json[1]: invalid JSON near byte 41: invalid character 'o' looking for beginning of object key string; nothing was imported"},
		{"trailing", `[{"traits": {"email": "a@example.com"}}] {}`, "trailing.json: invalid JSON near byte 42: more after the closing ]; nothing was imported"},
		{"string", `"hello"`, `string.json[0]: not a JSON object`},
		{"array-of-arrays", `[{"traits": {"email": "a@example.com"}}, []]`, `array-of-arrays.json[1]: not a JSON object`},
		{"empty", " \n ", "empty.json: empty: no JSON object in it"},
		{"empty-array", "[]", "no identities to import: the input holds an empty array"},
		{"too-large", big, "too-large.json[0]: larger than 1 MiB, the admin API's limit for one request"},
		{"binary", "\x00\x01\x02", "binary.json[0]: invalid JSON near byte 1: invalid character '\\x00' looking for beginning of value; nothing was imported"},
	}
	for _, c := range cases {
		path := writeFile(t, c.name+".json", c.content)
		r := s.cli(t, "identities", "import", path)
		want(t, r, 1)
		if !strings.Contains(r.stderr, c.want) || len(lines(r.stderr)) != 1 {
			t.Errorf("%s: want one line with %q, got:\n%s", c.name, c.want, r)
		}
	}
	// A huge file: one 64 MiB value. It is refused after reading about 2 MiB of it, whatever its
	// size, and the file before it in the same command is not imported either.
	huge, err := os.Create(t.TempDir() + "/huge.json")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(huge, `{"traits": {"email": "`)
	chunk := []byte(strings.Repeat("y", 1<<20))
	for range 64 {
		if _, err := huge.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Fprint(huge, `"}}`)
	huge.Close()
	good := writeFile(t, "good.json", `{"traits": {"email": "good@example.com"}}`)
	r := s.cli(t, "identities", "import", good, huge.Name())
	want(t, r, 1)
	contains(t, "stderr", r.stderr, huge.Name()+"[0]: larger than 1 MiB")
	r = s.cli(t, "identities", "import", "/nonexistent/users.json")
	want(t, r, 1)
	contains(t, "stderr", r.stderr, "latch: identities import: open /nonexistent/users.json: no such file or directory")
	if ids := s.identityIDs(t); len(ids) != 0 {
		t.Errorf("broken inputs imported %v", ids)
	}
	// Items the CLI cannot judge reach the server, which refuses them one by one.
	r = s.cli(t, "identities", "import", writeFile(t, "unknown.json", `[{"traits": {"email": "u@example.com"}, "nickname": "x"}, {"traits": {"email": "v@example.com"}, "schema_id": "nope"}]`))
	want(t, r, 1)
	contains(t, "stderr", r.stderr, "[0] (u@example.com): 400 Bad Request", "[1] (v@example.com): 400 Bad Request: Identity schema \"nope\" does not exist.", "imported 0 of 2 identities (2 failed)")
}
