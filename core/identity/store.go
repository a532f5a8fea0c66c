package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Errors the store reports. Callers match them with errors.Is; pgx errors never leave this package.
var (
	ErrNotFound            = errors.New("identity not found")
	ErrDuplicateIdentifier = errors.New("an identity with the same identifier exists already")
	ErrDuplicateExternalID = errors.New("an identity with the same external_id exists already")
	// ErrInvalidText means a value holds text Postgres cannot store (a NUL character, invalid
	// UTF-8). Decoders refuse such input first; this is the backstop that keeps a value that
	// slipped through (a hook's answer, a new field) a 400 instead of a 500.
	ErrInvalidText = errors.New("text with NUL characters or invalid UTF-8 cannot be stored")
	// ErrTooLarge means a value is too large for the index it belongs to (an identifier of
	// kilobytes that no schema limited).
	ErrTooLarge = errors.New("a value is too large to be stored")
)

// DB is what the store needs from a pool or a transaction, so that every method works inside the
// caller's transaction (identity, credentials, session and events commit together).
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store reads and writes identities. It knows the public base URL only to fill SchemaURL.
type Store struct {
	publicBaseURL string
}

// NewStore returns a store whose identities point their schema_url at publicBaseURL.
func NewStore(publicBaseURL string) *Store {
	return &Store{publicBaseURL: strings.TrimRight(publicBaseURL, "/")}
}

// Columns lists the identity columns in the order Targets scans them, prefixed with alias, so
// that other packages can join the identity row into their own query (whoami does).
func Columns(alias string) string {
	cols := []string{"id", "schema_id", "state", "state_changed_at", "traits", "verifiable_addresses",
		"recovery_addresses", "metadata_public", "metadata_admin", "external_id", "created_at", "updated_at"}
	for n, c := range cols {
		cols[n] = alias + "." + c
	}
	return strings.Join(cols, ", ")
}

// Targets returns scan destinations for Columns. Call Finish after the scan.
func Targets(i *Identity) []any {
	return []any{&i.ID, &i.SchemaID, &i.State, &i.StateChangedAt, &i.Traits, &i.VerifiableAddresses,
		&i.RecoveryAddresses, &i.MetadataPublic, &i.MetadataAdmin, &i.ExternalID, &i.CreatedAt, &i.UpdatedAt}
}

// SchemaURL is the schema_url of identities with the given schema.
func (s *Store) SchemaURL(schemaID string) string { return SchemaURL(s.publicBaseURL, schemaID) }

// Finish fills what is derived rather than stored.
func (s *Store) Finish(i *Identity) {
	i.SchemaURL = SchemaURL(s.publicBaseURL, i.SchemaID)
	// pgx scans timestamptz in the local zone; the API speaks UTC whatever the host's TZ.
	i.CreatedAt, i.UpdatedAt = i.CreatedAt.UTC(), i.UpdatedAt.UTC()
	if i.StateChangedAt != nil {
		t := i.StateChangedAt.UTC()
		i.StateChangedAt = &t
	}
	if i.VerifiableAddresses == nil {
		i.VerifiableAddresses = []VerifiableAddress{}
	}
	if i.RecoveryAddresses == nil {
		i.RecoveryAddresses = []RecoveryAddress{}
	}
}

// Get loads one identity, without credentials.
func (s *Store) Get(ctx context.Context, db DB, id uuid.UUID) (*Identity, error) {
	var i Identity
	err := db.QueryRow(ctx, `SELECT `+Columns("i")+` FROM identities i WHERE i.id = $1`, id).Scan(Targets(&i)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, translate(err, "load identity")
	}
	s.Finish(&i)
	return &i, nil
}

// GetForUpdate loads one identity and locks its row until the transaction ends, so that two
// concurrent updates of one identity apply one after the other.
func (s *Store) GetForUpdate(ctx context.Context, tx pgx.Tx, id uuid.UUID) (*Identity, error) {
	var i Identity
	err := tx.QueryRow(ctx, `SELECT `+Columns("i")+` FROM identities i WHERE i.id = $1 FOR UPDATE`, id).Scan(Targets(&i)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("lock identity: %w", err)
	}
	s.Finish(&i)
	return &i, nil
}

