package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Values of Config.Algorithm, spelled as Kratos' `hashers.algorithm` so the config loader can
// pass the key through unchanged.
const (
	AlgorithmBcrypt = "bcrypt"
	AlgorithmArgon2 = "argon2"
)

// BcryptMaxPasswordBytes is the longest password bcrypt reads; it silently ignores the rest.
// Kratos rejects longer passwords (4000033) instead of truncating them, so the config loader sets
// Policy.MaxBytes to this when the algorithm is bcrypt, and Hash refuses longer input.
const BcryptMaxPasswordBytes = 72

// Kratos' defaults (config schema and driver/config), used for zero Config fields: hashers.bcrypt.cost
// and hashers.argon2.*. Argon2's parallelism defaults to 2 x CPUs and MaxConcurrent to the CPUs.
const (
	BcryptCostDefault       = 12
	Argon2MemoryDefault     = 128 * 1024 // KiB; Kratos' "128MB" is binary megabytes.
	Argon2IterationsDefault = 1
	Argon2SaltLengthDefault = 16
	Argon2KeyLengthDefault  = 32
)

// Bounds on configured argon2 parameters. They reject typos (a memory given in bytes instead of
// KiB, a missing unit), not unusual choices.
const (
	minArgon2SaltLength = 8 // RFC 9106 minimum.
	maxArgon2SaltLength = 1024
	minArgon2KeyLength  = 16 // Anything shorter makes a random guess too likely to match.
	maxArgon2KeyLength  = 1024
	maxArgon2Memory     = 4 * 1024 * 1024 // KiB, 4 GiB per hash in flight.
	maxArgon2Iterations = 64
)

var (
	// ErrMismatch means the password does not match the hash. The login flow must show the same
	// message (Kratos' 4000006) for it as for an unknown identifier, so callers should not
	// distinguish the two.
	ErrMismatch = errors.New("password does not match hash")

	// ErrUnsupportedHash means a stored hash is in a format Latch does not read, is malformed, or
	// has parameters outside the bounds Compare accepts. It is a data problem (usually an
	// import), not a wrong password: log it, and fail the login.
	ErrUnsupportedHash = errors.New("unsupported password hash")
)

// Config selects and tunes the hasher. Field names follow Kratos' `hashers.*` keys; every zero
// value means Kratos' default, so Config{} behaves like an unconfigured Kratos.
type Config struct {
	// Algorithm is `hashers.algorithm`: AlgorithmBcrypt or AlgorithmArgon2. Empty means bcrypt,
	// Kratos' effective default. It decides how new hashes are written; Compare reads every
	// supported format regardless.
	Algorithm string

	// BcryptCost is `hashers.bcrypt.cost`, 4..31. Zero means 12. Kratos refuses costs below 12
	// outside --dev mode; that is the config loader's call, not this package's.
	BcryptCost int

	// Argon2 holds `hashers.argon2.*`.
	Argon2 Argon2Params

	// MaxConcurrent is how many hashes (Hash, Compare, CompareUnknown) may run at once; the rest
	// wait. Zero means runtime.NumCPU(): more hashes than cores adds latency, not throughput,
	// and every argon2 hash in flight holds Argon2.Memory. Not a Kratos key.
	MaxConcurrent int
}

// Argon2Params are `hashers.argon2.*`. Zero fields mean Kratos' defaults.
type Argon2Params struct {
	// Memory is `hashers.argon2.memory` in KiB. Zero means 131072 (128 MiB). Allocated in full
	// for every hash in flight.
	Memory uint32
	// Iterations is `hashers.argon2.iterations`. Zero means 1.
	Iterations uint32
	// Parallelism is `hashers.argon2.parallelism`. Zero means 2×runtime.NumCPU() (capped at 255).
	Parallelism uint8
	// SaltLength is `hashers.argon2.salt_length` in bytes. Zero means 16.
	SaltLength uint32
	// KeyLength is `hashers.argon2.key_length` in bytes. Zero means 32.
	KeyLength uint32
}

// withDefaults returns c with every zero field replaced by Kratos' default.
func (c Config) withDefaults() Config {
	if c.Algorithm == "" {
		c.Algorithm = AlgorithmBcrypt
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = BcryptCostDefault
	}
	if c.Argon2.Memory == 0 {
		c.Argon2.Memory = Argon2MemoryDefault
	}
	if c.Argon2.Iterations == 0 {
		c.Argon2.Iterations = Argon2IterationsDefault
	}
	if c.Argon2.Parallelism == 0 {
		c.Argon2.Parallelism = uint8(min(2*runtime.NumCPU(), 255))
	}
	if c.Argon2.SaltLength == 0 {
		c.Argon2.SaltLength = Argon2SaltLengthDefault
	}
	if c.Argon2.KeyLength == 0 {
		c.Argon2.KeyLength = Argon2KeyLengthDefault
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = runtime.NumCPU()
	}
	return c
}

