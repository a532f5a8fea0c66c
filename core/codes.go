package core

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/schemas"
)

// This file owns the one-time codes of recovery and verification flows. A code is six random
// digits; only HMAC-SHA256(secret, flow id | code) is stored, so a database dump cannot be tried
// offline, and a code is bound to its flow. The plaintext goes into exactly one place, the
// courier message queued in the same transaction; never a log, an event or an error.

// Code errors, Kratos' conditions. The caller commits the transaction useCode ran in for
// ErrCodeInvalid, ErrCodeUsed and ErrCodeExpired, so that the submission count sticks.
var (
	// ErrCodeInvalid: no code of the flow matches (Kratos answers the flow with 4060006).
	ErrCodeInvalid = errors.New("the code is invalid")
	// ErrCodeUsed: the code matched but was used already (Kratos: 400 and a new flow).
	ErrCodeUsed = errors.New("the code was already used")
	// ErrCodeExpired: the code matched but expired (Kratos treats it as unknown: 4060006).
	ErrCodeExpired = errors.New("the code expired")
	// ErrTooManySubmissions: more than max_submissions codes were submitted to the flow (the
	// right one counts too); Kratos answers 400 and a new flow.
	ErrTooManySubmissions = errors.New("the code was submitted too often")
)

// codeDigits is the length of a code (Kratos' CodeLength).
const codeDigits = 6

// flowCode is what a used code proves: who it was issued for and to which address (empty for an
// admin-issued recovery code, which proves no address).
type flowCode struct {
	IdentityID uuid.UUID
	Address    string
}

// newCode draws a uniformly random code of codeDigits digits from crypto/rand.
func newCode() (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return "", fmt.Errorf("draw code: %w", err)
	}
	return fmt.Sprintf("%0*d", codeDigits, n.Int64()), nil
}

// codeHMAC keys a code to its flow under secret.
func codeHMAC(secret []byte, flowID uuid.UUID, code string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(flowID[:])
	m.Write([]byte{'|'})
	m.Write([]byte(code))
	return m.Sum(nil)
}

// issueCode replaces f's codes with a new one for identityID and address, stored as its HMAC
// under the first code secret, of kind f.kind, expiring after the code method's lifespan. It
// returns the plaintext, which must only go into a courier message.
func (s *Service) issueCode(ctx context.Context, tx pgx.Tx, f *Flow, identityID uuid.UUID, address string) (code string, err error) {
	return s.issueCodeFor(ctx, tx, f, identityID, address, s.config().Code.Lifespan)
}

