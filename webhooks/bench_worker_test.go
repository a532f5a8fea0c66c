package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/latchhq/latch/events"
)

// BenchmarkDrain measures how fast a worker drains a backlog of already-published events into
// a local receiver (204, keep-alive): b.N deliveries, spread over 1 or 4 hooks (each event
// makes one delivery per hook). It reports deliveries/s to the receiver and recorded/s (every
// delivery marked succeeded in Postgres).
//
//	go test ./webhooks/ -run '^$' -bench BenchmarkDrain -benchtime 20000x
func BenchmarkDrain(b *testing.B) {
	for _, hooks := range []int{1, 4} {
		b.Run(fmt.Sprintf("hooks=%d", hooks), func(b *testing.B) { benchmarkDrain(b, hooks) })
	}
}

func benchmarkDrain(b *testing.B, hooks int) {
	wb := setupWorker(b)
	s := newSink(b, nil)
	var hs []Hook
	for i := range hooks {
		hs = append(hs, wb.hook(fmt.Sprintf("h%d", i), s.URL))
	}
	wb.setHooks(b, hs...)
	nEvents := max(1, b.N/hooks)
	want := nEvents * hooks
	publishAsync(b, wb, nEvents)

	xacts0 := pgXacts(b, wb)
	cpu0 := processCPU()
	b.ResetTimer()
	start := time.Now()
	wb.start(b, WorkerConfig{})
	deadline := time.Now().Add(5 * time.Minute)
	for s.count() < want {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d delivered", s.count(), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
	received := time.Since(start)
	for countDeliveries(b, wb.db, "state = 'succeeded'") < want {
		if time.Now().After(deadline) {
			b.Fatal("results not recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	recorded := time.Since(start)
	b.StopTimer()
	cpu := processCPU() - cpu0
	b.ReportMetric(float64(want)/received.Seconds(), "deliveries/s")
	b.ReportMetric(float64(want)/recorded.Seconds(), "recorded/s")
	// Load-independent costs: CPU of this process (worker, embedded NATS, receiver) and
	// Postgres transactions per delivery.
	b.ReportMetric(float64(cpu.Microseconds())/float64(want), "go-cpu-µs/delivery")
	time.Sleep(1500 * time.Millisecond) // Postgres publishes backend statistics about once a second
	b.ReportMetric(float64(pgXacts(b, wb)-xacts0)/float64(want), "pg-xacts/delivery")
}

// pgXacts is the number of transactions the test database has committed.
func pgXacts(b testing.TB, wb *workerBundle) int64 {
	var n int64
	err := wb.db.QueryRow(context.Background(), `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&n)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// processCPU is the user and system CPU time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// publishAsync puts n registration events on the stream as fast as JetStream takes them.
func publishAsync(b testing.TB, wb *workerBundle, n int) {
	b.Helper()
	for i := range n {
		env := wb.registrationEvent()
		raw, _ := json.Marshal(env)
		if _, err := wb.js.PublishAsync(events.Subject(env.Type), raw, jetstream.WithMsgID(env.ID.String())); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			<-wb.js.PublishAsyncComplete()
		}
	}
	select {
	case <-wb.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish did not complete")
	}
}