// validate checks a defaulted Config. Errors name the config key so an operator can find it.
// Argon2 parameters are checked even under bcrypt, so switching the algorithm later does not
// reveal an old mistake.
func (c Config) validate() error {
	var errs []error
	if c.Algorithm != AlgorithmBcrypt && c.Algorithm != AlgorithmArgon2 {
		errs = append(errs, fmt.Errorf("hashers.algorithm: must be %q or %q, got %q",
			AlgorithmBcrypt, AlgorithmArgon2, c.Algorithm))
	}
	if c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost {
		errs = append(errs, fmt.Errorf("hashers.bcrypt.cost: must be between %d and %d, got %d",
			bcrypt.MinCost, bcrypt.MaxCost, c.BcryptCost))
	}
	a := c.Argon2
	// RFC 9106: at least 8 KiB per lane.
	if minMem := 8 * uint32(a.Parallelism); a.Memory < minMem || a.Memory > maxArgon2Memory {
		errs = append(errs, fmt.Errorf("hashers.argon2.memory: must be between %d KiB (8 KiB per unit of parallelism) and %d KiB, got %d KiB",
			minMem, maxArgon2Memory, a.Memory))
	}
	if a.Iterations > maxArgon2Iterations {
		errs = append(errs, fmt.Errorf("hashers.argon2.iterations: must be between 1 and %d, got %d",
			maxArgon2Iterations, a.Iterations))
	}
	if a.SaltLength < minArgon2SaltLength || a.SaltLength > maxArgon2SaltLength {
		errs = append(errs, fmt.Errorf("hashers.argon2.salt_length: must be between %d and %d bytes, got %d",
			minArgon2SaltLength, maxArgon2SaltLength, a.SaltLength))
	}
	if a.KeyLength < minArgon2KeyLength || a.KeyLength > maxArgon2KeyLength {
		errs = append(errs, fmt.Errorf("hashers.argon2.key_length: must be between %d and %d bytes, got %d",
			minArgon2KeyLength, maxArgon2KeyLength, a.KeyLength))
	}
	if c.MaxConcurrent < 0 {
		errs = append(errs, fmt.Errorf("MaxConcurrent: must not be negative, got %d", c.MaxConcurrent))
	}
	return errors.Join(errs...)
}

// Hasher hashes and verifies passwords with a bounded number of hashes in flight. It is built
// once per process, like Kratos' hasher, and is safe for concurrent use.
type Hasher struct {
	algorithm  string
	bcryptCost int
	argon2     Argon2Params
	limits     storedLimits

	// slots is the semaphore: a send takes a slot, a receive frees it.
	slots chan struct{}

	// unknownHash is a hash of a random secret made with the configured parameters, so that
	// CompareUnknown costs what a real Compare costs.
	unknownHash []byte

	// Test hooks, nil in production. testHookWaiting runs when a caller finds every slot taken
	// and is about to wait; testHookAcquired runs right after a slot is taken, testHookReleased
	// right before it is freed.
	testHookWaiting  func()
	testHookAcquired func()
	testHookReleased func()
}

// NewHasher validates cfg, fills Kratos' defaults and computes the hash CompareUnknown verifies
// against, so it costs one hash with the configured parameters.
func NewHasher(cfg Config) (*Hasher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("password hasher config: %w", err)
	}
	h := &Hasher{
		algorithm:  cfg.Algorithm,
		bcryptCost: cfg.BcryptCost,
		argon2:     cfg.Argon2,
		limits:     newStoredLimits(cfg),
		slots:      make(chan struct{}, cfg.MaxConcurrent),
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("read random secret: %w", err)
	}
	unknown, err := h.generate(secret)
	if err != nil {
		return nil, fmt.Errorf("hash for unknown identifiers: %w", err)
	}
	h.unknownHash = unknown
	return h, nil
}

// Hash hashes password with the configured algorithm and parameters, in the exact format Kratos
// writes. It waits for a concurrency slot and returns ctx.Err() if ctx ends first. Under bcrypt a
// password longer than BcryptMaxPasswordBytes is refused with a *PolicyError (4000033), as
// Kratos does, rather than silently truncated.
func (h *Hasher) Hash(ctx context.Context, password []byte) (_ []byte, err error) {
	ctx, span := startSpan(ctx, "hash", h.algorithm)
	defer func() { endSpan(span, err) }()
	if h.algorithm == AlgorithmBcrypt && len(password) > BcryptMaxPasswordBytes {
		return nil, newMaxLengthError(BcryptMaxPasswordBytes, len(password))
	}
	if err := h.acquire(ctx); err != nil {
		return nil, err
	}
	defer h.release()
	return h.generate(password)
}