// issueCodeFor is issueCode with an explicit lifespan (the admin API's expires_in).
func (s *Service) issueCodeFor(ctx context.Context, tx pgx.Tx, f *Flow, identityID uuid.UUID, address string, lifespan time.Duration) (string, error) {
	cfg := s.config()
	if len(cfg.CodeSecrets) == 0 {
		return "", errors.New("issue code: no code secret configured")
	}
	code, err := newCode()
	if err != nil {
		return "", err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM selfservice_codes WHERE flow_id = $1`, f.ID); err != nil {
		return "", fmt.Errorf("delete earlier codes: %w", err)
	}
	now := time.Now().UTC()
	// INSERT ... SELECT so that a decoy (identityID uuid.Nil, see decoyCode) runs the same
	// statement, probing the same index, and inserts nothing.
	tag, err := tx.Exec(ctx, `INSERT INTO selfservice_codes (id, flow_id, kind, identity_id, address, code_hmac, expires_at, created_at)
		SELECT $1, $2, $3, i.id, $5, $6, $7, $8 FROM identities i WHERE i.id = $4`, uuid.New(), f.ID, string(f.kind), identityID, address,
		codeHMAC(cfg.CodeSecrets[0], f.ID, code), now.Add(lifespan), now)
	if err != nil {
		return "", fmt.Errorf("store code: %w", err)
	}
	if tag.RowsAffected() == 0 && identityID != uuid.Nil {
		return "", identity.ErrNotFound
	}
	return code, nil
}

// useCode counts one code submission to f (under the flow row's lock) and, within
// max_submissions, marks the flow's code that matches code used and returns what it proves.
// Every candidate is compared in constant time under every secret. Errors: ErrTooManySubmissions,
// ErrCodeInvalid, ErrCodeUsed, ErrCodeExpired; the caller commits tx on those so the count sticks.
func (s *Service) useCode(ctx context.Context, tx pgx.Tx, f *Flow, code string) (*flowCode, error) {
	cfg := s.config()
	var submissions int
	err := tx.QueryRow(ctx, `UPDATE selfservice_flows SET submissions = submissions + 1 WHERE id = $1 RETURNING submissions`,
		f.ID).Scan(&submissions)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, &FlowNotFoundError{Kind: f.kind}
	}
	if err != nil {
		return nil, fmt.Errorf("count code submission: %w", err)
	}
	f.submissions = submissions
	if submissions > cfg.Code.MaxSubmissions {
		return nil, ErrTooManySubmissions
	}
	rows, err := tx.Query(ctx, `SELECT id, identity_id, address, code_hmac, expires_at, used_at IS NOT NULL
		FROM selfservice_codes WHERE flow_id = $1 AND kind = $2 FOR UPDATE`, f.ID, string(f.kind))
	if err != nil {
		return nil, fmt.Errorf("load codes: %w", err)
	}
	type candidate struct {
		id        uuid.UUID
		fc        flowCode
		mac       []byte
		expiresAt time.Time
		used      bool
	}
	var cands []candidate
	for rows.Next() {
		var c candidate
		if err := rows.Scan(&c.id, &c.fc.IdentityID, &c.fc.Address, &c.mac, &c.expiresAt, &c.used); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load codes: %w", err)
		}
		cands = append(cands, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load codes: %w", err)
	}
	match := -1
	for _, secret := range cfg.CodeSecrets {
		supplied := codeHMAC(secret, f.ID, code)
		for i := range cands {
			if hmac.Equal(cands[i].mac, supplied) && match < 0 {
				match = i
			}
		}
	}
	switch {
	case match < 0:
		return nil, ErrCodeInvalid
	case cands[match].used:
		return nil, ErrCodeUsed
	case !time.Now().Before(cands[match].expiresAt):
		return nil, ErrCodeExpired
	}
	if _, err := tx.Exec(ctx, `UPDATE selfservice_codes SET used_at = now() WHERE id = $1`, cands[match].id); err != nil {
		return nil, fmt.Errorf("use code: %w", err)
	}
	fc := cands[match].fc
	return &fc, nil
}

// Courier template types (Kratos' names).
const (
	templateRecoveryValid       = "recovery_code_valid"
	templateRecoveryInvalid     = "recovery_code_invalid"
	templateVerificationValid   = "verification_code_valid"
	templateVerificationInvalid = "verification_code_invalid"
)

// queueCodeMessage queues, in tx, the e-mail of templateType to address with Kratos' template
// data: to, recovery_code or verification_code (the *_valid templates), identity (when there is
// one). id may be nil (the *_invalid templates). The message is a courier delivery, never an event.
func (s *Service) queueCodeMessage(ctx context.Context, tx pgx.Tx, templateType, address, code string, id *identity.Identity) error {
	data := map[string]any{"to": address}
	switch templateType {
	case templateRecoveryValid:
		data["recovery_code"] = code
	case templateVerificationValid:
		data["verification_code"] = code
	case templateRecoveryInvalid, templateVerificationInvalid:
	default:
		return fmt.Errorf("queue message: unknown template type %q", templateType)
	}
	m := events.Message{Type: "email", TemplateType: templateType, Recipient: address, TemplateData: data}
	if id != nil {
		data["identity"] = id.Public()
		m.IdentityID = &id.ID
	}
	if _, err := events.QueueMessage(ctx, tx, m); err != nil {
		return err
	}
	return nil
}

// decoyCode does, for an address no active identity has, the database work issueCode and
// queueCodeMessage do for a known one (draw and key a code, delete the flow's codes, insert
// the code and the message) inside a savepoint it rolls back, so that the answer takes as long
// and nothing is stored or sent. The flow's earlier codes stay deleted, as Kratos deletes them
// for every address.
func (s *Service) decoyCode(ctx context.Context, tx pgx.Tx, f *Flow, templateType, address string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM selfservice_codes WHERE flow_id = $1`, f.ID); err != nil {
		return fmt.Errorf("delete earlier codes: %w", err)
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return fmt.Errorf("decoy savepoint: %w", err)
	}
	defer func() { _ = sp.Rollback(ctx) }()
	code, err := s.issueCode(ctx, sp, f, uuid.Nil, address)
	if err != nil {
		return err
	}
	if err := s.queueCodeMessage(ctx, sp, templateType, address, code, nil); err != nil {
		return err
	}
	return sp.Rollback(ctx)
}

