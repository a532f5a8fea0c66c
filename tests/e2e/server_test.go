package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	client "github.com/ory/client-go"

	"github.com/latchhq/latch/tests/latchtest"
)

const (
	readyTimeout = 60 * time.Second // how long `latch serve` may take to answer /health/ready
	stopTimeout  = 30 * time.Second // how long it may take to exit after SIGTERM
)

// serverOptions are what differs between the processes the suite starts.
type serverOptions struct {
	Name                  string // for messages and the working directory
	RevokeSessionsOnLogin bool   // selfservice.flows.login.after.password.hooks: [revoke_active_sessions]
	// Recovery enables recovery and verification by code (show_verification_ui after password
	// registration, revoke_active_sessions after recovery, max_submissions 3) with a courier
	// that mails to the suite's SMTP receiver.
	Recovery                bool
	ContinueWithTransitions bool // feature_flags.use_continue_with_transitions
	NotifyUnknownRecipients bool // selfservice.flows.recovery.notify_unknown_recipients
	RequireVerifiedAddress  bool // selfservice.flows.login.after.password.hooks: [require_verified_address]
}

// server is one running `latch serve --dev` process with its own database.
type server struct {
	name      string
	publicURL string // no trailing slash: client-go appends paths that start with "/"
	adminURL  string
	public    *client.APIClient // FrontendAPI (and the public /schemas) on serve.public
	admin     *client.APIClient // IdentityAPI on serve.admin

	db   *latchtest.Database
	proc *latchtest.Process
}

// startServer creates a fresh database, writes the configuration into dir and starts
// `latch serve --dev -c <file>`, returning once both ports answer GET /health/ready. On error
// it leaves nothing behind: no process, no database.
func startServer(ctx context.Context, bin, dir string, opts serverOptions) (*server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	db, err := latchtest.CreateDatabase(ctx, "latch_e2e")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Name, err)
	}
	s := &server{name: opts.Name, db: db}
	if err := s.start(ctx, bin, dir, opts); err != nil {
		s.abort()
		return nil, fmt.Errorf("%s: %w", opts.Name, err)
	}
	return s, nil
}

// start runs the process and waits until it is ready.
func (s *server) start(ctx context.Context, bin, dir string, opts serverOptions) error {
	ports, err := latchtest.PickFreePorts(2)
	if err != nil {
		return err
	}
	s.publicURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	s.adminURL = "http://127.0.0.1:" + strconv.Itoa(ports[1])
	s.public = newClient(s.publicURL, nil)
	s.admin = newClient(s.adminURL, nil)

	cfgPath := filepath.Join(dir, "latch.yaml")
	if err := latchtest.WriteConfig(cfgPath, filepath.Join("testdata", "latch.yaml.tmpl"), configValues{
		DSN: s.db.DSN, PublicPort: ports[0], AdminPort: ports[1], RevokeSessionsOnLogin: opts.RevokeSessionsOnLogin,
		Recovery: opts.Recovery, ContinueWithTransitions: opts.ContinueWithTransitions,
		NotifyUnknownRecipients: opts.NotifyUnknownRecipients, RequireVerifiedAddress: opts.RequireVerifiedAddress,
		SMTPURI: mailbox.ConnectionURI(),
	}); err != nil {
		return err
	}

	// --dev keeps its local data (embedded NATS) under the working directory.
	s.proc, err = latchtest.StartProcess(latchtest.Cmd{
		Name: "latch serve (" + s.name + ")", Bin: bin, Args: []string{"serve", "--dev", "-c", cfgPath},
		Dir: dir, StopTimeout: stopTimeout,
	})
	if err != nil {
		return err
	}
	if err := s.proc.WaitReady(ctx, readyTimeout, s.publicURL, s.adminURL); err != nil {
		return fmt.Errorf("%w\n%s", err, s.proc.Dump())
	}
	return nil
}

// abort undoes a start that failed: it kills the process if it runs and drops the database.
func (s *server) abort() {
	if s.proc != nil {
		s.proc.Kill()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.db.Drop(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %s: %v\n", s.name, err)
	}
}

// close stops the process (SIGTERM, then waits; SIGKILL after stopTimeout) and drops its
// database. It reports a process that died on its own or did not exit cleanly, printing its
// output then and whenever dumpOutput is set.
func (s *server) close(dumpOutput bool) error {
	var errs []error
	if err := s.proc.Stop(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 || dumpOutput {
		fmt.Fprintln(os.Stderr, s.proc.Dump())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.db.Drop(ctx); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
	}
	return errors.Join(errs...)
}

// newClient is an Ory SDK client for one base URL. header is added to every request
// (DefaultHeader), which is how a client sends `Authorization: Bearer`: ToSession has no
// parameter for it.
func newClient(baseURL string, header map[string]string) *client.APIClient {
	cfg := client.NewConfiguration()
	cfg.Servers = client.ServerConfigurations{{URL: baseURL}}
	cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second} // no cookie jar: native app
	for k, v := range header {
		cfg.DefaultHeader[k] = v
	}
	return client.NewAPIClient(cfg)
}

// configValues fill testdata/latch.yaml.tmpl.
type configValues struct {
	DSN                   string
	PublicPort, AdminPort int
	RevokeSessionsOnLogin bool

	Recovery, ContinueWithTransitions, NotifyUnknownRecipients, RequireVerifiedAddress bool
	SMTPURI                                                                            string
}
