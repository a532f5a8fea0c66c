package password

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// hashKind is the algorithm a stored hash was written with, read from its prefix.
type hashKind int

const (
	kindUnknown hashKind = iota
	kindBcrypt
	kindArgon2id
	kindArgon2i
)

// detectKind reads the algorithm from the hash prefix. "$argon2i$" is not a prefix of
// "$argon2id$", so the two cannot be confused.
func detectKind(hash []byte) hashKind {
	switch {
	case bytes.HasPrefix(hash, []byte("$2a$")),
		bytes.HasPrefix(hash, []byte("$2b$")),
		bytes.HasPrefix(hash, []byte("$2y$")):
		return kindBcrypt
	case bytes.HasPrefix(hash, []byte("$argon2id$")):
		return kindArgon2id
	case bytes.HasPrefix(hash, []byte("$argon2i$")):
		return kindArgon2i
	}
	return kindUnknown
}

// Bounds on the parameters of stored hashes. A stored hash may come from an import, so its
// parameters decide how much memory and CPU one login attempt costs us. These defaults allow
// every common configuration (bcrypt cost up to 16, ~4.7 s per hash here; argon2 up to 1 GiB and
// 16 passes) and reject absurd ones; the configured parameters always pass even when they are
// higher, so our own hashes always verify.
const (
	maxStoredHashBytes        = 4096
	storedMaxBcryptCost       = 16
	storedMaxArgon2Memory     = 1024 * 1024 // KiB, 1 GiB.
	storedMaxArgon2Iterations = 16
	storedMaxArgon2SaltLength = 1024
	storedMinArgon2KeyLength  = 16
	storedMaxArgon2KeyLength  = 1024
	bcryptHashBytes           = 60
)

// storedLimits are the bounds Compare applies to a stored hash, widened to the configured
// parameters.
type storedLimits struct {
	maxBcryptCost       int
	maxArgon2Memory     uint32
	maxArgon2Iterations uint32
}

func newStoredLimits(cfg Config) storedLimits {
	return storedLimits{
		maxBcryptCost:       max(storedMaxBcryptCost, cfg.BcryptCost),
		maxArgon2Memory:     max(storedMaxArgon2Memory, cfg.Argon2.Memory),
		maxArgon2Iterations: max(storedMaxArgon2Iterations, cfg.Argon2.Iterations),
	}
}

// storedHash is a parsed, bounds-checked stored hash, ready to verify.
type storedHash struct {
	kind hashKind

	// bcrypt: the hash as stored; x/crypto/bcrypt parses it again.
	encoded []byte

	// argon2: parameters, salt and expected key.
	memory      uint32 // KiB
	iterations  uint32
	parallelism uint8
	salt        []byte
	key         []byte
}

// unsupported wraps ErrUnsupportedHash with a reason for the logs. Reasons never quote the
// hash: it is a credential.
func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupportedHash, fmt.Sprintf(format, args...))
}

// parse recognises and bounds-checks a stored hash without doing any hashing work.
func (l storedLimits) parse(hash []byte) (storedHash, error) {
	if len(hash) > maxStoredHashBytes {
		return storedHash{}, unsupported("hash is %d bytes long, limit is %d", len(hash), maxStoredHashBytes)
	}
	switch kind := detectKind(hash); kind {
	case kindBcrypt:
		return l.parseBcrypt(hash)
	case kindArgon2id, kindArgon2i:
		return l.parseArgon2(kind, string(hash))
	}
	return storedHash{}, unsupported("unknown hash format")
}

func (l storedLimits) parseBcrypt(hash []byte) (storedHash, error) {
	if len(hash) != bcryptHashBytes {
		return storedHash{}, unsupported("bcrypt hash is %d bytes long, want %d", len(hash), bcryptHashBytes)
	}
	cost, err := bcrypt.Cost(hash)
	if err != nil {
		return storedHash{}, unsupported("bcrypt: %v", err)
	}
	if cost > l.maxBcryptCost {
		return storedHash{}, unsupported("bcrypt cost %d exceeds %d", cost, l.maxBcryptCost)
	}
	return storedHash{kind: kindBcrypt, encoded: hash}, nil
}

