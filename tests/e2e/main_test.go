// Package e2e proves that Kratos SDK users can switch to Latch unchanged: it builds the real
// `latch` binary, starts `latch serve --dev` against a fresh Postgres database and drives it only
// through the official Ory SDK (github.com/ory/client-go), FrontendAPI on the public URL and
// IdentityAPI on the admin URL, asserting what Kratos answers.
//
// It needs Postgres at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
// It never skips: without Postgres, or when the binary does not build or start, the run fails
// and says why.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchhq/latch/tests/latchtest"
)

// The processes every test talks to, started once by TestMain.
var (
	// primary runs the configuration of the brief: the session hook after password
	// registration and revoke_active_sessions after password login.
	primary *server
	// multiSession runs the same configuration without revoke_active_sessions. With that hook
	// an identity can never hold more than one active session (registration issues one, every
	// login revokes all others), so listing and revoking "my other sessions" can only be
	// exercised against a process that keeps them. It has a database of its own.
	multiSession *server
	// recoveryServer enables recovery and verification by code with Kratos'
	// use_continue_with_transitions, and require_verified_address after password login.
	recoveryServer *server
	// legacyRecovery enables them without the feature flag, and mails unknown recipients
	// (notify_unknown_recipients).
	legacyRecovery *server
	// mailbox is the SMTP server the courier of both recovery processes delivers to.
	mailbox *latchtest.SMTPReceiver
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run sets up, runs the tests and tears down; it returns the exit code so that deferred
// clean-ups run before os.Exit.
func run(m *testing.M) (code int) {
	tmp, err := os.MkdirTemp("", "latch-e2e-")
	if err != nil {
		return fail("create a temporary directory: %v", err)
	}
	defer os.RemoveAll(tmp)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	bin, err := latchtest.Prepare(ctx, "e2e", tmp)
	if err != nil {
		return fail("%v", err)
	}

	mailbox, err = latchtest.NewSMTPReceiver()
	if err != nil {
		return fail("start the SMTP receiver: %v", err)
	}
	defer mailbox.Close()

	var servers []*server
	defer func() {
		for _, s := range servers {
			if err := s.close(code != 0); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
				code = 1
			}
		}
	}()
	for _, opts := range []serverOptions{
		{Name: "primary", RevokeSessionsOnLogin: true},
		{Name: "multi-session", RevokeSessionsOnLogin: false},
		{Name: "recovery", Recovery: true, ContinueWithTransitions: true, RequireVerifiedAddress: true},
		{Name: "recovery-legacy", Recovery: true, NotifyUnknownRecipients: true},
	} {
		s, err := startServer(ctx, bin, filepath.Join(tmp, opts.Name), opts)
		if err != nil {
			return fail("%v", err)
		}
		servers = append(servers, s)
		switch opts.Name {
		case "primary":
			primary = s
		case "multi-session":
			multiSession = s
		case "recovery":
			recoveryServer = s
		default:
			legacyRecovery = s
		}
	}
	return m.Run()
}

// fail prints a set-up failure loudly and returns the exit code for it.
func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "e2e: FAIL: "+format+"\n", args...)
	return 1
}
