package webhooks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/latchhq/latch/core/dbtest"
)

// The OpenAPI document (openapi.yaml) is held to the code three ways: its routes are exactly
// AdminRoutes (TestOpenAPIRouteParity), each of them is served by a handler
// (TestOpenAPIRoutesAnswer), and the handlers' real answers, status codes and headers are the
// ones it documents (TestOpenAPIShapes). Response schemas refuse unknown properties, so a field
// added to a Go struct and not to the document fails the last one.

// openAPIURL names the document as a JSON Schema resource; it is never fetched.
const openAPIURL = "https://latch.invalid/webhooks/openapi.json"

// openAPI is the document parsed, with a JSON Schema compiler holding it so that any schema in
// it compiles by its JSON pointer (OpenAPI 3.1 schemas are JSON Schema 2020-12).
type openAPI struct {
	doc map[string]any
	c   *jsonschema.Compiler

	mu      sync.Mutex
	schemas map[string]*jsonschema.Schema
	seen    map[string]bool // "METHOD path status" answered and checked
}

func loadOpenAPI(t testing.TB) *openAPI {
	t.Helper()
	raw, err := yamlToJSON(openAPIYAML)
	if err != nil {
		t.Fatal(err)
	}
	v, err := decodeJSONNumbers(raw)
	if err != nil {
		t.Fatal(err)
	}
	doc, ok := v.(map[string]any)
	if !ok {
		t.Fatal("openapi.yaml is not a mapping")
	}
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	c.AssertFormat = true
	if err := c.AddResource(openAPIURL, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	return &openAPI{doc: doc, c: c, schemas: map[string]*jsonschema.Schema{}, seen: map[string]bool{}}
}

// httpMethods are the operation keys of an OpenAPI path item.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// operation is one operation of the document.
type operation struct {
	method, path string // "GET", "/admin/webhooks/deliveries/{id}"
	op           map[string]any
	ptr          string // its JSON pointer
}

func (o operation) key() string { return o.method + " " + o.path }

// pointerToken escapes s as one JSON pointer token.
func pointerToken(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func (o *openAPI) operations(t testing.TB) []operation {
	t.Helper()
	paths, ok := o.doc["paths"].(map[string]any)
	if !ok {
		t.Fatal("the document has no paths")
	}
	var ops []operation
	for p, item := range paths {
		item, ok := item.(map[string]any)
		if !ok {
			t.Fatalf("path %s is not a mapping", p)
		}
		for _, m := range httpMethods {
			if op, ok := item[m].(map[string]any); ok {
				ops = append(ops, operation{strings.ToUpper(m), p, op, "/paths/" + pointerToken(p) + "/" + m})
			}
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].key() < ops[j].key() })
	return ops
}

func (o *openAPI) operation(t testing.TB, method, path string) operation {
	t.Helper()
	for _, op := range o.operations(t) {
		if op.method == method && op.path == path {
			return op
		}
	}
	t.Fatalf("%s %s is not in the document", method, path)
	return operation{}
}

// at returns the node at JSON pointer ptr.
func (o *openAPI) at(t testing.TB, ptr string) any {
	t.Helper()
	var node any = o.doc
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := node.(map[string]any)
		if !ok {
			t.Fatalf("%s: %q is not inside a mapping", ptr, tok)
		}
		if node, ok = m[tok]; !ok {
			t.Fatalf("%s: no %q", ptr, tok)
		}
	}
	return node
}

// resolve follows node's local $ref (a response, parameter or request body), returning the
// node it names and that node's pointer; without $ref it returns node and ptr.
func (o *openAPI) resolve(t testing.TB, node any, ptr string) (map[string]any, string) {
	t.Helper()
	for range 8 {
		m, ok := node.(map[string]any)
		if !ok {
			t.Fatalf("%s is not a mapping", ptr)
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, ptr
		}
		if !strings.HasPrefix(ref, "#/") {
			t.Fatalf("%s: $ref %q is not local", ptr, ref)
		}
		ptr = ref[1:]
		node = o.at(t, ptr)
	}
	t.Fatalf("%s: $ref chain too long", ptr)
	return nil, ""
}