// parseArgon2 reads the PHC form Kratos and the reference implementation write:
// $argon2id$v=19$m=<KiB>,t=<iterations>,p=<parallelism>$<salt>$<key>, unpadded standard base64.
// Key and salt lengths come from the decoded fields, as in Kratos.
func (l storedLimits) parseArgon2(kind hashKind, hash string) (storedHash, error) {
	fields := strings.Split(hash, "$")
	if len(fields) != 6 {
		return storedHash{}, unsupported("argon2 hash has %d $-separated fields, want 6", len(fields))
	}
	if fields[2] != "v="+strconv.Itoa(argon2.Version) {
		return storedHash{}, unsupported("argon2 version is not %d", argon2.Version)
	}
	params := strings.Split(fields[3], ",")
	if len(params) != 3 {
		return storedHash{}, unsupported("argon2 parameters are not m=,t=,p=")
	}
	m, errM := parseParam(params[0], "m=", 32)
	t, errT := parseParam(params[1], "t=", 32)
	p, errP := parseParam(params[2], "p=", 8)
	if errM != nil || errT != nil || errP != nil {
		return storedHash{}, unsupported("argon2 parameters are not m=<uint32>,t=<uint32>,p=<uint8>")
	}
	s := storedHash{kind: kind, memory: uint32(m), iterations: uint32(t), parallelism: uint8(p)}

	// x/crypto/argon2 panics on t or p of zero and silently raises a memory below 8 KiB per lane.
	switch {
	case s.parallelism == 0:
		return storedHash{}, unsupported("argon2 parallelism is 0")
	case s.iterations == 0:
		return storedHash{}, unsupported("argon2 iterations is 0")
	case s.iterations > l.maxArgon2Iterations:
		return storedHash{}, unsupported("argon2 iterations %d exceeds %d", s.iterations, l.maxArgon2Iterations)
	case s.memory < 8*uint32(s.parallelism):
		return storedHash{}, unsupported("argon2 memory %d KiB is below 8 KiB per lane", s.memory)
	case s.memory > l.maxArgon2Memory:
		return storedHash{}, unsupported("argon2 memory %d KiB exceeds %d KiB", s.memory, l.maxArgon2Memory)
	}

	var err error
	if s.salt, err = base64.RawStdEncoding.Strict().DecodeString(fields[4]); err != nil {
		return storedHash{}, unsupported("argon2 salt is not unpadded base64")
	}
	if len(s.salt) > storedMaxArgon2SaltLength {
		return storedHash{}, unsupported("argon2 salt is %d bytes, limit is %d", len(s.salt), storedMaxArgon2SaltLength)
	}
	if s.key, err = base64.RawStdEncoding.Strict().DecodeString(fields[5]); err != nil {
		return storedHash{}, unsupported("argon2 key is not unpadded base64")
	}
	if len(s.key) < storedMinArgon2KeyLength || len(s.key) > storedMaxArgon2KeyLength {
		return storedHash{}, unsupported("argon2 key is %d bytes, want %d..%d",
			len(s.key), storedMinArgon2KeyLength, storedMaxArgon2KeyLength)
	}
	return s, nil
}

// parseParam parses "<name>=<decimal>" strictly: no sign, no spaces, no empty value.
func parseParam(field, prefix string, bits int) (uint64, error) {
	digits, ok := strings.CutPrefix(field, prefix)
	if !ok {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseUint(digits, 10, bits)
}

// encodeArgon2id writes the hash exactly as Kratos does (hash/hasher_argon2.go), so Kratos can
// read what Latch writes.
func encodeArgon2id(p Argon2Params, salt, key []byte) []byte {
	return fmt.Appendf(nil, "$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Iterations, p.Parallelism,
		base64.RawStdEncoding.EncodeToString(salt),
		base64.RawStdEncoding.EncodeToString(key))
}