// FindByIdentifier finds the identity owning a credential identifier (already normalised) and
// returns it with that credential.
func (s *Store) FindByIdentifier(ctx context.Context, db DB, credType, identifier string) (*Identity, *Credential, error) {
	return s.scanFound(db.QueryRow(ctx, findByIdentifierSQL, credType, identifier))
}

// QueueFindByIdentifier queues FindByIdentifier's query on b; found gets its answer when b's
// results are read, and what found returns is the query's error in b's results.
func (s *Store) QueueFindByIdentifier(b *pgx.Batch, credType, identifier string, found func(*Identity, *Credential, error) error) {
	b.Queue(findByIdentifierSQL, credType, identifier).QueryRow(func(row pgx.Row) error {
		return found(s.scanFound(row))
	})
}

var findByIdentifierSQL = `SELECT ` + Columns("i") + `, c.id, c.type, c.config, c.version, c.created_at, c.updated_at
	FROM identity_credential_identifiers ci
	JOIN identity_credentials c ON c.id = ci.credential_id
	JOIN identities i ON i.id = ci.identity_id
	WHERE ci.type = $1 AND ci.identifier = $2`

func (s *Store) scanFound(row pgx.Row) (*Identity, *Credential, error) {
	var i Identity
	var c Credential
	err := row.Scan(append(Targets(&i), &c.ID, &c.Type, &c.Config, &c.Version, &c.CreatedAt, &c.UpdatedAt)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, translate(err, "find identity by identifier")
	}
	s.Finish(&i)
	return &i, &c, nil
}

// Credentials loads every credential of an identity with its identifiers, keyed by type.
func (s *Store) Credentials(ctx context.Context, db DB, identityID uuid.UUID) (map[string]Credential, error) {
	rows, err := db.Query(ctx, `SELECT c.id, c.type, c.config, c.version, c.created_at, c.updated_at,
			coalesce(array_agg(ci.identifier ORDER BY ci.identifier) FILTER (WHERE ci.identifier IS NOT NULL), '{}')
		FROM identity_credentials c
		LEFT JOIN identity_credential_identifiers ci ON ci.credential_id = c.id
		WHERE c.identity_id = $1
		GROUP BY c.id`, identityID)
	if err != nil {
		return nil, fmt.Errorf("load credentials: %w", err)
	}
	creds := map[string]Credential{}
	for rows.Next() {
		var c Credential
		if err := rows.Scan(&c.ID, &c.Type, &c.Config, &c.Version, &c.CreatedAt, &c.UpdatedAt, &c.Identifiers); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan credential: %w", err)
		}
		creds[c.Type] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load credentials: %w", err)
	}
	return creds, nil
}

// Queuer is a transaction that holds statements back and sends them with its next round trip
// (core's step transaction is one). Writes whose only answer is an error queue on it; that
// error then comes back from the statement or the commit they travel with, and the caller's
// transaction must be rolled back, as after any failed write.
type Queuer interface {
	// Queue returns the batch that the transaction's next round trip sends first.
	Queue() *pgx.Batch
}

// batchFor returns where tx's writes go: the batch tx sends next when it is a Queuer (send is
// then nil), or a batch of their own and the function that sends it.
func batchFor(tx pgx.Tx) (b *pgx.Batch, send func(ctx context.Context) error) {
	if q, ok := tx.(Queuer); ok {
		return q.Queue(), nil
	}
	b = &pgx.Batch{}
	return b, func(ctx context.Context) error { return tx.SendBatch(ctx, b).Close() }
}

// queueExec queues sql on b with its error translated (see translate).
func queueExec(b *pgx.Batch, what, sql string, args ...any) {
	b.Queue(sql, args...).Fn = func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return translate(err, what)
		}
		return nil
	}
}