// schema compiles the schema at JSON pointer ptr, once.
func (o *openAPI) schema(t testing.TB, ptr string) *jsonschema.Schema {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if s, ok := o.schemas[ptr]; ok {
		return s
	}
	// The compiler reads the fragment as a URL path: escape what a path would change.
	frag := strings.NewReplacer("{", "%7B", "}", "%7D").Replace(ptr)
	s, err := o.c.Compile(openAPIURL + "#" + frag)
	if err != nil {
		t.Fatalf("compile the schema at %s: %v", ptr, err)
	}
	o.schemas[ptr] = s
	return s
}

// validate checks the JSON document b against the schema at ptr.
func (o *openAPI) validate(t testing.TB, ptr string, b []byte) error {
	t.Helper()
	v, err := decodeJSONNumbers(b)
	if err != nil {
		return fmt.Errorf("not JSON: %w: %q", err, b)
	}
	if err := o.schema(t, ptr).Validate(v); err != nil {
		return fmt.Errorf("%#v", err)
	}
	return nil
}

// requestSchema returns the pointer of the JSON request body schema of op ("" when it takes
// none).
func (o *openAPI) requestSchema(t testing.TB, op operation) string {
	t.Helper()
	rb, ok := op.op["requestBody"]
	if !ok {
		return ""
	}
	body, ptr := o.resolve(t, rb, op.ptr+"/requestBody")
	if content, _ := body["content"].(map[string]any); content["application/json"] == nil {
		t.Fatalf("%s: the request body is not JSON", op.key())
	}
	return ptr + "/content/application~1json/schema"
}

// checkResponse fails unless res (whose body is b) is documented for op: its status is one of
// op's responses, its media type one of that response's, its JSON body valid against the
// schema, and every documented header present. It records the status as checked.
func (o *openAPI) checkResponse(t testing.TB, op operation, res *http.Response, b []byte) {
	t.Helper()
	code := fmt.Sprint(res.StatusCode)
	rr, ok := o.at(t, op.ptr+"/responses").(map[string]any)[code]
	if !ok {
		t.Fatalf("%s answered %d, which the document does not list: %s", op.key(), res.StatusCode, b)
	}
	resp, ptr := o.resolve(t, rr, op.ptr+"/responses/"+code)
	if hs, ok := resp["headers"].(map[string]any); ok {
		for h := range hs {
			if res.Header.Get(h) == "" {
				t.Errorf("%s %d: no %s header, which the document promises", op.key(), res.StatusCode, h)
			}
		}
	}
	content, ok := resp["content"].(map[string]any)
	if !ok {
		if len(b) != 0 {
			t.Errorf("%s %d: the document says no content, got %q", op.key(), res.StatusCode, b)
		}
		o.mark(op, code)
		return
	}
	mt, _, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("%s %d: Content-Type %q: %v", op.key(), res.StatusCode, res.Header.Get("Content-Type"), err)
	}
	if _, ok := content[mt]; !ok {
		t.Fatalf("%s %d: media type %s is not documented (%v)", op.key(), res.StatusCode, mt, reflect.ValueOf(content).MapKeys())
	}
	if mt == "application/json" {
		if err := o.validate(t, ptr+"/content/application~1json/schema", b); err != nil {
			t.Fatalf("%s %d: the answer does not match the document: %v\n%s", op.key(), res.StatusCode, err, b)
		}
	}
	o.mark(op, code)
}

func (o *openAPI) mark(op operation, code string) {
	o.mu.Lock()
	o.seen[op.key()+" "+code] = true
	o.mu.Unlock()
}

// muxAnswer reports whether res is the ServeMux's own answer to an unrouted request.
func muxAnswer(res *http.Response, b []byte) bool {
	return res.StatusCode == http.StatusMethodNotAllowed ||
		(res.StatusCode == http.StatusNotFound && strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") &&
			strings.Contains(string(b), "page not found"))
}

