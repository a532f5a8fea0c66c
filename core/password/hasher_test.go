package password

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Cheap parameters so the tests run in milliseconds.
var (
	bcryptTestConfig = Config{Algorithm: AlgorithmBcrypt, BcryptCost: bcrypt.MinCost}
	argon2TestConfig = Config{Algorithm: AlgorithmArgon2, Argon2: Argon2Params{
		Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32,
	}}
)

func newTestHasher(t testing.TB, cfg Config) *Hasher {
	t.Helper()
	h, err := NewHasher(cfg)
	if err != nil {
		t.Fatalf("NewHasher(%+v): %v", cfg, err)
	}
	return h
}

// foreignArgon2 builds an argon2 hash the way Kratos writes one, straight from x/crypto/argon2
// and without this package's encoder, as another system would.
func foreignArgon2(t testing.TB, variant, password string, m, iterations uint32, p uint8, saltLen, keyLen int) string {
	t.Helper()
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		t.Fatal(err)
	}
	derive := argon2.IDKey
	if variant == "argon2i" {
		derive = argon2.Key
	}
	key := derive([]byte(password), salt, iterations, m, p, uint32(keyLen))
	return fmt.Sprintf("$%s$v=19$m=%d,t=%d,p=%d$%s$%s", variant, m, iterations, p,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

func TestHashAndCompare(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cfg    Config
		format *regexp.Regexp
	}{
		{
			name:   "bcrypt cost 4",
			cfg:    bcryptTestConfig,
			format: regexp.MustCompile(`^\$2a\$04\$[./A-Za-z0-9]{53}$`),
		},
		{
			name:   "argon2id 64 KiB",
			cfg:    argon2TestConfig,
			format: regexp.MustCompile(`^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`),
		},
		{
			name: "argon2id other lengths",
			cfg: Config{Algorithm: AlgorithmArgon2, Argon2: Argon2Params{
				Memory: 128, Iterations: 2, Parallelism: 2, SaltLength: 8, KeyLength: 16,
			}},
			format: regexp.MustCompile(`^\$argon2id\$v=19\$m=128,t=2,p=2\$[A-Za-z0-9+/]{11}\$[A-Za-z0-9+/]{22}$`),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newTestHasher(t, tc.cfg)
			password := []byte("correct horse battery staple")

			hash, err := h.Hash(t.Context(), password)
			if err != nil {
				t.Fatalf("Hash: %v", err)
			}
			if !tc.format.Match(hash) {
				t.Fatalf("hash %q does not match %v", hash, tc.format)
			}
			again, err := h.Hash(t.Context(), password)
			if err != nil {
				t.Fatalf("Hash: %v", err)
			}
			if bytes.Equal(hash, again) {
				t.Fatal("two hashes of one password are equal: salt not random")
			}

			for _, c := range []struct {
				password string
				want     error
			}{
				{string(password), nil},
				{"correct horse battery stapl", ErrMismatch},
				{"Correct horse battery staple", ErrMismatch},
				{"", ErrMismatch},
			} {
				if err := h.Compare(t.Context(), []byte(c.password), hash); !errors.Is(err, c.want) {
					t.Errorf("Compare(%q) = %v, want %v", c.password, err, c.want)
				}
			}
			if h.NeedsRehash(hash) {
				t.Error("NeedsRehash(own hash) = true")
			}
		})
	}
}