// Insert writes a new identity and its credentials (with their identifiers). ID, timestamps and
// address ids are filled in when missing. An identifier that is taken yields
// ErrDuplicateIdentifier; the caller's transaction must then be rolled back.
//
// Its statements need no answer, so they go out in one round trip, or, on a Queuer, with the
// transaction's next one; their errors (ErrDuplicateIdentifier, ErrDuplicateExternalID, ...)
// then come back from there.
func (s *Store) Insert(ctx context.Context, tx pgx.Tx, i *Identity, creds []Credential) error {
	now := time.Now().UTC().Truncate(time.Microsecond)
	if i.ID == uuid.Nil {
		i.ID = uuid.New()
	}
	if i.State == "" {
		i.State = StateActive
	}
	i.CreatedAt, i.UpdatedAt = now, now
	i.StateChangedAt = &now
	stampAddresses(i, now)
	b, send := batchFor(tx)
	queueExec(b, "insert identity", `INSERT INTO identities (id, schema_id, state, state_changed_at, traits,
			verifiable_addresses, recovery_addresses, metadata_public, metadata_admin, external_id, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)`,
		i.ID, i.SchemaID, i.State, i.StateChangedAt, []byte(i.Traits), i.VerifiableAddresses, i.RecoveryAddresses,
		nullJSON(i.MetadataPublic), nullJSON(i.MetadataAdmin), i.ExternalID, now)
	for _, c := range creds {
		// A new identity has no credentials and no identifiers yet: plain INSERTs, and an
		// identifier another identity owns violates the primary key (ErrDuplicateIdentifier),
		// after waiting for a concurrent registration of it to commit or roll back.
		credID := uuid.New()
		queueExec(b, "write credential", `INSERT INTO identity_credentials (id, identity_id, type, config, version, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $6)`, credID, i.ID, c.Type, []byte(c.Config), c.Version, now)
		if len(c.Identifiers) > 0 {
			queueExec(b, "write identifiers", `INSERT INTO identity_credential_identifiers (type, identifier, identity_id, credential_id)
				SELECT DISTINCT $1::text, unnest($2::text[]), $3::uuid, $4::uuid`, c.Type, c.Identifiers, i.ID, credID)
		}
	}
	if send != nil {
		if err := send(ctx); err != nil {
			return err
		}
	}
	s.Finish(i)
	return nil
}

// Update writes every mutable field of an identity. When the state changes, state_changed_at is
// moved forward. It does not touch credentials; see PutCredential.
func (s *Store) Update(ctx context.Context, tx pgx.Tx, i *Identity) error {
	now := time.Now().UTC().Truncate(time.Microsecond)
	stampAddresses(i, now)
	var changedAt *time.Time
	err := tx.QueryRow(ctx, `UPDATE identities SET schema_id = $2,
			state_changed_at = CASE WHEN state <> $3 THEN $10 ELSE state_changed_at END,
			state = $3, traits = $4, verifiable_addresses = $5, recovery_addresses = $6,
			metadata_public = $7, metadata_admin = $8, external_id = $9, updated_at = $10
		WHERE id = $1 RETURNING state_changed_at`,
		i.ID, i.SchemaID, i.State, []byte(i.Traits), i.VerifiableAddresses, i.RecoveryAddresses,
		nullJSON(i.MetadataPublic), nullJSON(i.MetadataAdmin), i.ExternalID, now).Scan(&changedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return translate(err, "update identity")
	}
	i.UpdatedAt, i.StateChangedAt = now, changedAt
	s.Finish(i)
	return nil
}

// SetState writes an identity's state, and moves state_changed_at forward when it changes; it
// writes nothing else (updated_at aside), so a concurrent change of traits survives. The caller
// holds the row's lock (GetForUpdate) and read the previous state under it.
func (s *Store) SetState(ctx context.Context, db DB, i *Identity, state State) error {
	now := time.Now().UTC().Truncate(time.Microsecond)
	var changedAt *time.Time
	err := db.QueryRow(ctx, `UPDATE identities SET
			state_changed_at = CASE WHEN state <> $2 THEN $3 ELSE state_changed_at END,
			state = $2, updated_at = $3
		WHERE id = $1 RETURNING state_changed_at`, i.ID, state, now).Scan(&changedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return translate(err, "set identity state")
	}
	i.State, i.UpdatedAt, i.StateChangedAt = state, now, changedAt
	s.Finish(i)
	return nil
}

// PutCredential creates or replaces the identity's credential of c.Type and sets its identifiers
// to exactly c.Identifiers.
func (s *Store) PutCredential(ctx context.Context, tx pgx.Tx, identityID uuid.UUID, c Credential) error {
	return s.putCredential(ctx, tx, identityID, c, time.Now().UTC().Truncate(time.Microsecond))
}

