package core_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// hostile is one hostile request body and the status it must get.
type hostile struct {
	name        string
	contentType string
	body        []byte
	want        int
}

// send posts raw bytes with a Content-Type and decodes the answer like call.
func send(t *testing.T, method, u, contentType string, body []byte, header ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for n := 0; n+1 < len(header); n += 2 {
		req.Header.Set(header[n], header[n+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := map[string]any{}
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: invalid JSON %q", method, u, raw)
		}
	}
	out["_raw"] = string(raw)
	return res.StatusCode, out
}

// wantError checks a Kratos-shaped generic error: {"error":{"code":status,"message":...}}.
func wantError(t *testing.T, what string, status, want int, res map[string]any) {
	t.Helper()
	if status != want {
		t.Fatalf("%s: status %d, want %d: %.300s", what, status, want, res["_raw"])
	}
	e, _ := res["error"].(map[string]any)
	if code, _ := e["code"].(float64); int(code) != want || e["message"] == "" || e["message"] == nil {
		t.Fatalf("%s: not a Kratos-shaped %d error: %.300s", what, want, res["_raw"])
	}
}

func jsonBody(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// nested returns n levels of {"a": ...} around leaf.
func nested(n int, leaf string) string {
	return strings.Repeat(`{"a":`, n) + leaf + strings.Repeat(`}`, n)
}

// multipartBody encodes fields (and, with file, one file part) as multipart/form-data.
func multipartBody(fields [][2]string, file bool) (string, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		_ = mw.WriteField(f[0], f[1])
	}
	if file {
		fw, _ := mw.CreateFormFile("traits.email", "a.txt")
		_, _ = fw.Write([]byte("file@example.com"))
	}
	_ = mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

const twoMiB = 2 << 20

// hostileSubmissions are the bodies every flow submit must refuse, whatever the flow.
func hostileSubmissions() []hostile {
	const js = "application/json"
	const form = "application/x-www-form-urlencoded"
	mpCT, mpNUL := multipartBody([][2]string{{"method", "password"}, {"traits.email", "a\x00@example.com"}}, false)
	mpKeyCT, mpKeyNUL := multipartBody([][2]string{{"trai\x00ts.email", "a@example.com"}}, false)
	mpBadCT, mpBad := multipartBody([][2]string{{"password", "\xff\xfe" + goodPassword}}, false)
	mpFileCT, mpFile := multipartBody([][2]string{{"method", "password"}}, true)
	mpBigCT, mpBig := multipartBody([][2]string{{"password", strings.Repeat("x", twoMiB)}}, false)
	return []hostile{
		{"NUL in a trait", js, []byte(`{"method":"password","password":"` + goodPassword + `","traits":{"email":"a\u0000@example.com"}}`), 400},
		{"NUL in a trait key", js, []byte(`{"method":"password","traits":{"em\u0000ail":"a@example.com"}}`), 400},
		{"NUL in transient_payload", js, []byte(`{"method":"password","transient_payload":{"k":"\u0000"}}`), 400},
		{"NUL in identifier", js, []byte(`{"method":"password","identifier":"a\u0000b","password":"x"}`), 400},
		{"NUL in password", js, []byte(`{"method":"password","identifier":"a@example.com","password":"\u0000"}`), 400},
		{"NUL in method", js, []byte(`{"method":"pass\u0000word"}`), 400},
		{"raw NUL byte in a string", js, []byte("{\"method\":\"pass\x00word\"}"), 400},
		{"invalid UTF-8 in a string", js, []byte("{\"method\":\"password\",\"traits\":{\"email\":\"\xff@example.com\"}}"), 400},
		{"lone surrogate escape", js, []byte(`{"method":"password","traits":{"email":"\ud800@example.com"}}`), 400},
		{"low surrogate first", js, []byte(`{"method":"password","traits":{"email":"\udc00\ud800"}}`), 400},
		{"transient_payload not an object", js, []byte(`{"method":"password","transient_payload":"x"}`), 400},
		{"nesting bomb in traits", js, []byte(`{"method":"password","traits":` + nested(10000, `"x"`) + `}`), 400},
		{"nesting just over the cap", js, []byte(`{"traits":` + nested(128, `1`) + `}`), 400},
		{"2 MiB JSON body", js, []byte(`{"method":"password","password":"` + strings.Repeat("x", twoMiB) + `"}`), 413},
		{"array body", js, []byte(`[]`), 400},
		{"empty body", js, nil, 400},
		{"trailing data", js, []byte(`{} {}`), 400},
		{"unknown content type", "text/plain", []byte("method=password"), 400},
		{"NUL in a form value", form, []byte("method=password&traits.email=a%00b%40example.com"), 400},
		{"NUL in a form key", form, []byte("traits.em%00ail=a%40example.com"), 400},
		{"invalid UTF-8 in a form value", form, []byte("method=password&password=%ff%fe"), 400},
		{"malformed form escape", form, []byte("method=%zz"), 400},
		{"2 MiB form body", form, []byte("password=" + strings.Repeat("x", twoMiB)), 413},
		{"dotted key bomb", form, []byte(strings.Repeat("traits.", 1000) + "x=1"), 400},
		{"NUL in a multipart value", mpCT, mpNUL, 400},
		{"NUL in a multipart name", mpKeyCT, mpKeyNUL, 400},
		{"invalid UTF-8 in a multipart value", mpBadCT, mpBad, 400},
		{"multipart file", mpFileCT, mpFile, 400},
		{"multipart without boundary", "multipart/form-data", mpNUL, 400},
		{"multipart with a wrong boundary", "multipart/form-data; boundary=nope", mpNUL, 400},
		{"2 MiB multipart body", mpBigCT, mpBig, 413},
	}
}

// Every hostile submit body gets a Kratos-shaped 4xx from registration, login and settings,
// before any flow logic runs, and nothing is written.
func TestHostileFlowSubmissions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, reg := b.register(t, "owner@example.com", goodPassword)
	token := reg["session_token"].(string)
	identities := b.count(t, "identities")
	for _, kind := range []string{"registration", "login", "settings"} {
		for _, c := range hostileSubmissions() {
			var header []string
			if kind == "settings" {
				header = []string{"X-Session-Token", token}
			}
			id := b.flow(t, kind, header...)
			status, res := send(t, "POST", b.public.URL+"/self-service/"+kind+"?flow="+id, c.contentType, c.body, header...)
			wantError(t, kind+": "+c.name, status, c.want, res)
		}
	}
	if n := b.count(t, "identities"); n != identities {
		t.Fatalf("hostile submits changed the identities: %d, want %d", n, identities)
	}
	if b.whoami(t, token) != 200 {
		t.Fatal("the owner's session no longer works")
	}
}

// A multipart/form-data submit is read like a form post: registration and login succeed.
func TestMultipartSubmissions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ct, body := multipartBody([][2]string{{"method", "password"}, {"password", goodPassword},
		{"traits.email", "multi@example.com"}, {"traits.name.first", "Multi"}, {"transient_payload.source", "mp"}}, false)
	id := b.flow(t, "registration")
	status, res := send(t, "POST", b.public.URL+"/self-service/registration?flow="+id, ct, body)
	if status != 200 {
		t.Fatalf("multipart registration: %d %.300s", status, res["_raw"])
	}
	ident := res["identity"].(map[string]any)
	traits := ident["traits"].(map[string]any)
	if traits["email"] != "multi@example.com" || traits["name"].(map[string]any)["first"] != "Multi" {
		t.Fatalf("traits = %v", traits)
	}
	ct, body = multipartBody([][2]string{{"method", "password"}, {"identifier", "multi@example.com"}, {"password", goodPassword}}, false)
	id = b.flow(t, "login")
	if status, res := send(t, "POST", b.public.URL+"/self-service/login?flow="+id, ct, body); status != 200 || res["session_token"] == nil {
		t.Fatalf("multipart login: %d %.300s", status, res["_raw"])
	}
	// Deep but allowed nesting reaches the schema, which refuses the unknown trait: a flow 400.
	id = b.flow(t, "registration")
	status, res = send(t, "POST", b.public.URL+"/self-service/registration?flow="+id, "application/json",
		[]byte(`{"method":"password","password":"`+goodPassword+`","traits":{"email":"deep@example.com","x":`+nested(120, `1`)+`}}`))
	if status != 400 || res["ui"] == nil {
		t.Fatalf("deep traits: %d %.300s", status, res["_raw"])
	}
}

