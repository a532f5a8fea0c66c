package core

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/core/password"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/schemas"
)

// identityBody is Kratos' createIdentityBody and updateIdentityBody.
type identityBody struct {
	SchemaID            string                       `json:"schema_id"`
	Traits              json.RawMessage              `json:"traits"`
	State               identity.State               `json:"state"`
	MetadataPublic      json.RawMessage              `json:"metadata_public"`
	MetadataAdmin       json.RawMessage              `json:"metadata_admin"`
	ExternalID          *string                      `json:"external_id"`
	VerifiableAddresses []identity.VerifiableAddress `json:"verifiable_addresses"`
	RecoveryAddresses   []identity.RecoveryAddress   `json:"recovery_addresses"`
	OrganizationID      *uuid.UUID                   `json:"organization_id"`
	Credentials         *struct {
		Password *struct {
			Config struct {
				Password       string `json:"password"`
				HashedPassword string `json:"hashed_password"`
			} `json:"config"`
		} `json:"password"`
	} `json:"credentials"`
}

// decodeStrict decodes an admin body and refuses unknown fields, as Kratos' admin API does; the
// size cap (413), NUL, UTF-8 and nesting checks (400) are api's.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	return api.DecodeJSONStrict(w, r, v)
}

func identityID(r *http.Request) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return uuid.Nil, api.BadRequest().WithReason("The identity id %q is not a UUID.", r.PathValue("id"))
	}
	return id, nil
}

// adminError maps store errors of the admin API.
func adminError(err error) error {
	switch {
	case errors.Is(err, identity.ErrNotFound):
		return api.NotFound().WithReason("Unable to locate the resource")
	case errors.Is(err, identity.ErrDuplicateIdentifier), errors.Is(err, identity.ErrDuplicateExternalID):
		return api.Conflict().WithReason("This identity conflicts with another identity that already exists.")
	case errors.Is(err, identity.ErrTooLarge):
		return api.BadRequest().WithReason("A value of the identity is too large to be stored; shorten it.")
	case errors.Is(err, identity.ErrInvalidText):
		return api.BadRequest().WithReason("The identity contains text Latch cannot store (NUL characters or invalid UTF-8).")
	}
	var perr *password.PolicyError
	if errors.As(err, &perr) {
		return api.BadRequest().WithReason("The password does not meet the password policy: %s", perr.Text).WithCause(err)
	}
	var verr *schemas.ValidationError
	if errors.As(err, &verr) {
		e := api.BadRequest().WithReason("The identity's traits are invalid: %s", verr.Error())
		msgs := make([]map[string]any, 0, len(verr.Messages))
		for _, m := range verr.Messages {
			msgs = append(msgs, map[string]any{"instance_ptr": m.Pointer, "messages": []schemas.Message{m.Message}})
		}
		return e.WithDetail("messages", msgs)
	}
	return err
}