// putCredential writes c over the identity's credential of its type, if it has one.
func (s *Store) putCredential(ctx context.Context, tx pgx.Tx, identityID uuid.UUID, c Credential, now time.Time) error {
	var credID uuid.UUID
	err := tx.QueryRow(ctx, `INSERT INTO identity_credentials (id, identity_id, type, config, version, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $6)
		ON CONFLICT (identity_id, type) DO UPDATE SET config = excluded.config, version = excluded.version, updated_at = excluded.updated_at
		RETURNING id`, uuid.New(), identityID, c.Type, []byte(c.Config), c.Version, now).Scan(&credID)
	if err != nil {
		return translate(err, "write credential")
	}
	if _, err := tx.Exec(ctx, `DELETE FROM identity_credential_identifiers WHERE credential_id = $1 AND NOT (identifier = ANY($2))`,
		credID, c.Identifiers); err != nil {
		return translate(err, "replace identifiers")
	}
	_, err = tx.Exec(ctx, `INSERT INTO identity_credential_identifiers (type, identifier, identity_id, credential_id)
		SELECT $1, unnest($2::text[]), $3, $4
		ON CONFLICT (type, identifier) DO UPDATE SET type = excluded.type
		WHERE identity_credential_identifiers.credential_id = excluded.credential_id`,
		c.Type, c.Identifiers, identityID, credID)
	if err != nil {
		return translate(err, "write identifiers")
	}
	// The upsert above only touches rows this credential already owns; a row owned by someone
	// else is left alone, so count what this credential owns now to detect a taken identifier.
	var owned int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM identity_credential_identifiers WHERE credential_id = $1`, credID).Scan(&owned); err != nil {
		return translate(err, "count identifiers")
	}
	if owned != len(c.Identifiers) {
		return ErrDuplicateIdentifier
	}
	return nil
}

// Delete removes an identity; credentials and sessions go with it (ON DELETE CASCADE).
func (s *Store) Delete(ctx context.Context, db DB, id uuid.UUID) error {
	tag, err := db.Exec(ctx, `DELETE FROM identities WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("delete identity: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// ListParams selects a page of identities in (created_at, id) order.
type ListParams struct {
	PageSize   int
	After      *Cursor // keyset position; nil starts at the beginning
	IDs        []uuid.UUID
	Identifier string // credentials_identifier filter, exact match after normalisation
	// State keeps only identities in that state ("": both). Inactive identities have a partial
	// index of their own (migration 00011), so a page of them never walks the active ones.
	State State
	// Newest lists newest first, (created_at, id) descending, After then being the position
	// to continue below: what an operator looking for a recent sign-up wants.
	Newest bool
}

// Cursor is a keyset pagination position.
type Cursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// List returns up to PageSize identities and the cursor of the next page (nil on the last page).
func (s *Store) List(ctx context.Context, db DB, p ListParams) ([]*Identity, *Cursor, error) {
	q, args := listSQL(p)
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, nil, translate(err, "list identities")
	}
	defer rows.Close()
	var out []*Identity
	for rows.Next() {
		var i Identity
		if err := rows.Scan(Targets(&i)...); err != nil {
			return nil, nil, fmt.Errorf("scan identity: %w", err)
		}
		s.Finish(&i)
		out = append(out, &i)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, translate(err, "list identities")
	}
	var next *Cursor
	if len(out) > p.PageSize {
		out = out[:p.PageSize]
		last := out[len(out)-1]
		next = &Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	return out, next, nil
}

// listSQL is List's query for p (one more row than the page, to tell whether another follows).
func listSQL(p ListParams) (string, []any) {
	var where []string
	var args []any
	add := func(cond string, v ...any) {
		for _, a := range v {
			args = append(args, a)
			cond = strings.Replace(cond, "?", fmt.Sprintf("$%d", len(args)), 1)
		}
		where = append(where, cond)
	}
	if p.After != nil {
		if p.Newest {
			add("(i.created_at, i.id) < (?, ?)", p.After.CreatedAt, p.After.ID)
		} else {
			add("(i.created_at, i.id) > (?, ?)", p.After.CreatedAt, p.After.ID)
		}
	}
	if p.State != "" {
		add("i.state = ?", p.State)
	}
	if len(p.IDs) > 0 {
		add("i.id = ANY(?)", p.IDs)
	}
	if p.Identifier != "" {
		// The type makes the primary key (type, identifier) usable: without it Postgres (before
		// 18's skip scans) reads every identifier. Password is the only type with identifiers.
		add("i.id IN (SELECT identity_id FROM identity_credential_identifiers WHERE type = ? AND identifier = ?)",
			CredentialsTypePassword, p.Identifier)
	}
	q := `SELECT ` + Columns("i") + ` FROM identities i`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, p.PageSize+1)
	order := "i.created_at, i.id"
	if p.Newest {
		order = "i.created_at DESC, i.id DESC"
	}
	q += fmt.Sprintf(" ORDER BY %s LIMIT $%d", order, len(args))
	return q, args
}

// stampAddresses gives new addresses an id and timestamps, keeping those of addresses that
// already have them (an update re-derives addresses from traits).
func stampAddresses(i *Identity, now time.Time) {
	for n := range i.VerifiableAddresses {
		a := &i.VerifiableAddresses[n]
		if a.ID == uuid.Nil {
			a.ID, a.CreatedAt = uuid.New(), now
		}
		if a.Status == "" {
			a.Status = "pending"
		}
		a.UpdatedAt = now
	}
	for n := range i.RecoveryAddresses {
		a := &i.RecoveryAddresses[n]
		if a.ID == uuid.Nil {
			a.ID, a.CreatedAt = uuid.New(), now
		}
		a.UpdatedAt = now
	}
	if i.VerifiableAddresses == nil {
		i.VerifiableAddresses = []VerifiableAddress{}
	}
	if i.RecoveryAddresses == nil {
		i.RecoveryAddresses = []RecoveryAddress{}
	}
}

// nullJSON stores an absent or JSON-null document as SQL NULL.
func nullJSON(m json.RawMessage) any {
	if len(m) == 0 || string(m) == "null" {
		return nil
	}
	return []byte(m)
}

// translate turns unique violations into the store's sentinels.
func translate(err error, what string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch pgErr.Code {
	case "23505": // unique_violation
		switch pgErr.ConstraintName {
		case "identity_credential_identifiers_pkey":
			return ErrDuplicateIdentifier
		case "identities_external_id_key":
			return ErrDuplicateExternalID
		}
	case "22P05", "22021": // untranslatable_character (\u0000 in jsonb), character_not_in_repertoire (NUL in text)
		return ErrInvalidText
	case "54000": // program_limit_exceeded: a value too large for its index (a huge identifier)
		return ErrTooLarge
	}
	return fmt.Errorf("%s: %w", what, err)
}

// SetCredentialConfigIf replaces a credential's secret material (a re-hashed password) only
// while it still holds old, the material the caller read before hashing: a password an admin
// set in the meantime is never overwritten. It reports whether the row was changed.
func (s *Store) SetCredentialConfigIf(ctx context.Context, tx pgx.Tx, credentialID uuid.UUID, old, config json.RawMessage) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE identity_credentials SET config = $3, updated_at = now() WHERE id = $1 AND config = $2`,
		credentialID, []byte(old), []byte(config))
	if err != nil {
		return false, fmt.Errorf("update credential: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// GetForShare loads one identity and holds a share lock on its row until the transaction ends:
// concurrent admin updates wait for the transaction, so a step that must not act on a
// deactivated identity (a login issuing a session) sees the state it commits against.
func (s *Store) GetForShare(ctx context.Context, tx pgx.Tx, id uuid.UUID) (*Identity, error) {
	var i Identity
	err := tx.QueryRow(ctx, `SELECT `+Columns("i")+` FROM identities i WHERE i.id = $1 FOR SHARE`, id).Scan(Targets(&i)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, translate(err, "lock identity")
	}
	s.Finish(&i)
	return &i, nil
}

// SetCredentialConfig replaces a credential's secret material (a re-hashed password) and leaves
// its identifiers alone.
func (s *Store) SetCredentialConfig(ctx context.Context, db DB, credentialID uuid.UUID, config json.RawMessage) error {
	tag, err := db.Exec(ctx, `UPDATE identity_credentials SET config = $2, updated_at = now() WHERE id = $1`, credentialID, []byte(config))
	if err != nil {
		return fmt.Errorf("update credential: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
