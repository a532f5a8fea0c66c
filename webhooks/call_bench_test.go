package webhooks

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkCallOverhead measures what the NATS round trip and the Responder add to a
// before-persist call: the p50 and p99 of Caller.Call through an embedded NATS server to a
// loopback endpoint ("nats"), against Sender.Send to the same endpoint ("direct"). Calls are
// sequential, as a flow makes them; recording runs, as in production.
func BenchmarkCallOverhead(b *testing.B) {
	bundle := setupCall(b)
	e := newEndpoint(b, nil)
	bundle.setHooks(b, callHook("bench", e.URL, true))
	hook, _ := bundle.reg.Get("bench")
	bundle.startResponder(b, callConnect(b, bundle.natsURL), ResponderConfig{})
	ctx := json.RawMessage(callCtx)

	b.Run("direct", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			res := bundle.sender.Send(context.Background(), Attempt{Hook: hook, DeliveryID: uuid.NewString(), Body: ctx})
			lat = append(lat, time.Since(start))
			if !res.Success {
				b.Fatalf("send: %+v", res)
			}
		}
		reportLatency(b, lat)
	})
	b.Run("nats", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			rep, err := bundle.caller.Call(context.Background(), CallRequest{HookID: "bench", Ctx: ctx, Deadline: start.Add(5 * time.Second)})
			lat = append(lat, time.Since(start))
			if err != nil || rep.Outcome != OutcomeContinue {
				b.Fatalf("call: %+v, %v", rep, err)
			}
		}
		reportLatency(b, lat)
	})
}

// reportLatency reports the p50 and p99 of lat in microseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	at := func(q float64) float64 {
		return float64(sorted[min(len(sorted)-1, int(q*float64(len(sorted))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