func TestOpenAPIRouteParity(t *testing.T) {
	t.Parallel()
	o := loadOpenAPI(t)
	documented := map[string]bool{}
	ids := map[string]string{}
	for _, op := range o.operations(t) {
		documented[op.key()] = true
		id, _ := op.op["operationId"].(string)
		if id == "" {
			t.Errorf("%s has no operationId", op.key())
		} else if other, dup := ids[id]; dup {
			t.Errorf("operationId %s is both %s and %s", id, other, op.key())
		}
		ids[id] = op.key()
		if s, _ := op.op["summary"].(string); s == "" {
			t.Errorf("%s has no summary", op.key())
		}
		if rs, _ := op.op["responses"].(map[string]any); len(rs) == 0 {
			t.Errorf("%s documents no response", op.key())
		}
		// Every {param} of the path is a declared path parameter, and nothing else is.
		var declared []string
		params, _ := op.op["parameters"].([]any)
		for i, p := range params {
			pm, _ := o.resolve(t, p, fmt.Sprintf("%s/parameters/%d", op.ptr, i))
			if pm["in"] == "path" {
				declared = append(declared, pm["name"].(string))
				if pm["required"] != true {
					t.Errorf("%s: path parameter %s is not required", op.key(), pm["name"])
				}
			}
		}
		var inPath []string
		for _, seg := range strings.Split(op.path, "/") {
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
				inPath = append(inPath, seg[1:len(seg)-1])
			}
		}
		slices.Sort(declared)
		slices.Sort(inPath)
		if !slices.Equal(declared, inPath) {
			t.Errorf("%s: path parameters %v, declared %v", op.key(), inPath, declared)
		}
	}

	served := map[string]bool{}
	for _, rt := range AdminRoutes() {
		served[rt.Method+" "+rt.Path] = true
	}
	var missingDoc, missingCode []string
	for k := range served {
		if !documented[k] {
			missingDoc = append(missingDoc, k)
		}
	}
	for k := range documented {
		if !served[k] {
			missingCode = append(missingCode, k)
		}
	}
	sort.Strings(missingDoc)
	sort.Strings(missingCode)
	if len(missingDoc) > 0 {
		t.Errorf("routes AdminRoutes serves that openapi.yaml does not describe:\n  %s", strings.Join(missingDoc, "\n  "))
	}
	if len(missingCode) > 0 {
		t.Errorf("operations openapi.yaml describes that AdminRoutes does not serve:\n  %s", strings.Join(missingCode, "\n  "))
	}

	// Every schema of the components is valid JSON Schema 2020-12 (compiling checks it against
	// the meta-schema) and every $ref in it resolves.
	for name := range o.at(t, "/components/schemas").(map[string]any) {
		o.schema(t, "/components/schemas/"+pointerToken(name))
	}
}

// openAPIServer serves the admin API on a fresh database, with a configured endpoint "crm" and
// a sender that may reach loopback receivers.
func openAPIServer(t *testing.T) (*httptest.Server, *pgxpool.Pool) {
	t.Helper()
	db := dbtest.New(t)
	reg, err := NewRegistry([]Hook{{ID: "crm", Endpoint: true, URL: "https://crm.example/hooks",
		SigningSecrets: []string{testSecret}, EventTypes: []string{"identity.*"}}})
	if err != nil {
		t.Fatal(err)
	}
	sender := NewSender(SenderConfig{AllowLoopback: true})
	t.Cleanup(sender.Close)
	mux := http.NewServeMux()
	NewAdmin(db, reg, sender, nil).Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, db
}