func adminCreateBody(email string, extra map[string]any) []byte {
	b := map[string]any{"traits": map[string]any{"email": email}}
	for k, v := range extra {
		b[k] = v
	}
	return jsonBody(b)
}

// The admin identity API refuses hostile bodies and filters with Kratos-shaped 4xx.
func TestHostileAdminIdentities(t *testing.T) {
	t.Parallel()
	b := setup(t)
	adm := b.admin.URL + "/admin/identities"
	status, res := send(t, "POST", adm, "application/json", adminCreateBody("taken@example.com", map[string]any{"external_id": "ext-taken"}))
	if status != 201 {
		t.Fatalf("create: %d %.300s", status, res["_raw"])
	}
	status, res = send(t, "POST", adm, "application/json", adminCreateBody("victim@example.com", map[string]any{"external_id": "ext-victim"}))
	if status != 201 {
		t.Fatalf("create: %d %.300s", status, res["_raw"])
	}
	victim := res["id"].(string)
	pw := func(p string) map[string]any {
		return map[string]any{"password": map[string]any{"config": map[string]any{"password": p}}}
	}
	const js = "application/json"
	bodies := []hostile{
		{"NUL in a trait", js, []byte(`{"traits":{"email":"a\u0000@example.com"}}`), 400},
		{"NUL in metadata_public", js, []byte(`{"traits":{"email":"m@example.com"},"metadata_public":{"k":"\u0000"}}`), 400},
		{"NUL in a metadata_admin key", js, []byte(`{"traits":{"email":"m@example.com"},"metadata_admin":{"\u0000":1}}`), 400},
		{"NUL in external_id", js, []byte(`{"traits":{"email":"m@example.com"},"external_id":"e\u0000"}`), 400},
		{"external_id past the index limit", js, adminCreateBody("m@example.com", map[string]any{"external_id": strings.Repeat(uuid.NewString(), 100)}), 400},
		{"NUL in schema_id", js, []byte(`{"schema_id":"default\u0000","traits":{"email":"m@example.com"}}`), 400},
		{"NUL in state", js, []byte(`{"state":"active\u0000","traits":{"email":"m@example.com"}}`), 400},
		{"NUL in a verifiable address", js, []byte(`{"traits":{"email":"m@example.com"},"verifiable_addresses":[{"value":"\u0000","via":"email","status":"x"}]}`), 400},
		{"invalid UTF-8", js, []byte("{\"traits\":{\"email\":\"\xc3\x28@example.com\"}}"), 400},
		{"lone surrogate in metadata", js, []byte(`{"traits":{"email":"m@example.com"},"metadata_admin":{"k":"\udfff"}}`), 400},
		{"traits a string", js, []byte(`{"traits":"x"}`), 400},
		{"traits an array", js, []byte(`{"traits":[]}`), 400},
		{"metadata_public a string", js, []byte(`{"traits":{"email":"m@example.com"},"metadata_public":"x"}`), 400},
		{"metadata_admin an array", js, []byte(`{"traits":{"email":"m@example.com"},"metadata_admin":[1]}`), 400},
		{"nesting bomb in metadata", js, []byte(`{"traits":{"email":"m@example.com"},"metadata_admin":` + nested(10000, `1`) + `}`), 400},
		{"2 MiB body", js, adminCreateBody("big@example.com", map[string]any{"metadata_admin": map[string]any{"x": strings.Repeat("x", twoMiB)}}), 413},
		{"100-byte password", js, adminCreateBody("long@example.com", map[string]any{"credentials": pw(strings.Repeat("p", 100))}), 400},
		{"too short password", js, adminCreateBody("short@example.com", map[string]any{"credentials": pw("short")}), 400},
		{"password like the identifier", js, adminCreateBody("similar@example.com", map[string]any{"credentials": pw("similar@example.com")}), 400},
		{"unknown field", js, []byte(`{"traits":{"email":"m@example.com"},"bogus":1}`), 400},
		{"taken identifier", js, adminCreateBody("taken@example.com", nil), 409},
		{"taken external_id", js, adminCreateBody("other@example.com", map[string]any{"external_id": "ext-taken"}), 409},
		{"empty body", js, nil, 400},
	}
	for _, c := range bodies {
		status, res := send(t, "POST", adm, c.contentType, c.body)
		wantError(t, "POST "+c.name, status, c.want, res)
		// PUT onto another identity answers the same, taken values included.
		status, res = send(t, "PUT", adm+"/"+victim, c.contentType, c.body)
		wantError(t, "PUT "+c.name, status, c.want, res)
	}

	patches := []hostile{
		{"NUL in a value", js, []byte(`[{"op":"replace","path":"/traits/email","value":"a\u0000@example.com"}]`), 400},
		{"NUL in a path", js, []byte(`[{"op":"add","path":"/metadata_admin/\u0000","value":1}]`), 400},
		{"NUL in external_id", js, []byte(`[{"op":"add","path":"/external_id","value":"\u0000"}]`), 400},
		{"taken external_id", js, []byte(`[{"op":"add","path":"/external_id","value":"ext-taken"}]`), 409},
		{"taken identifier", js, []byte(`[{"op":"replace","path":"/traits/email","value":"taken@example.com"}]`), 409},
		{"traits replaced by a string", js, []byte(`[{"op":"replace","path":"/traits","value":"x"}]`), 400},
		{"metadata replaced by a number", js, []byte(`[{"op":"add","path":"/metadata_public","value":5}]`), 400},
		{"copy doubling", js, copyBomb(40), 400},
		{"copy nesting", js, copyNest(200), 400},
		{"not a patch", js, []byte(`{"op":"replace"}`), 400},
		{"bad op", js, []byte(`[{"op":"explode","path":"/state"}]`), 400},
		{"2 MiB patch", js, jsonBody([]map[string]any{{"op": "add", "path": "/metadata_admin", "value": map[string]any{"x": strings.Repeat("x", twoMiB)}}}), 413},
		{"invalid UTF-8", js, []byte("[{\"op\":\"add\",\"path\":\"/external_id\",\"value\":\"\xff\"}]"), 400},
	}
	for _, c := range patches {
		status, res := send(t, "PATCH", adm+"/"+victim, c.contentType, c.body)
		wantError(t, "PATCH "+c.name, status, c.want, res)
	}

	nulToken := base64.RawURLEncoding.EncodeToString([]byte(`{"CreatedAt":"2024-01-01T00:00:00Z","ID":"` + uuid.NewString() + `","X":"\u0000"}`))
	queries := []struct {
		name, path string
		want       int
	}{
		{"NUL in credentials_identifier", "?credentials_identifier=a%00b", 400},
		{"invalid UTF-8 in credentials_identifier", "?credentials_identifier=%ff", 400},
		{"NUL in ids", "?ids=%00", 400},
		{"garbage ids", "?ids=nope", 400},
		{"NUL in page_token", "?page_token=%00", 400},
		{"NUL inside a page_token", "?page_token=" + nulToken, 400},
		{"garbage page_token", "?page_token=!!", 400},
		{"negative page_size", "?page_size=-1", 400},
		{"NUL in a parameter name", "?a%00=1", 400},
		{"NUL in the path id", "/%00", 400},
		{"garbage path id", "/nope", 400},
	}
	for _, q := range queries {
		status, res := send(t, "GET", adm+q.path, "", nil)
		wantError(t, "GET "+q.name, status, q.want, res)
	}
	// The victim is unchanged by all of it.
	status, got := call(t, "GET", adm+"/"+victim, nil)
	if status != 200 || got["external_id"] != "ext-victim" || got["traits"].(map[string]any)["email"] != "victim@example.com" {
		t.Fatalf("victim after the hostile writes: %d %.300s", status, got["_raw"])
	}
	// Happy neighbours: a 72-byte password and an empty external_id (no value, no conflict).
	for i, email := range []string{"ok1@example.com", "ok2@example.com"} {
		body := adminCreateBody(email, map[string]any{"external_id": "", "credentials": pw(strings.Repeat("k", 71) + string(rune('a'+i)))})
		if status, res := send(t, "POST", adm, js, body); status != 201 {
			t.Fatalf("create %s: %d %.300s", email, status, res["_raw"])
		}
	}
	if s, r := b.login(t, "ok1@example.com", strings.Repeat("k", 71)+"a"); s != 200 {
		t.Fatalf("login with a 72-byte admin password: %d %.300s", s, r["_raw"])
	}
	if status, _ := call(t, "GET", adm+"?credentials_identifier=taken@example.com", nil); status != 200 {
		t.Fatalf("list by identifier: %d", status)
	}
}

