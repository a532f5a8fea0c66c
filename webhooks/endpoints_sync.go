package webhooks

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// EndpointSync keeps a Registry's database half (SetDynamic) equal to what the admin API wrote,
// in every process: it LISTENs on latch_webhooks for an immediate reload and polls the one-row
// version every PollInterval, so a NOTIFY lost while its connection was down delays a change by
// one poll at most.
type EndpointSync struct {
	db      *pgxpool.Pool
	reg     *Registry
	log     *slog.Logger
	poll    time.Duration
	version int64 // of the last load; -1 before the first
	loaded  chan struct{}
}

// EndpointPollDefault is how often EndpointSync reads the version when no NOTIFY came: well
// inside the second a change has to take effect in.
const EndpointPollDefault = 500 * time.Millisecond

// NewEndpointSync returns a sync of reg from db; poll zero means EndpointPollDefault.
func NewEndpointSync(db *pgxpool.Pool, reg *Registry, poll time.Duration, log *slog.Logger) *EndpointSync {
	if poll <= 0 {
		poll = EndpointPollDefault
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &EndpointSync{db: db, reg: reg, log: log, poll: poll, version: -1, loaded: make(chan struct{})}
}

// Loaded is closed once the first load is in the registry. A worker waits for it before it fans
// out or claims anything: without the stored endpoints it would miss their events and take
// their pending deliveries for ones of a removed hook.
func (s *EndpointSync) Loaded() <-chan struct{} { return s.loaded }

// Run loads at once (retrying until the database answers) and then whenever the version moves,
// until ctx ends.
func (s *EndpointSync) Run(ctx context.Context) error {
	kick := make(chan struct{}, 1)
	go s.listen(ctx, kick)
	t := time.NewTicker(s.poll)
	defer t.Stop()
	wait := retryMin
	for {
		err := s.refresh(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("webhook endpoints reload failed; retrying", "error", err, "in", wait)
			sleep(ctx, wait)
			wait = min(2*wait, retryMax)
			continue
		}
		wait = retryMin
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-kick:
		}
	}
}

// refresh reloads when the version differs from the last load's.
func (s *EndpointSync) refresh(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	if s.version >= 0 {
		var v int64
		if err := s.db.QueryRow(qctx, `SELECT version FROM webhook_config_version`).Scan(&v); err != nil {
			return fmt.Errorf("read webhook config version: %w", err)
		}
		if v == s.version {
			return nil
		}
	}
	endpoints, disabled, v, err := loadDynamic(qctx, s.db)
	if err != nil {
		return err
	}
	if err := s.reg.SetDynamic(endpoints, disabled); err != nil {
		// The valid ones are in force; a stored endpoint that no longer validates is named.
		s.log.Error("some webhook endpoints are invalid and left out", "error", err)
	}
	if s.version < 0 {
		close(s.loaded)
	}
	s.version = v
	return nil
}

// listen signals kick at every NOTIFY on latch_webhooks, re-establishing its connection with
// backoff when it drops (the poll covers the gap).
func (s *EndpointSync) listen(ctx context.Context, kick chan<- struct{}) {
	wait := retryMin
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, kick)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("webhook endpoints LISTEN connection lost; polling meanwhile", "error", err, "retry_in", wait)
		sleep(ctx, wait)
		wait = min(2*wait, retryMax)
	}
}

func (s *EndpointSync) listenOnce(ctx context.Context, kick chan<- struct{}) error {
	pc, err := s.db.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		select {
		case kick <- struct{}{}:
		default:
		}
	}
}
