package events

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfig tunes LATCH_EVENTS. The zero value works: every field left at zero takes the
// default named in its comment.
type StreamConfig struct {
	// MaxAge is how long events stay readable in the stream (replay, new consumers catching up).
	// Default 7 days.
	MaxAge time.Duration
	// Duplicates is the window in which JetStream drops a message whose Nats-Msg-Id it has seen.
	// It must exceed the longest gap between a relay publishing a row and marking it (a crash
	// and restart). Default 10 min; at most MaxAge.
	Duplicates time.Duration
	// Replicas is the number of copies in a NATS cluster. Default 1 (single server, embedded).
	Replicas int
	// Storage is where the server keeps messages. The zero value is jetstream.FileStorage, the
	// default: events must survive a server restart.
	Storage jetstream.StorageType
}

// Defaults of StreamConfig.
const (
	StreamMaxAgeDefault     = 7 * 24 * time.Hour
	StreamDuplicatesDefault = 10 * time.Minute
)

// withDefaults returns c with every zero field set to its default.
func (c StreamConfig) withDefaults() StreamConfig {
	if c.MaxAge <= 0 {
		c.MaxAge = StreamMaxAgeDefault
	}
	if c.Duplicates <= 0 {
		c.Duplicates = StreamDuplicatesDefault
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	return c
}

// DeclareStream creates LATCH_EVENTS, or updates it to cfg, capturing latch.events.> with limits
// retention (any number of independent consumers; messages age out by MaxAge), so that the
// stream exists before anything publishes or consumes and never appears as a side effect.
// `latch serve` and `latch worker` call it at start-up. Changing Storage on an existing stream
// is refused by the server.
func DeclareStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	cfg = cfg.withDefaults()
	if cfg.Duplicates > cfg.MaxAge {
		return nil, fmt.Errorf("declare stream %s: duplicates window %s exceeds max age %s",
			StreamName, cfg.Duplicates, cfg.MaxAge)
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "Latch events, published from the Postgres outbox (Nats-Msg-Id = event id)",
		Subjects:    []string{SubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     cfg.Storage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.MaxAge,
		Duplicates:  cfg.Duplicates,
	})
	if err != nil {
		return nil, fmt.Errorf("declare stream %s: %w", StreamName, err)
	}
	return s, nil
}