// send makes a request and returns the answer with its whole body.
func send(t testing.TB, method, u, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

// Every documented operation reaches a handler, with and without the /admin prefix: a request
// with a made-up id and no body gets an answer the document lists (a Kratos error or a 2xx),
// never the mux's own 404 or 405.
func TestOpenAPIRoutesAnswer(t *testing.T) {
	t.Parallel()
	o := loadOpenAPI(t)
	srv, _ := openAPIServer(t)
	for _, op := range o.operations(t) {
		path := strings.ReplaceAll(op.path, "{id}", uuid.NewString())
		var codes []int
		for _, p := range []string{path, strings.TrimPrefix(path, "/admin")} {
			res, b := send(t, op.method, srv.URL+p, "")
			if muxAnswer(res, b) {
				t.Errorf("%s %s: no handler (%d %q)", op.method, p, res.StatusCode, b)
				continue
			}
			o.checkResponse(t, op, res, b)
			codes = append(codes, res.StatusCode)
		}
		if len(codes) == 2 && codes[0] != codes[1] {
			t.Errorf("%s: %d with the /admin prefix, %d without", op.key(), codes[0], codes[1])
		}
	}
}

// The handlers' real answers, 2xx and errors, match the document; every operation's success
// is checked at least once; request bodies the handlers accept are valid against the
// documented request schemas, and those they refuse for their fields are invalid.
func TestOpenAPIShapes(t *testing.T) {
	t.Parallel()
	o := loadOpenAPI(t)
	srv, db := openAPIServer(t)
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("thanks")) }))
	t.Cleanup(healthy.Close)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not today", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	start := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)

	// do sends body to the operation at tmpl (a documented path, maybe with a query) with id in
	// place of {id}, checks the answer against the document, fails unless its status is want,
	// and returns its body.
	do := func(method, tmpl, id, body string, want int) []byte {
		t.Helper()
		op := o.operation(t, method, strings.SplitN(tmpl, "?", 2)[0])
		if ptr := o.requestSchema(t, op); ptr != "" && body != "" && want < 300 {
			if err := o.validate(t, ptr, []byte(body)); err != nil {
				t.Fatalf("%s: the handler accepts %s, the document refuses it: %v", op.key(), body, err)
			}
		}
		path := strings.ReplaceAll(tmpl, "{id}", id)
		res, b := send(t, method, srv.URL+path, body)
		if res.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d: %.300s", method, path, res.StatusCode, want, b)
		}
		o.checkResponse(t, op, res, b)
		return b
	}
	const (
		deliveries = "/admin/webhooks/deliveries"
		delivery   = "/admin/webhooks/deliveries/{id}"
		endpoints  = "/admin/webhooks/endpoints"
		endpoint   = "/admin/webhooks/endpoints/{id}"
	)
	var e1, e2 Endpoint
	mustDecode(t, do("POST", endpoints, "", fmt.Sprintf(`{"url":%q,"description":"billing","event_types":["identity.*","session.revoked"],
		"headers":{"X-Team":"billing"},"rate_limit":5,"ordering":"per_identity","signing_secrets":[%q]}`, healthy.URL, testSecret), 201), &e1)
	mustDecode(t, do("POST", endpoints, "", fmt.Sprintf(`{"url":%q}`, failing.URL), 201), &e2)

	do("GET", endpoints, "", "", 200)
	res, _ := send(t, "GET", srv.URL+endpoints+"?page_size=1", "")
	next := nextLink.FindStringSubmatch(res.Header.Get("Link"))
	if next == nil {
		t.Fatalf("no next page after one stored endpoint: Link %q", res.Header.Get("Link"))
	}
	do("GET", endpoints+"?"+strings.SplitN(next[1], "?", 2)[1], "", "", 200)
	do("GET", endpoint, e1.ID, "", 200)
	do("GET", endpoint, "crm", "", 200)
	do("PATCH", endpoint, e1.ID, `{"description":"billing v2","rate_limit":null,"disabled":true}`, 200)
	do("PATCH", endpoint, "crm", `{"disabled":true}`, 200)
	do("POST", endpoint+"/secret/rotate", e1.ID, `{"overlap":"1h"}`, 200)
	do("POST", endpoint+"/secret/rotate", e2.ID, "", 200)
	do("GET", endpoint+"/secret", e1.ID, "", 200)
	do("GET", endpoint+"/secret", "crm", "", 200)

	var tr1, tr2 TestResult
	mustDecode(t, do("POST", endpoint+"/test", e1.ID, "", 200), &tr1)
	mustDecode(t, do("POST", endpoint+"/test", e2.ID, "", 200), &tr2)
	if !tr1.Success || tr2.Success || tr2.ErrorClass == nil || *tr2.ErrorClass != ErrorClassHTTPStatus {
		t.Fatalf("test sends: %+v, %+v", tr1, tr2)
	}
	var rec struct{ Replayed int }
	mustDecode(t, do("POST", endpoint+"/recover", e2.ID, fmt.Sprintf(`{"since":%q,"until":null}`, start), 200), &rec)
	if rec.Replayed != 1 {
		t.Fatalf("recover replayed %d, want the failed test send", rec.Replayed)
	}
	do("POST", endpoint+"/recover", "crm", fmt.Sprintf(`{"since":%q}`, start), 200)

	// Deliveries with every nullable field set, and a body that is not JSON.
	seeded := seed(t, db, "crm", "https://crm.example/hooks",
		fmt.Sprintf("identity_id = '%s'", uuid.New()), "leased_by = 'w1', lease_until = now() + interval '1 minute'",
		"last_status = 500, last_error = 'endpoint answered 500', attempts = 1", "body = 'a=1'")
	var listed []json.RawMessage
	if mustDecode(t, do("GET", deliveries, "", "", 200), &listed); len(listed) != 3 {
		t.Fatalf("%d deliveries listed, want the two test sends and the seeded one", len(listed))
	}
	filter := "?state=succeeded&hook_id=" + e1.ID + "&event_type=webhook.test&since=" + url.QueryEscape(start) +
		"&until=" + url.QueryEscape(time.Now().Add(time.Minute).UTC().Format(time.RFC3339))
	if mustDecode(t, do("GET", deliveries+filter, "", "", 200), &listed); len(listed) != 1 {
		t.Fatalf("%d deliveries match %s, want the successful test send", len(listed), filter)
	}
	do("GET", deliveries+"?identity_id="+uuid.NewString(), "", "", 200)
	do("GET", delivery, tr1.DeliveryID.String(), "", 200)
	do("GET", delivery, tr2.DeliveryID.String(), "", 200)
	do("GET", delivery, seeded.String(), "", 200)
	do("POST", delivery+"/replay", tr1.DeliveryID.String(), "", 200)
	do("POST", "/admin/webhooks/replay", "", fmt.Sprintf(`{"state":"succeeded","since":%q,"hook_id":%q}`, start, e1.ID), 200)
	// Courier messages: one queued, one sent after a failed dispatch, one erased.
	queued := queueMessage(t, db, TemplateRecoveryCodeValid, "ada@example.com", "123456")
	sentMsg := queueMessage(t, db, TemplateVerificationCodeInvalid, "bob@example.com", "")
	mustExec(t, db, `UPDATE webhook_deliveries SET state = 'succeeded', attempts = 2, next_attempt_at = NULL WHERE id = $1`, sentMsg)
	mustExec(t, db, `INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error_class, error)
		VALUES ($1, 1, now(), 40, 451, 'smtp', 'try later'), ($1, 2, now(), 30, NULL, NULL, NULL)`, sentMsg)
	erasedMsg := queueMessage(t, db, TemplateRecoveryCodeInvalid, "eve@example.com", "")
	mustExec(t, db, `UPDATE webhook_deliveries SET state = 'dead', body = '', erased_at = now() WHERE id = $1`, erasedMsg)
	if mustDecode(t, do("GET", "/admin/courier/messages", "", "", 200), &listed); len(listed) != 3 {
		t.Fatalf("%d courier messages, want 3", len(listed))
	}
	do("GET", "/admin/courier/messages?status=queued&recipient=ada@example.com&page_size=1", "", "", 200)
	for _, id := range []uuid.UUID{queued, sentMsg, erasedMsg} {
		do("GET", "/admin/courier/messages/{id}", id.String(), "", 200)
	}
	do("GET", "/admin/courier/messages/{id}", uuid.NewString(), "", 404)
	do("GET", "/admin/courier/messages?status=lost", "", "", 400)
	do("GET", "/admin/webhooks/openapi.json", "", "", 200)
	do("GET", "/admin/webhooks/openapi.yaml", "", "", 200)

	// Errors, each in the envelope.
	do("GET", endpoint, uuid.NewString(), "", 404)
	do("GET", endpoint, "%00", "", 400)
	do("GET", delivery, "not-a-uuid", "", 404)
	do("PATCH", endpoint, "crm", `{"url":"https://elsewhere.example/"}`, 409)
	do("DELETE", endpoint, "crm", "", 409)
	do("POST", delivery+"/replay", seeded.String(), "", 409)
	do("GET", deliveries+"?state=bogus", "", "", 400)
	do("POST", endpoints, "", `{"url":"https://x.example/","description":"`+strings.Repeat("x", 2<<20)+`"}`, 413)
	do("DELETE", endpoint, e1.ID, "", 204)

	// What the handlers refuse for its fields, the request schemas refuse too.
	for _, c := range []struct{ method, tmpl, id, body string }{
		{"POST", endpoints, "", `{"url":"https://x.example/","colour":"red"}`},
		{"POST", endpoints, "", `{"url":"https://x.example/","ordering":"global"}`},
		{"POST", endpoints, "", `{"url":"https://x.example/","rate_limit":0}`},
		{"POST", endpoints, "", `{"url":"https://x.example/","event_types":["*.created"]}`},
		{"POST", endpoints, "", `{"url":"https://x.example/","signing_secrets":["hunter2"]}`},
		{"POST", endpoints, "", `{"description":"no url"}`},
		{"PATCH", endpoint, e2.ID, `{"signing_secrets":[]}`},
		{"PATCH", endpoint, e2.ID, `{"rate_limit":"fast"}`},
		{"POST", endpoint + "/secret/rotate", e2.ID, `{"secret":"hunter2"}`},
		{"POST", endpoint + "/recover", e2.ID, `{}`},
		{"POST", endpoint + "/recover", e2.ID, `{"since":"yesterday"}`},
		{"POST", "/admin/webhooks/replay", "", `{"since":"2026-01-01T00:00:00Z"}`},
		{"POST", "/admin/webhooks/replay", "", `{"state":"gone","since":"2026-01-01T00:00:00Z"}`},
	} {
		op := o.operation(t, c.method, c.tmpl)
		do(c.method, c.tmpl, c.id, c.body, 400)
		if o.validate(t, o.requestSchema(t, op), []byte(c.body)) == nil {
			t.Errorf("%s: the handler refuses %s, the document accepts it", op.key(), c.body)
		}
	}

	// Every operation's success answer was checked at least once.
	for _, op := range o.operations(t) {
		var checked bool
		for code := range op.op["responses"].(map[string]any) {
			checked = checked || (code < "300" && o.seen[op.key()+" "+code])
		}
		if !checked {
			t.Errorf("%s: no success answer was checked against the document", op.key())
		}
	}
}