func TestCompareForeignHashes(t *testing.T) {
	t.Parallel()
	const pw = "correct horse battery staple"
	goHash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, hash, password string
		want                 error
	}{
		// Written by PHP's password_hash (the PHP manual's password_verify example).
		{"bcrypt $2y$ from PHP", "$2y$07$BCryptRequires22Chrcte/VlQH0piJtjXl.0t1XkA8pw9dMXTpOq", "rasmuslerdorf", nil},
		{"bcrypt $2y$ from PHP, wrong password", "$2y$07$BCryptRequires22Chrcte/VlQH0piJtjXl.0t1XkA8pw9dMXTpOq", "rasmuslerdorF", ErrMismatch},
		// crypt_blowfish's test vector under each prefix it is written with.
		{"bcrypt $2a$ crypt_blowfish", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U", nil},
		{"bcrypt $2b$ crypt_blowfish", "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U", nil},
		{"bcrypt $2y$ crypt_blowfish", "$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U", nil},
		{"bcrypt $2y$ crypt_blowfish, wrong password", "$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*V", ErrMismatch},
		{"bcrypt from x/crypto as $2y$", "$2y$" + string(goHash[4:]), pw, nil},
		{"argon2id Kratos format", foreignArgon2(t, "argon2id", pw, 64, 1, 1, 16, 32), pw, nil},
		{"argon2id Kratos format, wrong password", foreignArgon2(t, "argon2id", pw, 64, 1, 1, 16, 32), pw + "!", ErrMismatch},
		{"argon2id p=4 t=3 salt 32 key 64", foreignArgon2(t, "argon2id", pw, 256, 3, 4, 32, 64), pw, nil},
		{"argon2i", foreignArgon2(t, "argon2i", pw, 64, 2, 1, 16, 32), pw, nil},
		{"argon2i, wrong password", foreignArgon2(t, "argon2i", pw, 64, 2, 1, 16, 32), "", ErrMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Whatever the configured algorithm, every supported format verifies.
			for _, cfg := range []Config{bcryptTestConfig, argon2TestConfig} {
				h := newTestHasher(t, cfg)
				if err := h.Compare(t.Context(), []byte(tc.password), []byte(tc.hash)); !errors.Is(err, tc.want) {
					t.Errorf("algorithm %s: Compare = %v, want %v", cfg.Algorithm, err, tc.want)
				}
			}
		})
	}
}

func TestCompareRejectsUnsupportedHashes(t *testing.T) {
	t.Parallel()
	b64 := base64.RawStdEncoding.EncodeToString
	salt, key := b64(make([]byte, 16)), b64(make([]byte, 32))
	argon2With := func(variant, version, params, salt, key string) string {
		return "$" + variant + "$" + version + "$" + params + "$" + salt + "$" + key
	}
	goHash, err := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	bcryptCost := func(cost string) string { return "$2a$" + cost + string(goHash[6:]) }

	for _, tc := range []struct{ name, hash string }{
		{"empty", ""},
		{"plain text", "hunter2"},
		{"pbkdf2 (not supported)", "$pbkdf2-sha256$i=100000,l=32$c2FsdA$aGFzaA"},
		{"argon2d", argon2With("argon2d", "v=19", "m=64,t=1,p=1", salt, key)},
		{"argon2id m=4000000000", argon2With("argon2id", "v=19", "m=4000000000,t=1,p=1", salt, key)},
		{"argon2i m=4000000000", argon2With("argon2i", "v=19", "m=4000000000,t=1,p=1", salt, key)},
		{"argon2id m over 1 GiB", argon2With("argon2id", "v=19", "m=1048577,t=1,p=1", salt, key)},
		{"argon2id t=1000000", argon2With("argon2id", "v=19", "m=64,t=1000000,p=1", salt, key)},
		{"argon2id t=0 (x/crypto panics)", argon2With("argon2id", "v=19", "m=64,t=0,p=1", salt, key)},
		{"argon2id p=0 (x/crypto panics)", argon2With("argon2id", "v=19", "m=64,t=1,p=0", salt, key)},
		{"argon2id p=256", argon2With("argon2id", "v=19", "m=4096,t=1,p=256", salt, key)},
		{"argon2id m below 8 KiB per lane", argon2With("argon2id", "v=19", "m=15,t=1,p=2", salt, key)},
		{"argon2id m over uint32", argon2With("argon2id", "v=19", "m=4294967296,t=1,p=1", salt, key)},
		{"argon2id signed m", argon2With("argon2id", "v=19", "m=+64,t=1,p=1", salt, key)},
		{"argon2id params out of order", argon2With("argon2id", "v=19", "t=1,m=64,p=1", salt, key)},
		{"argon2id extra param", argon2With("argon2id", "v=19", "m=64,t=1,p=1,keyid=x", salt, key)},
		{"argon2id version 16", argon2With("argon2id", "v=16", "m=64,t=1,p=1", salt, key)},
		{"argon2id without version", "$argon2id$m=64,t=1,p=1$" + salt + "$" + key},
		{"argon2id padded base64 salt", argon2With("argon2id", "v=19", "m=64,t=1,p=1", salt+"==", key)},
		{"argon2id bad base64 key", argon2With("argon2id", "v=19", "m=64,t=1,p=1", salt, "!!!!")},
		{"argon2id 8-byte key", argon2With("argon2id", "v=19", "m=64,t=1,p=1", salt, b64(make([]byte, 8)))},
		{"argon2id trailing field", argon2With("argon2id", "v=19", "m=64,t=1,p=1", salt, key) + "$"},
		{"argon2id too long", argon2With("argon2id", "v=19", "m=64,t=1,p=1", strings.Repeat("A", 5000), key)},
		{"bcrypt cost 31", bcryptCost("31")},
		{"bcrypt cost 17", bcryptCost("17")},
		{"bcrypt cost 03", bcryptCost("03")},
		{"bcrypt truncated", string(goHash[:59])},
		{"bcrypt $2x$ (buggy crypt_blowfish)", "$2x$" + string(goHash[4:])},
		{"bcrypt bad salt", "$2a$04$" + strings.Repeat("!", 53)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newTestHasher(t, bcryptTestConfig)
			if err := h.Compare(t.Context(), []byte("x"), []byte(tc.hash)); !errors.Is(err, ErrUnsupportedHash) {
				t.Errorf("Compare = %v, want ErrUnsupportedHash", err)
			}
		})
	}
}