// generate hashes without taking a slot.
func (h *Hasher) generate(password []byte) ([]byte, error) {
	if h.algorithm == AlgorithmArgon2 {
		salt := make([]byte, h.argon2.SaltLength)
		if _, err := rand.Read(salt); err != nil {
			return nil, fmt.Errorf("read salt: %w", err)
		}
		p := h.argon2
		key := argon2.IDKey(password, salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLength)
		return encodeArgon2id(p, salt, key), nil
	}
	hash, err := bcrypt.GenerateFromPassword(password, h.bcryptCost)
	if err != nil {
		// Only reachable with a password over 72 bytes, which Hash refuses earlier.
		return nil, fmt.Errorf("bcrypt: %v", err)
	}
	return hash, nil
}

// Compare reports whether password matches hash: nil, ErrMismatch, or ErrUnsupportedHash when
// the hash is not bcrypt ($2a$, $2b$, $2y$), argon2id or argon2i, is malformed, or has parameters
// outside the bounds Latch accepts (checked before any work, so an imported hash cannot make us
// allocate or spin without limit). It reads every supported format whatever the configured
// algorithm, so imported and pre-migration hashes keep working. The final comparison is
// constant-time. It waits for a concurrency slot and returns ctx.Err() if ctx ends first.
func (h *Hasher) Compare(ctx context.Context, password, hash []byte) (err error) {
	ctx, span := startSpan(ctx, "hash.compare", "")
	defer func() { endSpan(span, err) }()
	stored, err := h.limits.parse(hash)
	if err != nil {
		return err
	}
	if err := h.acquire(ctx); err != nil {
		return err
	}
	defer h.release()
	return stored.verify(password)
}

// verify does the hashing work for one parsed hash.
func (s storedHash) verify(password []byte) error {
	switch s.kind {
	case kindBcrypt:
		err := bcrypt.CompareHashAndPassword(s.encoded, password)
		switch {
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return ErrMismatch
		case err != nil:
			return fmt.Errorf("%w: bcrypt: %v", ErrUnsupportedHash, err)
		case len(password) > BcryptMaxPasswordBytes:
			// bcrypt matched on the first 72 bytes only. Kratos refuses such passwords rather
			// than let the tail be ignored; the work is done first so timing does not differ.
			return ErrMismatch
		}
		return nil
	case kindArgon2id, kindArgon2i:
		derive := argon2.IDKey
		if s.kind == kindArgon2i {
			derive = argon2.Key
		}
		got := derive(password, s.salt, s.iterations, s.memory, s.parallelism, uint32(len(s.key)))
		if subtle.ConstantTimeCompare(got, s.key) != 1 {
			return ErrMismatch
		}
		return nil
	}
	return ErrUnsupportedHash // parse never returns another kind.
}

// CompareUnknown is for a login whose identifier matches no identity, or whose identity has no
// password. It does the work of a real Compare against a hash made with the configured
// parameters and returns ErrMismatch, so such a login takes as long and looks the same as a
// wrong password and cannot be used to find out which identifiers exist. (Kratos sleeps a random
// time instead; doing the real work also makes an unknown-identifier flood cost what a
// wrong-password flood costs, queued behind the same semaphore.) The only other result is
// ctx.Err() when ctx ends before a slot frees.
func (h *Hasher) CompareUnknown(ctx context.Context, password []byte) error {
	err := h.Compare(ctx, password, h.unknownHash)
	if err != nil && !errors.Is(err, ErrMismatch) {
		return err
	}
	return ErrMismatch
}

// NeedsRehash reports whether hash was written by another algorithm than the configured one
// (bcrypt vs argon2id; argon2i counts as another algorithm). After a successful Compare the login
// flow re-hashes such passwords, as Kratos does. Like Kratos, a hash of the same algorithm
// with other parameters is not migrated.
func (h *Hasher) NeedsRehash(hash []byte) bool {
	kind := detectKind(hash)
	if h.algorithm == AlgorithmArgon2 {
		return kind != kindArgon2id
	}
	return kind != kindBcrypt
}

// acquire takes a concurrency slot, or returns ctx.Err() if ctx ends first. An already ended
// ctx never gets a slot, even a free one.
func (h *Hasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case h.slots <- struct{}{}:
	default:
		if h.testHookWaiting != nil {
			h.testHookWaiting()
		}
		select {
		case h.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if h.testHookAcquired != nil {
		h.testHookAcquired()
	}
	return nil
}

// release frees the slot taken by acquire.
func (h *Hasher) release() {
	if h.testHookReleased != nil {
		h.testHookReleased()
	}
	<-h.slots
}
