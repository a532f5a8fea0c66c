package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// Environment variables that name the admin API when -e/--endpoint is not given. Kratos' CLI
// reads KRATOS_ADMIN_URL; Latch's own name wins when both are set.
const (
	EnvEndpoint       = "LATCH_ADMIN_URL"
	EnvKratosEndpoint = "KRATOS_ADMIN_URL"
)

// Exit statuses: 0 done, 1 something failed (each failure was reported), 2 the command line
// was wrong (the usage was shown).
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	defaultWait = 30 * time.Second
)

// Streams are the process's standard streams. When Stderr is a terminal (an *os.File that is
// one), bulk commands draw a progress bar on it.
type Streams struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Groups are the commands this package serves: main dispatches args[0] to Main when it is one.
var Groups = []string{"identities", "sessions", "endpoints", "deliveries"}

// Main runs `latch <group> <action> ...` (args[0] is the group) and returns the exit status.
// version goes into the User-Agent.
func Main(ctx context.Context, args []string, std Streams, env []string, version string) int {
	r := &runner{std: std, env: env, version: version}
	return r.main(ctx, args)
}

// runner carries what every command needs; the context is passed along, never kept.
type runner struct {
	std           Streams
	env           []string
	version       string
	forceProgress bool // draw progress bars on any stderr: tests, whose stderr is a buffer
}

// action is one subcommand: `identities get`.
type action struct {
	name    string
	args    string // the positional arguments, for the usage line
	summary string
	run     func(ctx context.Context, c *command) error
}

type group struct {
	summary string
	actions []action
}

func (r *runner) groups() map[string]group {
	return map[string]group{
		"identities": {"manage identities (Kratos' admin identity API)", []action{
			{"list", "", "list identities, following every page", identitiesList},
			{"get", "ID...", "show identities", identitiesGet},
			{"import", "[FILE...]", "create identities from JSON files or standard input", identitiesImport},
			{"delete", "ID...", "delete identities, with their credentials and sessions", identitiesDelete},
		}},
		"sessions": {"revoke sessions", []action{
			{"revoke", "ID... | --identity ID...", "revoke sessions, or every session of identities", sessionsRevoke},
		}},
		"endpoints": {"manage webhook endpoints", []action{
			{"list", "", "list webhook endpoints, configured and stored", endpointsList},
			{"create", "--url URL [flags] | --file FILE", "create a webhook endpoint; prints its signing secret", endpointsCreate},
			{"test", "ID...", "send a signed webhook.test event now and show the attempt", endpointsTest},
			{"enable", "ID...", "enable endpoints (clears their failure streak)", endpointsEnable},
			{"disable", "ID...", "disable endpoints: their events wait as dead deliveries", endpointsDisable},
		}},
		"deliveries": {"read and replay the webhook delivery log", []action{
			{"list", "", "list deliveries, newest first", deliveriesList},
			{"get", "ID...", "show deliveries with every attempt", deliveriesGet},
			{"replay", "ID... | --state STATE --since TIME [filters]", "send deliveries again, same webhook-id", deliveriesReplay},
		}},
	}
}

func (r *runner) main(ctx context.Context, args []string) int {
	if len(args) == 0 || !slices.Contains(Groups, args[0]) {
		fmt.Fprintf(r.std.Stderr, "latch: not an operator command: %q\n", strings.Join(args, " "))
		return exitUsage
	}
	name := args[0]
	g := r.groups()[name]
	if len(args) < 2 {
		fmt.Fprintf(r.std.Stderr, "latch: %s: missing action\n\n", name)
		r.groupUsage(r.std.Stderr, name, g)
		return exitUsage
	}
	switch args[1] {
	case "help", "-h", "-help", "--help":
		r.groupUsage(r.std.Stdout, name, g)
		return exitOK
	}
	for _, a := range g.actions {
		if a.name == args[1] {
			return r.runAction(ctx, name, a, args[2:])
		}
	}
	fmt.Fprintf(r.std.Stderr, "latch: %s: unknown action %q\n\n", name, args[1])
	r.groupUsage(r.std.Stderr, name, g)
	return exitUsage
}

func (r *runner) groupUsage(w io.Writer, name string, g group) {
	fmt.Fprintf(w, "latch %s: %s\n\nUsage:\n", name, g.summary)
	for _, a := range g.actions {
		fmt.Fprintf(w, "  latch %s\n      %s\n", strings.TrimSpace(name+" "+a.name+" "+a.args), a.summary)
	}
	fmt.Fprintf(w, "\nEvery action takes -e/--endpoint URL (else $%s, else $%s), --format table|json|json-pretty,\n"+
		"-q/--quiet and --timeout. `latch %s ACTION -h` lists an action's flags. See docs/CLI.md.\n", EnvEndpoint, EnvKratosEndpoint, name)
}