func TestCompareAcceptsConfiguredParamsAboveImportBounds(t *testing.T) {
	t.Parallel()
	// Iterations above the import bound of 16 (cheap with 64 KiB): our own hashes must verify.
	h := newTestHasher(t, Config{Algorithm: AlgorithmArgon2, Argon2: Argon2Params{
		Memory: 64, Iterations: 20, Parallelism: 1,
	}})
	hash, err := h.Hash(t.Context(), []byte("password1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Compare(t.Context(), []byte("password1"), hash); err != nil {
		t.Fatalf("Compare(own hash) = %v", err)
	}
	other := newTestHasher(t, argon2TestConfig)
	if err := other.Compare(t.Context(), []byte("password1"), hash); !errors.Is(err, ErrUnsupportedHash) {
		t.Fatalf("hasher with default bounds: Compare = %v, want ErrUnsupportedHash", err)
	}
}

func TestBcryptPasswordLongerThan72Bytes(t *testing.T) {
	t.Parallel()
	h := newTestHasher(t, bcryptTestConfig)
	long := bytes.Repeat([]byte("a"), BcryptMaxPasswordBytes+1)

	_, err := h.Hash(t.Context(), long)
	var pe *PolicyError
	if !errors.As(err, &pe) || pe.ID != MessageIDPasswordMaxLength ||
		pe.Context["max_length"] != 72 || pe.Context["actual_length"] != 73 {
		t.Fatalf("Hash(73 bytes) = %v, want PolicyError 4000033 {72, 73}", err)
	}

	// bcrypt reads only 72 bytes, so a 73-byte password "matches" the hash of its prefix.
	// Kratos refuses it instead of ignoring the tail, and so do we.
	hash, err := h.Hash(t.Context(), long[:BcryptMaxPasswordBytes])
	if err != nil {
		t.Fatalf("Hash(72 bytes): %v", err)
	}
	if err := h.Compare(t.Context(), long[:BcryptMaxPasswordBytes], hash); err != nil {
		t.Fatalf("Compare(72 bytes) = %v", err)
	}
	if err := h.Compare(t.Context(), long, hash); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Compare(73 bytes) = %v, want ErrMismatch", err)
	}

	// Argon2 has no such limit.
	a := newTestHasher(t, argon2TestConfig)
	if _, err := a.Hash(t.Context(), long); err != nil {
		t.Fatalf("argon2 Hash(73 bytes) = %v", err)
	}
}

