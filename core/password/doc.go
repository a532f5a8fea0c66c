// Package password owns password hashing, verification and the password policy: the parts of
// Kratos' `hashers.*` and `selfservice.methods.password.config` that can be decided from the
// password, the stored hash and the identifiers alone.
//
// It imports nothing from Latch and only core uses it (cmd builds the Hasher and hands it to
// core). It must not know about flows, HTTP, identities or the database. Callers hand it a
// password (and, for the policy, the identifiers) and get back a hash, nil, ErrMismatch,
// ErrUnsupportedHash or a *PolicyError; the flow code decides what a failed login shows (Kratos'
// 4000006) and the HTTP layer renders *PolicyError as a Kratos UI message.
//
// # Compatibility
//
// Hashes move between Kratos and Latch in both directions: bcrypt hashes are written as "$2a$"
// and argon2id hashes in exactly Kratos' PHC form
// "$argon2id$v=19$m=<KiB>,t=<t>,p=<p>$<salt>$<key>" (unpadded standard base64). Compare also
// reads bcrypt "$2b$"/"$2y$" and argon2i hashes written by other software, whatever the
// configured algorithm. Kratos' other import formats (pbkdf2, scrypt, SSHA, md5-crypt, ...) are
// not read here; Compare returns ErrUnsupportedHash for them.
//
// # Why a semaphore
//
// A password hash is the most expensive thing Latch does: on the 2-core project machine one
// bcrypt cost-12 hash costs ~296 ms of one core and one argon2id hash with Kratos' defaults
// ~58 ms of both cores, so the whole box manages ~7 and ~20 hashes per second (the project's
// measured limits, "Password hashing"). Running more hashes at once than there are cores
// adds no throughput, only latency, and argon2 allocates its whole memory (128 MiB by default)
// for every hash in flight: a burst of a few hundred logins would exhaust the machine's memory.
// Every Hash, Compare and CompareUnknown therefore takes one of Config.MaxConcurrent slots and
// waits for one, honouring its context, when all are taken. Peak hashing memory is then bounded
// by MaxConcurrent × argon2 memory, and a login burst turns into a queue instead of an OOM kill.
// A hash that has started cannot be interrupted; cancellation only ends the wait for a slot.
//
// # Hashes we did not write
//
// The parameters of a stored hash are attacker-influenced when hashes are imported, so Compare
// bounds them before doing any work (bcrypt cost, argon2 memory, iterations, parallelism, salt and
// key length; the configured parameters always pass) and returns ErrUnsupportedHash instead of
// allocating terabytes or hashing for hours.
package password