// errReported means every failure was already printed: exit 1 without another line.
var errReported = errors.New("failures reported")

// usageError is a command-line mistake: exit 2, with the action's usage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

func (r *runner) runAction(ctx context.Context, groupName string, a action, args []string) int {
	c := &command{runner: r, name: groupName + " " + a.name, action: a}
	c.fs = flag.NewFlagSet("latch "+c.name, flag.ContinueOnError)
	c.fs.SetOutput(io.Discard) // parse errors are printed once, below, with the usage
	c.fs.Usage = func() {}
	c.commonFlags()
	c.args = args
	err := a.run(ctx, c)
	var uerr *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		c.usage(r.std.Stdout)
		return exitOK
	case errors.As(err, &uerr):
		fmt.Fprintf(r.std.Stderr, "latch: %s: %s\n\n", c.name, uerr.msg)
		c.usage(r.std.Stderr)
		return exitUsage
	case errors.Is(err, errReported):
		return exitFailed
	default:
		fmt.Fprintf(r.std.Stderr, "latch: %s: %v\n", c.name, err)
		return exitFailed
	}
}

// command is one run of one action: its flags, output and client.
type command struct {
	*runner
	name   string // "identities get"
	action action
	fs     *flag.FlagSet
	args   []string // the raw arguments after the action

	endpoint string
	format   string
	quiet    bool
	timeout  time.Duration

	client *Client
}

func (c *command) commonFlags() {
	c.fs.StringVar(&c.endpoint, "e", "", "the admin API's `URL` (else $"+EnvEndpoint+", else $"+EnvKratosEndpoint+")")
	c.fs.StringVar(&c.endpoint, "endpoint", "", "same as -e")
	c.fs.StringVar(&c.format, "format", "table", "output `format`: table, json or json-pretty")
	c.fs.BoolVar(&c.quiet, "q", false, "print only ids, one a line (no table, no summary)")
	c.fs.BoolVar(&c.quiet, "quiet", false, "same as -q")
	c.fs.DurationVar(&c.timeout, "timeout", defaultWait, "how long one request may take")
}

func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: latch %s [flags]\n  %s\n\nFlags:\n", strings.TrimSpace(c.name+" "+c.action.args), c.action.summary)
	c.fs.SetOutput(w)
	c.fs.PrintDefaults()
	c.fs.SetOutput(io.Discard)
}

// parse reads the flags, which may come before, between and after the positional arguments
// (`identities get ID --format json`), as users of Kratos' CLI expect; after "--" everything is
// positional. It checks the common flags and returns the positional arguments.
func (c *command) parse() ([]string, error) {
	var pos []string
	args := c.args
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		rest := c.fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch c.format {
	case "table", "json", "json-pretty":
	default:
		return nil, usagef("--format must be table, json or json-pretty, not %q", c.format)
	}
	if c.timeout <= 0 {
		return nil, usagef("--timeout must be positive")
	}
	return pos, nil
}

// connect resolves the endpoint and makes the client. A missing endpoint is an error (exit 1),
// as in Kratos' CLI: the command line was right, the environment was not.
func (c *command) connect() error {
	endpoint := c.endpoint
	source := "-e/--endpoint"
	for _, name := range []string{EnvEndpoint, EnvKratosEndpoint} {
		if endpoint != "" {
			break
		}
		endpoint, source = c.getenv(name), "$"+name
	}
	if endpoint == "" {
		return fmt.Errorf("no admin API endpoint: pass -e URL (e.g. -e http://127.0.0.1:4434) or set %s", EnvEndpoint)
	}
	cl, err := NewClient(endpoint, c.timeout, "latch-cli/"+c.version)
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	c.client = cl
	return nil
}

func (c *command) getenv(name string) string {
	v := ""
	for _, kv := range c.env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			v = val // the last one wins, as in os.Getenv on a duplicated environment
		}
	}
	return v
}

// stderrIsTerminal reports whether progress may be drawn.
func (c *command) stderrIsTerminal() bool {
	if c.forceProgress {
		return true
	}
	f, ok := c.std.Stderr.(*os.File)
	return ok && isTerminal(f)
}
