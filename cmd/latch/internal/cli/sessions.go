package cli

import (
	"context"
	"encoding/json"
	"net/http"
)

// sessionsRevoke revokes sessions by id (DELETE /admin/sessions/{id}: the row stays, inactive),
// or, with --identity, every session of each identity given (DELETE
// /admin/identities/{id}/sessions: "sign this user out everywhere").
func sessionsRevoke(ctx context.Context, c *command) error {
	byIdentity := c.fs.Bool("identity", false, "the ids are identity ids: revoke every session of each")
	pos, err := c.parse()
	if err != nil {
		return err
	}
	what, kind, route, outcome := "session id", "session", "/admin/sessions/%s", "revoked"
	if *byIdentity {
		what, kind, route, outcome = "identity id", "identity", "/admin/identities/%s/sessions", "all sessions revoked"
	}
	ids, err := c.ids(pos, what)
	if err != nil {
		return err
	}
	if err := c.connect(); err != nil {
		return err
	}
	done, failed := c.eachID(ctx, ids, kind, func(id string) (json.RawMessage, error) {
		if _, err := c.client.Do(ctx, http.MethodDelete, pathf(route, id), nil, nil); err != nil {
			return nil, err
		}
		raw, _ := json.Marshal(id)
		return raw, nil
	})
	return finish(c.showDone(done, outcome), failed)
}
