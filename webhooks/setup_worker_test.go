package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/latchhq/latch/core/dbtest"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/events/natstest"
)

// workerBundle is what a worker test needs: a fresh database, a JetStream with LATCH_EVENTS, a
// registry the test fills, a loopback-allowed sender, and names unique to the test so that a
// shared TEST_NATS_URL server does not mix tests up.
type workerBundle struct {
	db       *pgxpool.Pool
	js       jetstream.JetStream
	reg      *Registry
	sender   *Sender
	method   string // the flow method of this test's hooks and events
	consumer string
	metrics  *Metrics       // given to the workers start runs; nil: unregistered
	ns       *server.Server // the embedded NATS server; nil with TEST_NATS_URL
}

func setupWorker(t testing.TB) *workerBundle {
	t.Helper()
	return setupWorkerWith(t, natstest.Start)
}

// setupWorkerOwnNATS is setupWorker with a NATS server of the test's own, which it may stop.
func setupWorkerOwnNATS(t testing.TB) *workerBundle {
	t.Helper()
	return setupWorkerWith(t, natstest.StartEmbedded)
}

func setupWorkerWith(t testing.TB, startNATS func(testing.TB) (*server.Server, string)) *workerBundle {
	t.Helper()
	db := dbtest.New(t)
	ns, url := startNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := events.DeclareStream(ctx, js, events.StreamConfig{}); err != nil {
		t.Fatalf("declare stream: %v", err)
	}
	reg, err := NewRegistry(nil)
	if err != nil {
		t.Fatal(err)
	}
	sender := NewSender(SenderConfig{AllowLoopback: true})
	t.Cleanup(sender.Close)
	suffix := randomHex(4)
	return &workerBundle{db: db, js: js, reg: reg, sender: sender, ns: ns,
		method: "password-" + suffix, consumer: "latch-webhooks-" + suffix}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// hook returns a registration hook of this test posting to url with a short timeout.
func (b *workerBundle) hook(id, url string) Hook {
	return Hook{ID: id, URL: url, Timeout: 5 * time.Second, SigningSecrets: []string{testSecret},
		Trigger: Trigger{EventType: events.TypeIdentityCreated, Flow: "registration", Method: b.method}}
}

// testSecret signs every test hook's requests.
var testSecret = NewSecret()

func (b *workerBundle) setHooks(t testing.TB, hooks ...Hook) {
	t.Helper()
	if err := b.reg.Set(hooks); err != nil {
		t.Fatal(err)
	}
}

// runningWorker is a worker running in the background until stop (or the test's end).
type runningWorker struct {
	*Worker
	cancel   context.CancelFunc
	finished chan struct{} // closed when Run returned
	err      error         // Run's result, once finished
}

// start runs a worker with cfg (test defaults: this test's consumer, a fast claim loop, a short
// shutdown) and stops it when the test ends.
func (b *workerBundle) start(t testing.TB, cfg WorkerConfig) *runningWorker {
	t.Helper()
	if cfg.Consumer == "" {
		cfg.Consumer = b.consumer
	}
	if cfg.ClaimInterval == 0 {
		cfg.ClaimInterval = 50 * time.Millisecond
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 100 * time.Millisecond
	}
	w, err := NewWorker(b.db, b.js, b.reg, b.sender, cfg, b.metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rw := &runningWorker{Worker: w, cancel: cancel, finished: make(chan struct{})}
	go func() {
		defer close(rw.finished)
		rw.err = w.Run(ctx)
	}()
	t.Cleanup(func() { rw.stop(t) })
	return rw
}

// stop ends the worker like SIGTERM and waits for Run to return.
func (rw *runningWorker) stop(t testing.TB) {
	t.Helper()
	rw.cancel()
	select {
	case <-rw.finished:
		if rw.err != nil {
			t.Errorf("worker Run: %v", rw.err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("worker did not stop within 30 s")
	}
}

// registrationEvent is an identity.created event of a registration flow with b.method.
func (b *workerBundle) registrationEvent() events.Envelope {
	identityID := uuid.New()
	data, _ := json.Marshal(events.IdentityData{
		Identity: json.RawMessage(fmt.Sprintf(`{"id":%q,"traits":{"email":"%s@example.com"}}`, identityID, identityID)),
		Flow:     &events.FlowRef{ID: uuid.New(), Type: "registration", Method: b.method, TransientPayload: json.RawMessage(`{"plan":"pro"}`)},
		Request:  &events.RequestMeta{Method: "POST", URL: "https://id.example/self-service/registration", Headers: map[string][]string{"Accept-Language": {"fr"}}},
	})
	return events.Envelope{ID: uuid.New(), Type: events.TypeIdentityCreated,
		Timestamp: time.Now().UTC().Truncate(time.Microsecond), Data: data}
}

// publish puts env on the stream with msgID as Nats-Msg-Id (the relay uses the event id).
func (b *workerBundle) publish(t testing.TB, env events.Envelope, msgID string) {
	t.Helper()
	raw, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.js.Publish(ctx, events.Subject(env.Type), raw, jetstream.WithMsgID(msgID)); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// publishN publishes n fresh registration events and returns their ids.
func (b *workerBundle) publishN(t testing.TB, n int) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, n)
	for i := range ids {
		env := b.registrationEvent()
		b.publish(t, env, env.ID.String())
		ids[i] = env.ID
	}
	return ids
}

// sinkRequest is one request a sink received.
type sinkRequest struct {
	header http.Header
	body   []byte
	at     time.Time
}

// sink is a webhook receiver that records requests and answers with respond (nil: 204).
type sink struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []sinkRequest
	arrived chan sinkRequest
}

func newSink(t testing.TB, respond func(w http.ResponseWriter, r *http.Request, n int)) *sink {
	t.Helper()
	s := &sink{arrived: make(chan sinkRequest, 100000)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := sinkRequest{header: r.Header.Clone(), body: body, at: time.Now()}
		s.mu.Lock()
		s.reqs = append(s.reqs, req)
		n := len(s.reqs)
		s.mu.Unlock()
		select {
		case s.arrived <- req:
		default:
		}
		if respond == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		respond(w, r, n)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sink) requests() []sinkRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkRequest(nil), s.reqs...)
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// eventually polls cond every few milliseconds until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countDeliveries counts rows matching a SQL condition on webhook_deliveries.
func countDeliveries(t testing.TB, db *pgxpool.Pool, where string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatalf("count deliveries: %v", err)
	}
	return n
}

// deliveryOf loads the delivery of (event, hook), failing the test when there is none.
func deliveryOf(t testing.TB, db *pgxpool.Pool, event uuid.UUID, hook string) *Delivery {
	t.Helper()
	var id uuid.UUID
	err := db.QueryRow(context.Background(), `SELECT id FROM webhook_deliveries WHERE event_id = $1 AND hook_id = $2`, event, hook).Scan(&id)
	if err != nil {
		t.Fatalf("delivery of event %s to hook %s: %v", event, hook, err)
	}
	d, err := NewStore(db).Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// seed inserts a delivery directly, as an earlier fan-out (or a dead worker) left it: pending and
// due now unless changed by the SQL assignments in set (e.g. "lease_until = now() - interval
// '1 second'"). It returns the delivery id.
func seed(t testing.TB, db *pgxpool.Pool, hook, url string, set ...string) uuid.UUID {
	t.Helper()
	id := uuid.Must(uuid.NewV7())
	ctx := context.Background()
	_, err := db.Exec(ctx, `INSERT INTO webhook_deliveries (id, event_id, hook_id, event_type, url, body, content_type,
		state, next_attempt_at, event_time) VALUES ($1, $2, $3, 'identity.created', $4, $5, 'application/json', 'pending', now(), now())`,
		id, uuid.New(), hook, url, []byte(`{"seeded":true}`))
	if err != nil {
		t.Fatalf("seed delivery: %v", err)
	}
	for _, s := range set {
		if _, err := db.Exec(ctx, `UPDATE webhook_deliveries SET `+s+` WHERE id = $1`, id); err != nil {
			t.Fatalf("seed delivery: %s: %v", s, err)
		}
	}
	return id
}

// stateOf reads a delivery's state.
func stateOf(t testing.TB, db *pgxpool.Pool, id uuid.UUID) string {
	t.Helper()
	var s string
	if err := db.QueryRow(context.Background(), `SELECT state FROM webhook_deliveries WHERE id = $1`, id).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}
