package password

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/agnivade/levenshtein"
)

// Kratos UI message ids (ory/kratos text/id.go) a policy violation carries, so the HTTP layer and
// clients written against Kratos can react to them by id.
const (
	MessageIDPasswordTooSimilar int64 = 4000031
	MessageIDPasswordMinLength  int64 = 4000032
	MessageIDPasswordMaxLength  int64 = 4000033
)

// MinLengthDefault is selfservice.methods.password.config.min_password_length's (Kratos').
const MinLengthDefault = 8

// Similarity rule constants, as in Kratos' default password validator.
const (
	minIdentifierDistance   = 5   // a Levenshtein distance below this is too similar
	maxCommonSubstringRatio = 0.5 // longest common substring / password length above this is too similar
	maxSimilarityRunes      = 256 // longer strings skip the check; its cost is quadratic
)

// Policy is the password policy of `selfservice.methods.password.config`, minus the
// haveibeenpwned check (a network call, owned elsewhere if at all). It is checked at registration
// and when a password is changed in settings, never at login: a stored password stays usable
// when the policy tightens.
//
// The zero Policy requires 8 bytes and does not check similarity; Kratos enables the similarity
// check by default, so start from DefaultPolicy.
type Policy struct {
	// MinLength is `min_password_length`, in bytes as Kratos counts it. Zero or less means 8.
	MinLength int
	// IdentifierSimilarityCheck is `identifier_similarity_check_enabled` (Kratos default true).
	IdentifierSimilarityCheck bool
	// MaxBytes is the longest password accepted, 0 for no limit. Set it to
	// BcryptMaxPasswordBytes when hashers.algorithm is bcrypt: Kratos has no other maximum.
	MaxBytes int
}

// DefaultPolicy is Kratos' default policy (for the bcrypt limit, set MaxBytes too), so the config
// loader only has to override what is configured.
func DefaultPolicy() Policy {
	return Policy{MinLength: MinLengthDefault, IdentifierSimilarityCheck: true}
}

// PolicyError is a password rejected by the policy, carrying a Kratos UI message (id, English
// text, context) so the HTTP layer can render exactly what Kratos would.
type PolicyError struct {
	ID      int64
	Text    string
	Context map[string]any
}

// Error returns the id and text, for logs.
func (e *PolicyError) Error() string {
	return fmt.Sprintf("password policy violation %d: %s", e.ID, e.Text)
}

func newMinLengthError(minLength, actual int) *PolicyError {
	return &PolicyError{
		ID:      MessageIDPasswordMinLength,
		Text:    fmt.Sprintf("The password must be at least %d characters long, but got %d.", minLength, actual),
		Context: map[string]any{"min_length": minLength, "actual_length": actual},
	}
}

func newMaxLengthError(maxLength, actual int) *PolicyError {
	return &PolicyError{
		ID:      MessageIDPasswordMaxLength,
		Text:    fmt.Sprintf("The password must be at most %d characters long, but got %d.", maxLength, actual),
		Context: map[string]any{"max_length": maxLength, "actual_length": actual},
	}
}

func newTooSimilarError() *PolicyError {
	return &PolicyError{
		ID:   MessageIDPasswordTooSimilar,
		Text: "The password can not be used because it is too similar to the identifier.",
	}
}

// Check returns nil or a *PolicyError for the first rule password breaks, in Kratos' order:
// minimum length, similarity to each identifier, then the maximum length (which Kratos enforces
// when hashing, after validation). Lengths are counted in bytes (len), as Kratos does, so the
// numbers in messages match Kratos even for non-ASCII passwords. Empty identifiers are ignored;
// an empty list means no similarity check.
func (p Policy) Check(password string, identifiers []string) error {
	minLength := p.MinLength
	if minLength <= 0 {
		minLength = MinLengthDefault
	}
	if len(password) < minLength {
		return newMinLengthError(minLength, len(password))
	}
	if p.IdentifierSimilarityCheck && len(identifiers) > 0 &&
		utf8.RuneCountInString(password) <= maxSimilarityRunes {
		lowerPassword := strings.ToLower(password)
		for _, id := range identifiers {
			if id != "" && tooSimilar(strings.ToLower(id), lowerPassword) {
				return newTooSimilarError()
			}
		}
	}
	if p.MaxBytes > 0 && len(password) > p.MaxBytes {
		return newMaxLengthError(p.MaxBytes, len(password))
	}
	return nil
}

// tooSimilar applies Kratos' rule to lower-cased strings: a Levenshtein distance below 5, or a
// longest common substring longer than half the password. It is skipped (false) when either
// string is longer than 256 runes. Both measures count runes; Kratos' substring count works on
// byte offsets and so differs from this only for non-ASCII text.
func tooSimilar(identifier, password string) bool {
	idRunes, pwRunes := []rune(identifier), []rune(password)
	if len(idRunes) > maxSimilarityRunes || len(pwRunes) > maxSimilarityRunes || len(pwRunes) == 0 {
		return false
	}
	if levenshtein.ComputeDistance(identifier, password) < minIdentifierDistance {
		return true
	}
	return float64(longestCommonSubstring(idRunes, pwRunes))/float64(len(pwRunes)) > maxCommonSubstringRatio
}

// longestCommonSubstring returns the length of the longest run of runes a and b share, with two
// rows of the usual dynamic-programming table (O(len(a)·len(b)) time, O(len(b)) memory).
func longestCommonSubstring(a, b []rune) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	longest := 0
	for i := range a {
		for j := range b {
			if a[i] == b[j] {
				cur[j+1] = prev[j] + 1
				longest = max(longest, cur[j+1])
			} else {
				cur[j+1] = 0
			}
		}
		prev, cur = cur, prev
	}
	return longest
}
