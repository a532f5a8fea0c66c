package events_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/events/natstest"
)

func TestDeclareStream(t *testing.T) {
	t.Parallel()
	b := setup(t) // declares it once with the defaults
	s, err := events.DeclareStream(t.Context(), b.js, events.StreamConfig{})
	if err != nil {
		t.Fatalf("declaring again: %v", err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.Name != events.StreamName || len(c.Subjects) != 1 || c.Subjects[0] != "latch.events.>" ||
		c.Retention != jetstream.LimitsPolicy || c.Storage != jetstream.FileStorage ||
		c.MaxAge != 7*24*time.Hour || c.Duplicates != 10*time.Minute || c.Replicas != 1 {
		t.Errorf("stream config %+v", c)
	}
	if _, err := events.DeclareStream(t.Context(), b.js, events.StreamConfig{MaxAge: time.Minute}); err == nil {
		t.Error("a duplicates window longer than MaxAge was accepted")
	}
	if b.ns == nil {
		return // do not reconfigure a shared external server's stream
	}
	s, err = events.DeclareStream(t.Context(), b.js, events.StreamConfig{MaxAge: time.Hour, Duplicates: time.Minute})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if c := s.CachedInfo().Config; c.MaxAge != time.Hour || c.Duplicates != time.Minute {
		t.Errorf("updated stream has MaxAge %s, Duplicates %s", c.MaxAge, c.Duplicates)
	}
}

func TestStartEmbedded_InProcessOnly(t *testing.T) {
	t.Parallel()
	ns, err := events.StartEmbedded(events.EmbeddedConfig{StoreDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	if ns.Addr() != nil {
		t.Errorf("Port 0 opened a listener on %s", ns.Addr())
	}
	nc, err := events.ConnectInProcess(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.DeclareStream(t.Context(), js, events.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(t.Context(), events.Subject(events.TypeSessionRevoked), []byte(`{}`), jetstream.WithMsgID("x"))
	if err != nil || ack.Stream != events.StreamName {
		t.Fatalf("publish = %+v, %v", ack, err)
	}
	ack, err = js.Publish(t.Context(), events.Subject(events.TypeSessionRevoked), []byte(`{}`), jetstream.WithMsgID("x"))
	if err != nil || !ack.Duplicate {
		t.Errorf("second publish with the same Nats-Msg-Id = %+v, %v; want a duplicate", ack, err)
	}
}

func TestStartEmbedded_NeedsStoreDir(t *testing.T) {
	t.Parallel()
	if _, err := events.StartEmbedded(events.EmbeddedConfig{}, nil); err == nil {
		t.Error("started without a store directory")
	}
}

func TestNatstest_RestartKeepsPortAndStore(t *testing.T) {
	t.Parallel()
	b := setupOwnNATS(t)
	url := b.ns.ClientURL()
	if _, err := b.js.Publish(t.Context(), events.Subject(b.typ), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	restarted := natstest.Restart(t, b.ns)
	if restarted.ClientURL() != url {
		t.Errorf("restarted on %s, want %s", restarted.ClientURL(), url)
	}
	// The client reconnects by itself; the stream and its message survived in the store. A request
	// sent as the old connection died is lost, so each attempt has its own short deadline.
	deadline := time.Now().Add(waitTimeout)
	var (
		s   jetstream.Stream
		err error
	)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		s, err = b.js.Stream(ctx, events.StreamName)
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("restarted stream holds %d messages, want 1", n)
	}
}
