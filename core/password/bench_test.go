package password

// Results on the 2-core project machine (Intel Xeon 2.0 GHz, Go 1.26.8, x/crypto v0.58.0),
// median of 3, from
//
//	go test -count=3 -run '^$' -bench . -benchtime 3s ./core/password/
//
//	                  Hash       Compare    memory per op
//	bcrypt cost 4     0.95 ms    0.94 ms    5 KB
//	bcrypt cost 10    55.6 ms    58.6 ms    5 KB
//	bcrypt cost 12    221 ms     229 ms     5 KB
//	argon2 defaults   58.9 ms    59.5 ms    128 MiB (m=131072 KiB, t=1, p=4)
//
// One hash at a time; bcrypt uses one core, argon2 with p=4 both. Machine throughput is about
// cores / bcrypt time and 1 / argon2 time, whatever MaxConcurrent is.

import (
	"testing"
)

// benchPassword is 31 bytes, like the password in the project's hashing measurements.
var benchPassword = []byte("benchmark-password-31-bytes-xyz")

// benchConfigs are the settings worth knowing the cost of: bcrypt at the test cost, at x/crypto's
// default and at Kratos' default, and argon2id with Kratos' defaults (128 MiB, t=1, p=2×NumCPU).
var benchConfigs = []struct {
	name string
	cfg  Config
}{
	{"bcrypt/cost=4", Config{Algorithm: AlgorithmBcrypt, BcryptCost: 4}},
	{"bcrypt/cost=10", Config{Algorithm: AlgorithmBcrypt, BcryptCost: 10}},
	{"bcrypt/cost=12", Config{Algorithm: AlgorithmBcrypt, BcryptCost: 12}},
	{"argon2/defaults", Config{Algorithm: AlgorithmArgon2}},
}

// BenchmarkHash measures one Hash at a time, slot wait included (never contended here).
func BenchmarkHash(b *testing.B) {
	for _, bc := range benchConfigs {
		b.Run(bc.name, func(b *testing.B) {
			h := newTestHasher(b, bc.cfg)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.Hash(b.Context(), benchPassword); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompare measures one successful Compare at a time; a mismatch costs the same.
func BenchmarkCompare(b *testing.B) {
	for _, bc := range benchConfigs {
		b.Run(bc.name, func(b *testing.B) {
			h := newTestHasher(b, bc.cfg)
			hash, err := h.Hash(b.Context(), benchPassword)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := h.Compare(b.Context(), benchPassword, hash); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