func TestNeedsRehash(t *testing.T) {
	t.Parallel()
	bcryptHash := "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
	bcryptY := "$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
	argon2id := foreignArgon2(t, "argon2id", "pw", 64, 1, 1, 16, 32)
	argon2idOtherParams := foreignArgon2(t, "argon2id", "pw", 128, 3, 2, 16, 32)
	argon2i := foreignArgon2(t, "argon2i", "pw", 64, 1, 1, 16, 32)

	for _, tc := range []struct {
		name string
		cfg  Config
		hash string
		want bool
	}{
		{"bcrypt configured, bcrypt $2a$", bcryptTestConfig, bcryptHash, false},
		{"bcrypt configured, bcrypt $2y$", bcryptTestConfig, bcryptY, false},
		{"bcrypt configured, other cost", Config{Algorithm: AlgorithmBcrypt, BcryptCost: 6}, bcryptHash, false},
		{"bcrypt configured, argon2id", bcryptTestConfig, argon2id, true},
		{"bcrypt configured, argon2i", bcryptTestConfig, argon2i, true},
		{"argon2 configured, argon2id", argon2TestConfig, argon2id, false},
		{"argon2 configured, argon2id other params", argon2TestConfig, argon2idOtherParams, false},
		{"argon2 configured, argon2i", argon2TestConfig, argon2i, true},
		{"argon2 configured, bcrypt", argon2TestConfig, bcryptHash, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newTestHasher(t, tc.cfg)
			if got := h.NeedsRehash([]byte(tc.hash)); got != tc.want {
				t.Errorf("NeedsRehash = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCompareUnknown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cfg    Config
		prefix string // the dummy hash uses the configured parameters
	}{
		{"bcrypt", bcryptTestConfig, "$2a$04$"},
		{"argon2", argon2TestConfig, "$argon2id$v=19$m=64,t=1,p=1$"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newTestHasher(t, tc.cfg)
			if !strings.HasPrefix(string(h.unknownHash), tc.prefix) {
				t.Fatalf("unknown-identifier hash %q does not start with %q", h.unknownHash, tc.prefix)
			}
			for _, pw := range []string{"", "password", strings.Repeat("x", 100)} {
				if err := h.CompareUnknown(t.Context(), []byte(pw)); !errors.Is(err, ErrMismatch) {
					t.Errorf("CompareUnknown(%d bytes) = %v, want ErrMismatch", len(pw), err)
				}
			}
		})
	}
}

// slotOperationNames are the keys of slotOperations.
var slotOperationNames = []string{"Hash", "Compare", "CompareUnknown"}

// slotOperations are the operations that take a concurrency slot, for the semaphore tests.
func slotOperations(t testing.TB, h *Hasher) map[string]func(context.Context) error {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]func(context.Context) error{
		"Hash": func(ctx context.Context) error {
			_, err := h.Hash(ctx, []byte("pw"))
			return err
		},
		"Compare": func(ctx context.Context) error {
			return h.Compare(ctx, []byte("pw"), hash)
		},
		"CompareUnknown": func(ctx context.Context) error {
			if err := h.CompareUnknown(ctx, []byte("pw")); !errors.Is(err, ErrMismatch) {
				return err
			}
			return nil
		},
	}
}

func TestMaxConcurrentLimitsHashesInFlight(t *testing.T) {
	t.Parallel()
	const (
		limit   = 3
		callers = 10
	)
	for _, name := range slotOperationNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := bcryptTestConfig
			cfg.MaxConcurrent = limit
			h := newTestHasher(t, cfg)
			op := slotOperations(t, h)[name]

			var inFlight, peak atomic.Int64
			gate := make(chan struct{})              // holds every caller that got a slot
			acquired := make(chan struct{}, callers) // one signal per slot taken
			waiting := make(chan struct{}, callers)  // one signal per caller that found no slot
			h.testHookAcquired = func() {
				n := inFlight.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				acquired <- struct{}{}
				<-gate
			}
			h.testHookReleased = func() { inFlight.Add(-1) }
			h.testHookWaiting = func() { waiting <- struct{}{} }

			var wg sync.WaitGroup
			errs := make(chan error, callers)
			var openGate sync.Once
			t.Cleanup(func() { // also on t.Fatal, so no caller is left blocked
				openGate.Do(func() { close(gate) })
				wg.Wait()
			})
			for range callers {
				wg.Go(func() { errs <- op(t.Context()) })
			}
			// Wait until all slots are taken and every other caller has found them taken.
			for nAcquired, nWaiting := 0, 0; nAcquired < limit || nWaiting < callers-limit; {
				select {
				case <-acquired:
					if nAcquired++; nAcquired > limit {
						t.Fatalf("%d callers hold a slot at once, limit is %d", nAcquired, limit)
					}
				case <-waiting:
					nWaiting++
				}
			}
			if got := inFlight.Load(); got != limit {
				t.Errorf("in flight while saturated = %d, want %d", got, limit)
			}
			openGate.Do(func() { close(gate) })
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
			if got := peak.Load(); got != limit {
				t.Errorf("peak in flight = %d, want %d", got, limit)
			}
		})
	}
}