// build validates a body into an identity and its password credential (nil when none is given).
func (s *Service) build(ctx context.Context, b *identityBody, into *identity.Identity) (*identity.Credential, error) {
	if b.SchemaID == "" {
		b.SchemaID = s.config().DefaultSchemaID
	}
	schema, ok := s.schemas.Get(b.SchemaID)
	if !ok {
		return nil, api.BadRequest().WithReason("Identity schema %q does not exist.", b.SchemaID)
	}
	if b.State == "" {
		b.State = identity.StateActive
	}
	if !b.State.Valid() {
		return nil, api.BadRequest().WithReason("The state %q is invalid: use active or inactive.", b.State)
	}
	if err := checkDocuments(b.Traits, b.MetadataPublic, b.MetadataAdmin, b.ExternalID); err != nil {
		return nil, err
	}
	if isNull(b.Traits) {
		b.Traits = json.RawMessage(`{}`)
	}
	if err := schema.Validate(b.Traits); err != nil {
		return nil, adminError(err)
	}
	if b.ExternalID != nil && *b.ExternalID == "" {
		b.ExternalID = nil // "" names nothing; stored, a second "" would conflict with the first
	}
	into.SchemaID, into.Traits, into.State = schema.ID, compact(b.Traits), b.State
	into.MetadataPublic, into.MetadataAdmin, into.ExternalID = b.MetadataPublic, b.MetadataAdmin, b.ExternalID
	setAddresses(into, schema, into.Traits)
	if b.VerifiableAddresses != nil {
		into.VerifiableAddresses = b.VerifiableAddresses
	}
	if b.RecoveryAddresses != nil {
		into.RecoveryAddresses = b.RecoveryAddresses
	}
	identifiers, err := schema.PasswordIdentifiers(into.Traits)
	if err != nil {
		return nil, err
	}
	if b.Credentials == nil || b.Credentials.Password == nil {
		return &identity.Credential{Type: identity.CredentialsTypePassword, Identifiers: identifiers}, nil
	}
	pc := b.Credentials.Password.Config
	var hash []byte
	switch {
	case pc.HashedPassword != "":
		if !s.hasher.Supports([]byte(pc.HashedPassword)) {
			return nil, api.BadRequest().WithReason("The hashed_password uses an unsupported or malformed hash format.")
		}
		hash = []byte(pc.HashedPassword)
	case pc.Password != "":
		// An operator's password obeys the same policy as a user's: a too-long password would
		// otherwise be refused only by the hasher (bcrypt reads 72 bytes), a too-short one not at all.
		if err := s.config().PasswordPolicy.Check(pc.Password, identifiers); err != nil {
			return nil, adminError(err)
		}
		if hash, err = s.hasher.Hash(ctx, []byte(pc.Password)); err != nil {
			return nil, err
		}
	default:
		return nil, api.BadRequest().WithReason("credentials.password.config needs password or hashed_password.")
	}
	config, _ := json.Marshal(identity.PasswordConfig{HashedPassword: string(hash)})
	return &identity.Credential{Type: identity.CredentialsTypePassword, Identifiers: identifiers, Config: config}, nil
}

// checkDocuments refuses traits that are not a JSON object and metadata that is neither an object
// nor null, rechecks all three as api.CheckJSON does (a JSON Patch builds them from the stored
// identity and its operations, and copy and move can nest deeper than any request body), and
// refuses an external_id Postgres could not store. Parse web_hook replies need the same checks:
// they are admin input from elsewhere.
func checkDocuments(traits, metadataPublic, metadataAdmin json.RawMessage, externalID *string) error {
	for _, d := range []struct {
		name string
		doc  json.RawMessage
	}{{"traits", traits}, {"metadata_public", metadataPublic}, {"metadata_admin", metadataAdmin}} {
		if isNull(d.doc) {
			continue
		}
		if bytes.TrimSpace(d.doc)[0] != '{' {
			return api.BadRequest().WithReason("%s must be a JSON object.", d.name)
		}
		if err := api.CheckJSON(d.doc); err != nil {
			return err
		}
	}
	if externalID != nil {
		if len(*externalID) > maxExternalIDLength {
			// It is a unique index key: Postgres refuses keys past about 2.7 kB with an error.
			return api.BadRequest().WithReason("external_id must not exceed %d bytes.", maxExternalIDLength)
		}
		return api.CheckText("external_id", *externalID)
	}
	return nil
}

// isNull reports whether a raw JSON value is absent or null.
func isNull(m json.RawMessage) bool {
	m = bytes.TrimSpace(m)
	return len(m) == 0 || string(m) == "null"
}

func compact(m json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, m) != nil {
		return m
	}
	return b.Bytes()
}

