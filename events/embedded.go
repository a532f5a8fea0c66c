package events

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures the NATS server StartEmbedded runs inside the process, for
// `latch serve --dev` and tests, so that neither needs a NATS installation.
type EmbeddedConfig struct {
	// StoreDir is where JetStream keeps its files (the server adds a "jetstream" folder).
	// Required: events must survive a restart of the dev server, and a silent temporary folder
	// would lose them.
	StoreDir string
	// Host is the listen address. Default 127.0.0.1: a dev server is nobody else's business.
	Host string
	// Port is the client port: server.RANDOM_PORT (-1) picks a free one, 0 opens no TCP
	// listener at all (in-process connections only, see ConnectInProcess).
	Port int
	// SyncAlways fsyncs every write before acknowledging it. Off by default (fsync every two
	// minutes), which is fine because the outbox keeps published rows for its retention period.
	SyncAlways bool
}

// embeddedReadyTimeout bounds waiting for the embedded server to accept connections.
const embeddedReadyTimeout = 10 * time.Second

// StartEmbedded starts a NATS server with JetStream in this process and waits until it accepts
// connections. It installs no signal handlers (the process owns those) and logs through log at
// the matching levels, or not at all when log is nil. The caller shuts it down with Shutdown
// and WaitForShutdown.
func StartEmbedded(cfg EmbeddedConfig, log *slog.Logger) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("start embedded nats: StoreDir is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	opts := &server.Options{
		ServerName: "latch-embedded",
		Host:       cfg.Host,
		Port:       cfg.Port,
		DontListen: cfg.Port == 0,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		NoLog:      log == nil,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start embedded nats: %w", err)
	}
	if log != nil {
		ns.SetLoggerV2(natsLogger{log.With("component", "nats-server")}, false, false, false)
	}
	ns.Start()
	if !ns.ReadyForConnections(embeddedReadyTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("start embedded nats: not ready after %s", embeddedReadyTimeout)
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, errors.New("start embedded nats: JetStream did not start")
	}
	return ns, nil
}

// ConnectInProcess connects to ns through an in-memory pipe, without TCP, so it works even when
// the server opens no listener. The connection cannot reconnect once ns shuts down.
func ConnectInProcess(ns *server.Server) (*nats.Conn, error) {
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns), nats.Name("latch"))
	if err != nil {
		return nil, fmt.Errorf("connect to embedded nats: %w", err)
	}
	return nc, nil
}

// natsLogger sends the server's logs to slog. Fatal is logged as an error: the embedded server
// must never end the process.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