// The response schemas refuse a property they do not name, so that a field added to a Go
// struct and not to the document cannot pass; and a listed delivery may carry no body.
func TestOpenAPISchemasRefuseUnknownFields(t *testing.T) {
	t.Parallel()
	o := loadOpenAPI(t)
	now := time.Now().UTC()
	rl := 3
	e := Endpoint{ID: uuid.NewString(), URL: "https://x.example/", EventTypes: []string{}, Headers: map[string]string{},
		SigningSecrets: []EndpointSecret{{Secret: testSecret, Hint: secretHint(testSecret)}}, RateLimit: &rl, Ordering: OrderingNone, Source: SourceAPI,
		Health: &EndpointHealth{}, CreatedAt: &now, UpdatedAt: &now}
	good, _ := json.Marshal(e)
	if err := o.validate(t, "/components/schemas/Endpoint", good); err != nil {
		t.Fatalf("a plain endpoint: %v", err)
	}
	extra := append(bytes.TrimSuffix(good, []byte("}")), []byte(`,"colour":"red"}`)...)
	if o.validate(t, "/components/schemas/Endpoint", extra) == nil {
		t.Error("an endpoint with a property the document does not name passes")
	}
	d := Delivery{ID: uuid.New(), EventID: uuid.New(), HookID: "a", EventType: "identity.created", URL: "https://x.example/",
		ContentType: "application/json", State: StatePending, EventTime: now, CreatedAt: now, UpdatedAt: now}
	good, _ = json.Marshal(d)
	if err := o.validate(t, "/components/schemas/Delivery", good); err != nil {
		t.Fatalf("a plain delivery: %v", err)
	}
	d.Body = json.RawMessage(`{"a":1}`)
	withBody, _ := json.Marshal(d)
	if o.validate(t, "/components/schemas/Delivery", withBody) == nil {
		t.Error("a listed delivery with a body passes")
	}
	d.State = "lost"
	d.Body = nil
	bad, _ := json.Marshal(d)
	if o.validate(t, "/components/schemas/Delivery", bad) == nil {
		t.Error("a delivery in an unknown state passes")
	}
}