// createIdentity serves POST /admin/identities.
func (s *Service) createIdentity(w http.ResponseWriter, r *http.Request) {
	var b identityBody
	if err := decodeStrict(w, r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	id := &identity.Identity{}
	cred, err := s.build(r.Context(), &b, id)
	if err != nil {
		s.fail(w, r, adminError(err))
		return
	}
	// Like Kratos, the password credential exists (holding the identifiers, which must be
	// unique) even when no password was given; such an identity cannot log in until one is set.
	setsPassword := cred.Config != nil
	if !setsPassword {
		cred.Config = json.RawMessage(`{}`)
	}
	err = s.inTx(r.Context(), func(st *step) error {
		if err := s.ids.Insert(r.Context(), st.tx, id, []identity.Credential{*cred}); err != nil {
			return err
		}
		ev, err := identityEvent(events.TypeIdentityCreated, id, nil, nil, nil)
		if err != nil {
			return err
		}
		st.record(ev)
		if setsPassword {
			// An import with a password or hash: receivers that follow credential changes
			// (a password-reuse check, a security log) see this one too.
			st.record(credentialsChanged(id.ID, []string{identity.CredentialsTypePassword}, nil, nil, nil))
		}
		return nil
	})
	if err != nil {
		s.fail(w, r, adminError(err))
		return
	}
	s.answerIdentity(w, r, http.StatusCreated, id, false)
}

// answerIdentity writes the admin view of an identity: metadata_admin and credentials (their
// secret config only with ?include_credential=password).
func (s *Service) answerIdentity(w http.ResponseWriter, r *http.Request, status int, id *identity.Identity, withConfig bool) {
	creds, err := s.ids.Credentials(r.Context(), s.db, id.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for k, c := range creds {
		if !withConfig {
			c.Config = nil
		}
		creds[k] = c
	}
	id.Credentials = creds
	if status == http.StatusCreated {
		w.Header().Set("Location", s.config().PublicBaseURL+"/admin/identities/"+id.ID.String())
	}
	api.WriteJSON(w, status, id)
}

// getIdentity serves GET /admin/identities/{id}.
func (s *Service) getIdentity(w http.ResponseWriter, r *http.Request) {
	uid, err := identityID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := s.ids.Get(r.Context(), s.db, uid)
	if err != nil {
		s.fail(w, r, adminError(err))
		return
	}
	s.answerIdentity(w, r, http.StatusOK, id, includes(r, "include_credential", identity.CredentialsTypePassword))
}

func includes(r *http.Request, key, value string) bool {
	for _, v := range r.URL.Query()[key] {
		for _, part := range strings.Split(v, ",") {
			if part == value {
				return true
			}
		}
	}
	return false
}

// listIdentities serves GET /admin/identities with keyset pagination.
func (s *Service) listIdentities(w http.ResponseWriter, r *http.Request) {
	if err := api.CheckQuery(r); err != nil {
		s.fail(w, r, err)
		return
	}
	page, err := api.ParsePage(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := IdentityQuery{PageSize: page.Size, Identifier: r.URL.Query().Get("credentials_identifier")}
	if page.Token != "" {
		var c identity.Cursor
		if err := api.DecodeToken(page.Token, &c); err != nil {
			s.fail(w, r, err)
			return
		}
		q.After = &c
	}
	for _, v := range r.URL.Query()["ids"] {
		id, err := uuid.Parse(v)
		if err != nil {
			s.fail(w, r, api.BadRequest().WithReason("ids must be UUIDs; %q is not.", v))
			return
		}
		q.IDs = append(q.IDs, id)
	}
	list, next, err := s.SearchIdentities(r.Context(), q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	token := ""
	if next != nil {
		token = api.EncodeToken(next)
	}
	api.SetLinkHeader(w, r, page.Size, token)
	if list == nil {
		list = []*identity.Identity{}
	}
	api.WriteJSON(w, http.StatusOK, list)
}

// updateIdentity serves PUT /admin/identities/{id}: a full replacement of the mutable fields.
func (s *Service) updateIdentity(w http.ResponseWriter, r *http.Request) {
	uid, err := identityID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var b identityBody
	if err := decodeStrict(w, r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	s.replace(w, r, uid, func(*identity.Identity) (*identityBody, error) { return &b, nil })
}

// patchIdentity serves PATCH /admin/identities/{id} with an RFC 6902 JSON Patch.
func (s *Service) patchIdentity(w http.ResponseWriter, r *http.Request) {
	uid, err := identityID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var ops []map[string]any
	if err := api.DecodeJSON(w, r, &ops); err != nil {
		s.fail(w, r, err)
		return
	}
	for _, op := range ops {
		path, _ := op["path"].(string)
		for _, denied := range []string{"/id", "/credentials", "/state_changed_at", "/created_at", "/updated_at", "/schema_url"} {
			if path == denied || strings.HasPrefix(path, denied+"/") {
				s.fail(w, r, api.BadRequest().WithReason("The JSON Patch may not change %s.", path))
				return
			}
		}
	}
	raw, _ := json.Marshal(ops)
	patch, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		s.fail(w, r, api.BadRequest().WithReason("The JSON Patch is invalid: %v", err))
		return
	}
	s.replace(w, r, uid, func(cur *identity.Identity) (*identityBody, error) {
		doc, _ := json.Marshal(cur)
		// copy operations could otherwise double the document per operation.
		opts := jsonpatch.NewApplyOptions()
		opts.AccumulatedCopySizeLimit = api.MaxBodyBytes
		out, err := patch.ApplyWithOptions(doc, opts)
		if err != nil {
			return nil, api.BadRequest().WithReason("The JSON Patch could not be applied: %v", err)
		}
		var b identityBody
		if err := json.Unmarshal(out, &b); err != nil {
			return nil, api.BadRequest().WithReason("The patched identity is invalid: %v", err)
		}
		b.Credentials = nil
		return &b, nil
	})
}

// replace locks the identity, computes its new body and writes it with its identifiers.
func (s *Service) replace(w http.ResponseWriter, r *http.Request, uid uuid.UUID, next func(*identity.Identity) (*identityBody, error)) {
	ctx := r.Context()
	var id *identity.Identity
	err := s.inTx(ctx, func(st *step) error {
		tx := st.tx
		cur, err := s.ids.GetForUpdate(ctx, tx, uid)
		if err != nil {
			return err
		}
		b, err := next(cur)
		if err != nil {
			return err
		}
		previous := cur.State
		cred, err := s.build(ctx, b, cur)
		if err != nil {
			return err
		}
		setsPassword := cred.Config != nil // only a body with credentials.password gives one
		if err := s.ids.Update(ctx, tx, cur); err != nil {
			return err
		}
		if err := s.syncPasswordCredential(ctx, tx, cur.ID, cred); err != nil {
			return err
		}
		id = cur
		if err := s.identityChanged(ctx, st, cur, previous, nil, nil, nil); err != nil {
			return err
		}
		if setsPassword {
			st.record(credentialsChanged(cur.ID, []string{identity.CredentialsTypePassword}, nil, nil, nil))
		}
		return nil
	})
	if err != nil {
		s.fail(w, r, adminError(err))
		return
	}
	s.answerIdentity(w, r, http.StatusOK, id, false)
}

// syncPasswordCredential keeps the password credential's identifiers in step with the traits
// and replaces its hash when a new one was given.
func (s *Service) syncPasswordCredential(ctx context.Context, tx pgx.Tx, identityID uuid.UUID, cred *identity.Credential) error {
	creds, err := s.ids.Credentials(ctx, tx, identityID)
	if err != nil {
		return err
	}
	if cred.Config == nil {
		cred.Config = json.RawMessage(`{}`)
		if existing, ok := creds[identity.CredentialsTypePassword]; ok {
			cred.Config = existing.Config
		}
	}
	return s.ids.PutCredential(ctx, tx, identityID, *cred)
}

// deleteIdentity serves DELETE /admin/identities/{id}; its credentials and sessions go with it.
func (s *Service) deleteIdentity(w http.ResponseWriter, r *http.Request) {
	uid, err := identityID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	err = s.inTx(r.Context(), func(st *step) error {
		id, err := s.ids.GetForUpdate(r.Context(), st.tx, uid)
		if err != nil {
			return err
		}
		// The sessions would go by cascade; deleting them here records session.revoked for
		// those that were active, in this transaction.
		if err := s.sessions.DeleteAllTx(r.Context(), st.tx, uid, events.ReasonIdentityDeleted); err != nil {
			return err
		}
		if err := s.ids.Delete(r.Context(), st.tx, uid); err != nil {
			return err
		}
		ev, err := identityEvent(events.TypeIdentityDeleted, id, nil, nil, nil)
		if err != nil {
			return err
		}
		st.record(ev)
		return nil
	})
	if err != nil {
		s.fail(w, r, adminError(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
