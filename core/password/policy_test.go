package password

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestPolicyCheck(t *testing.T) {
	t.Parallel()
	def := DefaultPolicy()
	bcryptPolicy := DefaultPolicy()
	bcryptPolicy.MaxBytes = BcryptMaxPasswordBytes
	noSimilarity := Policy{MinLength: 8}

	minLength := func(limit, actual int) *PolicyError { return newMinLengthError(limit, actual) }
	maxLength := func(limit, actual int) *PolicyError { return newMaxLengthError(limit, actual) }
	tooSimilar := newTooSimilarError()

	for _, tc := range []struct {
		name        string
		policy      Policy
		password    string
		identifiers []string
		want        *PolicyError // nil means accepted
	}{
		// Minimum length, in bytes.
		{"empty", def, "", nil, minLength(8, 0)},
		{"7 bytes", def, "1234567", nil, minLength(8, 7)},
		{"8 bytes", def, "l3f9toh1", nil, nil},
		{"zero policy means 8", Policy{}, "1234567", nil, minLength(8, 7)},
		{"min length 10, 9 bytes", Policy{MinLength: 10}, "rfqyfjied", nil, minLength(10, 9)},
		{"min length 10, 10 bytes", Policy{MinLength: 10}, "kuobahcaas", nil, nil},
		{"3 runes are 6 bytes", Policy{MinLength: 6}, "ééé", nil, nil},
		{"2 runes are 4 bytes", Policy{MinLength: 6}, "éé", nil, minLength(6, 4)},

		// Maximum length (bcrypt's 72 bytes).
		{"72 bytes under bcrypt", bcryptPolicy, strings.Repeat("a", 72), nil, nil},
		{"73 bytes under bcrypt", bcryptPolicy, strings.Repeat("a", 73), nil, maxLength(72, 73)},
		{"36 two-byte runes are 72 bytes", bcryptPolicy, strings.Repeat("é", 36), nil, nil},
		{"37 two-byte runes are 74 bytes", bcryptPolicy, strings.Repeat("é", 37), nil, maxLength(72, 74)},
		{"no maximum without bcrypt", def, strings.Repeat("a", 1000), nil, nil},

		// Similarity to identifiers (Kratos' own cases included).
		{"identifier plus a character", def, "foo@bar.com1", []string{"foo@bar.com"}, tooSimilar},
		{"identifier itself", def, "l3f9toh1uaf81n21", []string{"l3f9toh1uaf81n21"}, tooSimilar},
		{"identifier with suffix", def, "hello@example.com12345", []string{"hello@example.com"}, tooSimilar},
		{"identifier inside", def, "123hello@example.com123", []string{"hello@example.com"}, tooSimilar},
		{"prefix of identifier", def, "hello@exam", []string{"hello@example.com"}, tooSimilar},
		{"identifier upper-cased", def, "HELLO@EXAMPLE.COM", []string{"hello@example.com"}, tooSimilar},
		{"identifier partly upper-cased", def, "HELLO@example.com", []string{"hello@example.com"}, tooSimilar},
		{"identifier extends password", def, "hello@example.com", []string{"hello@exam"}, tooSimilar},
		{"leetspeak identifier", def, "h3ll0@example", []string{"hello@example.com"}, tooSimilar},
		{"unrelated", def, "9d3c8a1b", []string{"abcd"}, nil},
		{"one-letter identifier", def, "kjOklafe", []string{"a"}, nil},
		{"short common substring", def, "0000ab0000123", []string{"ab"}, nil},
		{"common prefix under half", def, "d4f6090b-5a84-2184-4404-8d1b-8da3eb00ebbe", []string{"d4f6090b-5a84"}, nil},
		{"common prefix under half, non-ASCII", def, "asdflasdflpiuhefnciluaksdzuföfhg", []string{"asdflasdflasdf"}, nil},
		{"second identifier similar", def, "foo@bar.com1", []string{"someone", "foo@bar.com"}, tooSimilar},
		{"no identifiers", def, "foo@bar.com1", nil, nil},
		{"empty identifier ignored", def, "foo@bar.com1", []string{""}, nil},
		{"check disabled", noSimilarity, "bosqwfaxee", []string{"bosqwfaxee"}, nil},
		{"256 runes still checked", def, strings.Repeat("x", 256), []string{strings.Repeat("x", 256)}, tooSimilar},
		{"password over 256 runes skipped", def, strings.Repeat("x", 257), []string{strings.Repeat("x", 256)}, nil},
		{"identifier over 256 runes skipped", def, strings.Repeat("x", 10), []string{strings.Repeat("x", 257)}, nil},
		{"non-ASCII similar", def, "ßüñchen2024", []string{"ßüñchen"}, tooSimilar},

		// Order: min length first, then similarity, then the maximum (as Kratos, which checks
		// the bcrypt limit only when hashing).
		{"too short and similar", def, "foo", []string{"foo"}, minLength(8, 3)},
		{"too long and similar", bcryptPolicy, strings.Repeat("ab", 40), []string{strings.Repeat("ab", 40)}, tooSimilar},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.policy.Check(tc.password, tc.identifiers)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			var got *PolicyError
			if !errors.As(err, &got) {
				t.Fatalf("Check = %v, want *PolicyError %d", err, tc.want.ID)
			}
			if got.ID != tc.want.ID || got.Text != tc.want.Text || !maps.Equal(got.Context, tc.want.Context) {
				t.Fatalf("Check = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The ids, texts and contexts are Kratos' (text/id.go, text/message_validation.go); clients
// match on them.
func TestPolicyErrorsMatchKratos(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		got     *PolicyError
		id      int64
		text    string
		context map[string]any
	}{
		{newTooSimilarError(), 4000031, "The password can not be used because it is too similar to the identifier.", nil},
		{newMinLengthError(8, 5), 4000032, "The password must be at least 8 characters long, but got 5.",
			map[string]any{"min_length": 8, "actual_length": 5}},
		{newMaxLengthError(72, 80), 4000033, "The password must be at most 72 characters long, but got 80.",
			map[string]any{"max_length": 72, "actual_length": 80}},
	} {
		if tc.got.ID != tc.id || tc.got.Text != tc.text || !maps.Equal(tc.got.Context, tc.context) {
			t.Errorf("got %+v, want {%d %q %v}", tc.got, tc.id, tc.text, tc.context)
		}
	}
}

func TestDefaultPolicyIsKratos(t *testing.T) {
	t.Parallel()
	if got, want := DefaultPolicy(), (Policy{MinLength: 8, IdentifierSimilarityCheck: true}); got != want {
		t.Errorf("DefaultPolicy() = %+v, want %+v", got, want)
	}
}

func TestLongestCommonSubstring(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "", 0},
		{"abc", "abc", 3},
		{"xabcy", "zzabczz", 3},
		{"asdflasdflasdf", "asdflasdflpiuhefnciluaksdzuföfhg", 10},
		{"ßüñ", "xßüñx", 3},
		{"abab", "baba", 3},
	} {
		if got := longestCommonSubstring([]rune(tc.a), []rune(tc.b)); got != tc.want {
			t.Errorf("longestCommonSubstring(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