// The document is served as embedded, as YAML and as the same document in JSON.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	srv, _ := openAPIServer(t)
	for _, p := range []string{"/admin/webhooks/openapi.yaml", "/webhooks/openapi.yaml"} {
		res, b := send(t, "GET", srv.URL+p, "")
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/yaml" || !bytes.Equal(b, openAPIYAML) {
			t.Fatalf("%s: %d %q, %d bytes; want 200 application/yaml and the embedded document", p, res.StatusCode,
				res.Header.Get("Content-Type"), len(b))
		}
	}
	res, b := send(t, "GET", srv.URL+"/admin/webhooks/openapi.json", "")
	var got, want any
	if err := json.Unmarshal(b, &got); err != nil || res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("openapi.json: %d %q %v", res.StatusCode, res.Header.Get("Content-Type"), err)
	}
	raw, err := yamlToJSON(openAPIYAML)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(raw, &want)
	if !reflect.DeepEqual(got, want) {
		t.Fatal("openapi.json is not the YAML document")
	}
	if m, _ := got.(map[string]any); m["openapi"] != "3.1.0" {
		t.Fatalf("openapi %v, want 3.1.0", m["openapi"])
	}
}

// decodeJSONNumbers decodes one JSON value with numbers as json.Number, as the validator wants.
func decodeJSONNumbers(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data")
	}
	return v, nil
}

func mustDecode(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}
