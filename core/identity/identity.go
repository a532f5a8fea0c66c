package identity

import (
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// State says whether an identity may sign in. Only active identities get or keep sessions.
type State string

// The two states Kratos knows.
const (
	StateActive   State = "active"
	StateInactive State = "inactive"
)

// Valid reports whether s is a state Latch accepts from clients.
func (s State) Valid() bool { return s == StateActive || s == StateInactive }

// CredentialsTypePassword is the only credential type Latch issues today.
const CredentialsTypePassword = "password"

// Identity is one user, in Kratos' JSON shape. Fields that only admins may see (MetadataAdmin,
// Credentials) are cleared by Public before an identity leaves through the public API.
type Identity struct {
	ID                  uuid.UUID             `json:"id"`
	SchemaID            string                `json:"schema_id"`
	SchemaURL           string                `json:"schema_url"`
	State               State                 `json:"state"`
	StateChangedAt      *time.Time            `json:"state_changed_at,omitempty"`
	Traits              json.RawMessage       `json:"traits"`
	VerifiableAddresses []VerifiableAddress   `json:"verifiable_addresses"`
	RecoveryAddresses   []RecoveryAddress     `json:"recovery_addresses"`
	MetadataPublic      json.RawMessage       `json:"metadata_public"`
	MetadataAdmin       json.RawMessage       `json:"metadata_admin,omitempty"`
	ExternalID          *string               `json:"external_id,omitempty"`
	OrganizationID      *uuid.UUID            `json:"organization_id"`
	Credentials         map[string]Credential `json:"credentials,omitempty"`
	CreatedAt           time.Time             `json:"created_at"`
	UpdatedAt           time.Time             `json:"updated_at"`
}

// VerifiableAddress is an address (email, phone) that a verification flow could confirm.
// Latch records them from the schema's `verification.via`; it does not send codes yet.
type VerifiableAddress struct {
	ID         uuid.UUID  `json:"id"`
	Value      string     `json:"value"`
	Verified   bool       `json:"verified"`
	Via        string     `json:"via"`
	Status     string     `json:"status"`
	VerifiedAt *time.Time `json:"verified_at"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// RecoveryAddress is an address a recovery flow could use, from the schema's `recovery.via`.
type RecoveryAddress struct {
	ID        uuid.UUID `json:"id"`
	Value     string    `json:"value"`
	Via       string    `json:"via"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Credential is one way to authenticate. Config holds the secret material (for passwords:
// {"hashed_password": ...}) and is only shown to admins who ask for it with include_credential.
type Credential struct {
	ID          uuid.UUID       `json:"-"`
	Type        string          `json:"type"`
	Identifiers []string        `json:"identifiers"`
	Config      json.RawMessage `json:"config,omitempty"`
	Version     int             `json:"version"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

// PasswordConfig is the Config of a password credential, in Kratos' shape.
type PasswordConfig struct {
	HashedPassword string `json:"hashed_password"`
}

// Public returns a copy fit for the public API: no admin metadata, no credentials.
func (i *Identity) Public() *Identity {
	c := *i
	c.MetadataAdmin = nil
	c.Credentials = nil
	return &c
}

// Active reports whether the identity may hold a session.
func (i *Identity) Active() bool { return i.State == StateActive }

// SchemaURL is where Kratos says an identity's schema can be fetched: the public base URL
// followed by /schemas/ and the base64url-encoded schema id.
func SchemaURL(publicBaseURL, schemaID string) string {
	return publicBaseURL + "/schemas/" + base64.RawURLEncoding.EncodeToString([]byte(schemaID))
}