func TestWaitForSlotHonoursContext(t *testing.T) {
	t.Parallel()
	for _, name := range slotOperationNames {
		t.Run(name+"/cancelled while waiting", func(t *testing.T) {
			t.Parallel()
			cfg := bcryptTestConfig
			cfg.MaxConcurrent = 1
			h := newTestHasher(t, cfg)
			op := slotOperations(t, h)[name]

			holding, gate := make(chan struct{}), make(chan struct{})
			h.testHookAcquired = func() {
				close(holding)
				<-gate
			}
			holderErr := make(chan error, 1)
			go func() { holderErr <- op(t.Context()) }()
			<-holding
			h.testHookAcquired = nil // only the holder blocks; read after the holder's read

			ctx, cancel := context.WithCancel(t.Context())
			h.testHookWaiting = cancel // cancel once the second caller is waiting for the slot
			if err := op(ctx); !errors.Is(err, context.Canceled) || err != ctx.Err() {
				t.Errorf("waiting caller: err = %v, want ctx.Err() = %v", err, ctx.Err())
			}
			close(gate)
			if err := <-holderErr; err != nil {
				t.Errorf("slot holder: %v", err)
			}
		})

		t.Run(name+"/context already done", func(t *testing.T) {
			t.Parallel()
			h := newTestHasher(t, bcryptTestConfig)
			op := slotOperations(t, h)[name]
			h.testHookAcquired = func() { t.Error("took a slot with a done context") }
			ctx, cancel := context.WithTimeout(t.Context(), 0)
			defer cancel()
			if err := op(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want context.DeadlineExceeded", err)
			}
		})
	}
}

func TestNewHasherValidation(t *testing.T) {
	t.Parallel()
	argon2Config := func(p Argon2Params) Config { return Config{Algorithm: AlgorithmArgon2, Argon2: p} }
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" means valid
	}{
		{"bcrypt cost 4", Config{BcryptCost: 4}, ""},
		{"bcrypt cost 3", Config{BcryptCost: 3}, "hashers.bcrypt.cost: must be between 4 and 31"},
		{"bcrypt cost 32", Config{BcryptCost: 32}, "hashers.bcrypt.cost: must be between 4 and 31"},
		{"negative bcrypt cost", Config{BcryptCost: -1}, "hashers.bcrypt.cost"},
		{"unknown algorithm", Config{Algorithm: "scrypt", BcryptCost: 4}, `hashers.algorithm: must be "bcrypt" or "argon2", got "scrypt"`},
		{"argon2id spelled out", Config{Algorithm: "argon2id", BcryptCost: 4}, "hashers.algorithm"},
		{"argon2 small", argon2Config(Argon2Params{Memory: 8, Parallelism: 1}), ""},
		{"argon2 memory below 8 KiB per lane", argon2Config(Argon2Params{Memory: 31, Parallelism: 4}), "hashers.argon2.memory"},
		{"argon2 memory in bytes by mistake", argon2Config(Argon2Params{Memory: 128 * 1024 * 1024}), "hashers.argon2.memory"},
		{"argon2 iterations 65", argon2Config(Argon2Params{Memory: 64, Parallelism: 1, Iterations: 65}), "hashers.argon2.iterations"},
		{"argon2 salt 4 bytes", argon2Config(Argon2Params{Memory: 64, Parallelism: 1, SaltLength: 4}), "hashers.argon2.salt_length"},
		{"argon2 key 8 bytes", argon2Config(Argon2Params{Memory: 64, Parallelism: 1, KeyLength: 8}), "hashers.argon2.key_length"},
		{"argon2 key 2048 bytes", argon2Config(Argon2Params{Memory: 64, Parallelism: 1, KeyLength: 2048}), "hashers.argon2.key_length"},
		{"argon2 params checked under bcrypt too", Config{BcryptCost: 4, Argon2: Argon2Params{KeyLength: 8}}, "hashers.argon2.key_length"},
		{"negative MaxConcurrent", Config{BcryptCost: 4, MaxConcurrent: -1}, "MaxConcurrent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewHasher(tc.cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("NewHasher: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("NewHasher error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestConfigDefaultsAreKratos(t *testing.T) {
	t.Parallel()
	got := Config{}.withDefaults()
	want := Config{
		Algorithm:  AlgorithmBcrypt,
		BcryptCost: 12,
		Argon2: Argon2Params{
			Memory:      128 * 1024,
			Iterations:  1,
			Parallelism: uint8(min(2*runtime.NumCPU(), 255)),
			SaltLength:  16,
			KeyLength:   32,
		},
		MaxConcurrent: runtime.NumCPU(),
	}
	if got != want {
		t.Errorf("Config{}.withDefaults() = %+v, want %+v", got, want)
	}
	if err := got.validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	set := Config{Algorithm: AlgorithmArgon2, BcryptCost: 5, Argon2: Argon2Params{Memory: 1, Iterations: 2, Parallelism: 3, SaltLength: 4, KeyLength: 5}, MaxConcurrent: 6}
	if got := set.withDefaults(); got != set {
		t.Errorf("withDefaults changed set fields: %+v", got)
	}
}