// codeEmailStep is the e-mail step both code flows share: it checks the typed address (a bad
// one is a *FlowError on a fresh emailForm), moves f to sent_email with the codeForm that asks
// for the code and, in the same transaction, calls send with the normalized address, unless a
// concurrent submit completed f first (FlowUsedError). f's UI is the answer.
func (s *Service) codeEmailStep(ctx context.Context, f *Flow, email string, emailForm func(action string) UI,
	codeForm func(action, email string) UI, send func(st *step, address string) error) error {
	action := s.action(f.kind, f.ID)
	if strings.TrimSpace(email) == "" {
		f.UI = emailForm(action)
		f.UI.addMessage("email", msgRequired("email"))
		return &FlowError{f}
	}
	if len(email) > maxAddressBytes || !strings.Contains(email, "@") {
		f.UI = emailForm(action)
		f.UI.setValues(map[string]any{"email": email[:min(len(email), maxAddressBytes)]})
		f.UI.addMessage("email", errorMessage(4000001, fmt.Sprintf("%q is not valid \"email\"", email[:min(len(email), 64)]), nil))
		return &FlowError{f}
	}
	address := schemas.NormalizeIdentifier(email)
	f.UI = codeForm(action, email)
	f.State, f.address = StateSentEmail, address
	ui, err := json.Marshal(f.UI)
	if err != nil {
		return fmt.Errorf("encode flow ui: %w", err)
	}
	return s.inTx(ctx, func(st *step) error {
		tag, err := st.tx.Exec(ctx, `UPDATE selfservice_flows SET state = $2, address = $3, ui = $4, updated_at = now()
			WHERE id = $1 AND state <> $5`, f.ID, f.State, address, ui, StatePassedChallenge)
		if err != nil {
			return fmt.Errorf("update %s flow: %w", f.kind, err)
		}
		if tag.RowsAffected() == 0 {
			return &FlowUsedError{Flow: f}
		}
		allowed, err := s.countCodeMail(ctx, st.tx, address)
		if err != nil || !allowed {
			// Over the address's limit the answer stays the same (sent_email), for known and
			// unknown addresses alike, so it tells nobody whether the address has an account.
			return err
		}
		return send(st, address)
	})
}

// countCodeMailSQL counts one code mail against its address's window, restarting the count
// when the window is over, and returns the count including this one. The row lock serializes
// concurrent asks for one address in every process.
const countCodeMailSQL = `
INSERT INTO code_mail_throttle AS t (key, sent, window_start, expires_at)
VALUES ($1, 1, now(), now() + $2::interval)
ON CONFLICT (key) DO UPDATE SET
    sent         = CASE WHEN t.window_start <= now() - $2::interval THEN 1 ELSE t.sent + 1 END,
    window_start = CASE WHEN t.window_start <= now() - $2::interval THEN now() ELSE t.window_start END,
    expires_at   = CASE WHEN t.window_start <= now() - $2::interval THEN now() + $2::interval ELSE t.expires_at END
RETURNING sent`

// countCodeMail counts an ask for a code mail to address, in tx, and reports whether the mail
// may go: no more than max_messages_per_address per message_window, whichever flows ask. Asks
// past the limit still count, so a flood keeps its address closed until the window ends.
func (s *Service) countCodeMail(ctx context.Context, tx pgx.Tx, address string) (bool, error) {
	cfg := s.config().Code
	key := sha256.Sum256([]byte("code-mail\x00" + address))
	var sent int
	if err := tx.QueryRow(ctx, countCodeMailSQL, key[:], cfg.MessageWindow).Scan(&sent); err != nil {
		return false, fmt.Errorf("count code mail: %w", err)
	}
	if sent > cfg.MaxMessagesPerAddress {
		s.log.WarnContext(ctx, "code mail refused: the address had its limit of mails in this window",
			"limit", cfg.MaxMessagesPerAddress, "window", cfg.MessageWindow)
		return false, nil
	}
	return true, nil
}
