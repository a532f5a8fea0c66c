package latchtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Register signs a new identity up through a native registration flow on publicURL (password
// method, traits {email}), as a native app would, and returns the identity's id. It fails unless
// the answer is 200 with a session token and an identity id: the suites configure the session
// hook. hc nil means a client with a 15 s timeout and no cookie jar.
func Register(ctx context.Context, hc *http.Client, publicURL, email, password string) (string, error) {
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	var flow struct {
		ID string `json:"id"`
	}
	if err := DoJSON(ctx, hc, http.MethodGet, publicURL+"/self-service/registration/api", nil, http.StatusOK, &flow); err != nil {
		return "", err
	}
	var res struct {
		SessionToken string `json:"session_token"`
		Identity     struct {
			ID string `json:"id"`
		} `json:"identity"`
	}
	body := map[string]any{
		"method":   "password",
		"password": password,
		"traits":   map[string]any{"email": email},
	}
	u := publicURL + "/self-service/registration?flow=" + url.QueryEscape(flow.ID)
	if err := DoJSON(ctx, hc, http.MethodPost, u, body, http.StatusOK, &res); err != nil {
		return "", err
	}
	if res.SessionToken == "" || res.Identity.ID == "" {
		return "", fmt.Errorf("registration of %s: want session_token and identity.id, got %+v", email, res)
	}
	return res.Identity.ID, nil
}

// DoJSON sends in as JSON (when not nil) with hc and decodes the answer into out (when not nil)
// if its status is want, any 2xx when want is 0. Otherwise it returns an error that shows the
// status and the start of the body.
func DoJSON(ctx context.Context, hc *http.Client, method, u string, in any, want int, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if ok := resp.StatusCode == want || (want == 0 && resp.StatusCode/100 == 2); !ok {
		return fmt.Errorf("%s %s: want HTTP %d, got %s: %s", method, u, want, resp.Status, Clip(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode %T: %v; body: %s", method, u, out, err, Clip(b))
		}
	}
	return nil
}

// Clip trims a response body for a failure message: its first 2 KiB, without surrounding space.
func Clip(b []byte) string {
	b = bytes.TrimSpace(b)
	const max = 2 << 10
	if len(b) > max {
		return string(b[:max]) + fmt.Sprintf("... (%d bytes more)", len(b)-max)
	}
	return string(b)
}
