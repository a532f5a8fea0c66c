package events_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/events"
)

// BenchmarkRelay measures rows per second through one relay: claim, PublishAsync to an embedded
// file-backed JetStream server (or TEST_NATS_URL), wait for the acks, mark, commit. The b.N rows
// (identity.created payloads of about 1 KiB) are committed before the timer starts, so only the
// relay is measured. Run:
//
//	go test -run '^$' -bench BenchmarkRelay -benchtime 20000x ./events/
func BenchmarkRelay(b *testing.B) {
	for _, batch := range []int{100, 500, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchmarkRelay(b, batch) })
	}
}

func benchmarkRelay(b *testing.B, batchSize int) {
	bb := setup(b)
	o := events.NewOutbox()
	identity, _ := json.Marshal(map[string]any{
		"id": uuid.New(), "schema_id": "default", "state": "active",
		"traits":          map[string]string{"email": "someone@example.com", "name": strings.Repeat("n", 600)},
		"metadata_public": map[string]string{"plan": "free"},
	})
	ev := events.Event{Type: events.TypeIdentityCreated, Data: events.IdentityData{
		Identity: identity,
		Flow:     &events.FlowRef{ID: uuid.New(), Type: "registration", Method: "password"},
		Request:  &events.RequestMeta{IP: "203.0.113.9", UserAgent: "bench", Method: "POST", URL: "http://127.0.0.1:4433/self-service/registration?flow=x"},
	}}
	for left := b.N; left > 0; left -= 1000 {
		evs := make([]events.Event, min(left, 1000))
		for i := range evs {
			evs[i] = ev
		}
		err := pgx.BeginFunc(b.Context(), bb.db, func(tx pgx.Tx) error {
			_, err := o.Insert(b.Context(), tx, evs...)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}

	r := events.NewRelay(bb.db, bb.js, o, events.RelayConfig{BatchSize: batchSize}, nil)
	done := make(chan struct{})
	published := 0 // only the relay's loop goroutine touches it
	events.SetOnBatch(r, func(n int) {
		published += n
		if published == b.N {
			close(done)
		}
	})
	b.ResetTimer()
	run(b, r)
	<-done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
