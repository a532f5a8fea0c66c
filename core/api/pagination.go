package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
)

// Page size limits, as Kratos' keyset pagination has them.
const (
	PageSizeDefault = 250
	MaxPageSize     = 1000
)

// PageRequest is a parsed page_size / page_token pair.
type PageRequest struct {
	Size  int
	Token string // opaque; "" is the first page
}

// ParsePage reads page_size and page_token from the query. A bad value is a 400.
func ParsePage(r *http.Request) (PageRequest, error) {
	q := r.URL.Query()
	if err := CheckText("page_token", q.Get("page_token")); err != nil {
		return PageRequest{}, err
	}
	p := PageRequest{Size: PageSizeDefault, Token: q.Get("page_token")}
	if s := q.Get("page_size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return p, BadRequest().WithReason("page_size must be a positive integer.")
		}
		p.Size = min(n, MaxPageSize)
	}
	return p, nil
}

// EncodeToken turns a keyset cursor into an opaque page token.
func EncodeToken(cursor any) string {
	b, _ := json.Marshal(cursor)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeToken reads a page token made by EncodeToken into cursor; a bad token is a 400.
func DecodeToken(token string, cursor any) error {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err == nil {
		// A token is client input too: a forged one must not carry NUL into a query.
		err = CheckJSON(b)
	}
	if err == nil {
		err = json.Unmarshal(b, cursor)
	}
	if err != nil {
		return BadRequest().WithReason("The page_token is invalid.")
	}
	return nil
}

// SetLinkHeader announces the first and, when there is one, the next page as Kratos does:
// Link: <...?page_size=N&page_token=T>; rel="next".
func SetLinkHeader(w http.ResponseWriter, r *http.Request, size int, nextToken string) {
	link := func(token, rel string) string {
		u := *r.URL
		q := u.Query()
		q.Set("page_size", strconv.Itoa(size))
		q.Del("page_token")
		if token != "" {
			q.Set("page_token", token)
		}
		u.RawQuery = q.Encode()
		return "<" + (&url.URL{Path: u.Path, RawQuery: u.RawQuery}).String() + `>; rel="` + rel + `"`
	}
	v := link("", "first")
	if nextToken != "" {
		v += "," + link(nextToken, "next")
	}
	w.Header().Set("Link", v)
}