// copyBomb is a JSON Patch whose copy operations double metadata_admin n times.
func copyBomb(n int) []byte {
	ops := []map[string]any{{"op": "add", "path": "/metadata_admin", "value": map[string]any{"a": strings.Repeat("x", 1000)}}}
	for i := range n {
		ops = append(ops, map[string]any{"op": "copy", "from": "/metadata_admin", "path": "/metadata_admin/c" + string(rune('a'+i%26)) + strings.Repeat("z", i/26)})
	}
	return jsonBody(ops)
}

// copyNest is a JSON Patch that nests metadata_admin inside itself n times.
func copyNest(n int) []byte {
	ops := []map[string]any{{"op": "add", "path": "/metadata_admin", "value": map[string]any{}}}
	for range n {
		ops = append(ops, map[string]any{"op": "copy", "from": "/metadata_admin", "path": "/metadata_admin/a"})
	}
	return jsonBody(ops)
}

// Logout and the session endpoints refuse hostile input with Kratos-shaped 4xx.
func TestHostileLogoutAndSessions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, reg := b.register(t, "sess@example.com", goodPassword)
	token := reg["session_token"].(string)
	identity := reg["identity"].(map[string]any)["id"].(string)
	for _, c := range []hostile{
		{"NUL in session_token", "application/json", []byte(`{"session_token":"ory_st_\u0000"}`), 400},
		{"invalid UTF-8 session_token", "application/json", []byte("{\"session_token\":\"\xff\"}"), 400},
		{"2 MiB body", "application/json", jsonBody(map[string]any{"session_token": strings.Repeat("x", twoMiB)}), 413},
		{"nesting bomb", "application/json", []byte(nested(5000, `1`)), 400},
	} {
		status, res := send(t, "DELETE", b.public.URL+"/self-service/logout/api", c.contentType, c.body)
		wantError(t, "logout: "+c.name, status, c.want, res)
	}
	nulToken := base64.RawURLEncoding.EncodeToString([]byte(`{"t":"2024-01-01T00:00:00Z","i":"` + uuid.NewString() + `","x":"\u0000"}`))
	for _, q := range []struct{ name, url string }{
		{"admin list NUL page_token", b.admin.URL + "/admin/sessions?page_token=%00"},
		{"admin list forged page_token", b.admin.URL + "/admin/sessions?page_token=" + nulToken},
		{"admin list bad active", b.admin.URL + "/admin/sessions?active=%00"},
		{"admin list bad expand", b.admin.URL + "/admin/sessions?expand=%00"},
		{"admin get NUL id", b.admin.URL + "/admin/sessions/%00"},
		{"identity sessions NUL id", b.admin.URL + "/admin/identities/%00/sessions"},
		{"identity sessions forged page_token", b.admin.URL + "/admin/identities/" + identity + "/sessions?page_token=" + nulToken},
		{"my sessions forged page_token", b.public.URL + "/sessions?page_token=" + nulToken},
	} {
		status, res := send(t, "GET", q.url, "", nil, "X-Session-Token", token)
		wantError(t, q.name, status, 400, res)
	}
	if status, res := send(t, "GET", b.public.URL+"/sessions/whoami", "", nil, "X-Session-Token", "ory_st_\xff"); status != 401 {
		t.Fatalf("whoami with a token that is not UTF-8: %d %.300s", status, res["_raw"])
	}
	if b.whoami(t, token) != 200 {
		t.Fatal("the session stopped working")
	}
}
