package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/latchhq/latch/tests/latchtest"
)

// registration is the outcome of one native registration of the load.
type registration struct {
	Email      string
	IdentityID string // "" when it failed
	Err        error
	Answered   time.Time
}

// load registers identities through the public API at a steady rate, like users signing up,
// until it is stopped. A registration that is still running when the next one is due does not
// hold it back (up to maxInFlight at once), so a slow answer shows as a slow answer, not as a
// lower rate.
type load struct {
	publicURL string
	hc        *http.Client
	prefix    string

	stopOnce sync.Once
	stopCh   chan struct{}
	done     chan struct{}

	mu      sync.Mutex
	results []registration
	skipped int // ticks without a free slot
}

const maxInFlight = 16

// startLoad starts registering every interval until stop.
func startLoad(ctx context.Context, publicURL string, interval time.Duration) *load {
	l := &load{
		publicURL: publicURL,
		// The timeout bounds a registration that hangs on something it must not wait for.
		hc:     &http.Client{Timeout: 15 * time.Second},
		prefix: strings.ToLower(rand.Text()[:8]),
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
	}
	go l.run(ctx, interval)
	return l
}

func (l *load) run(ctx context.Context, interval time.Duration) {
	defer close(l.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, maxInFlight)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-l.stopCh:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			l.mu.Lock()
			l.skipped++
			l.mu.Unlock()
			continue
		}
		email := fmt.Sprintf("cluster-%s-%05d@example.org", l.prefix, i)
		wg.Go(func() {
			defer func() { <-slots }()
			id, err := latchtest.Register(ctx, l.hc, l.publicURL, email, "a-long-enough-passphrase")
			l.mu.Lock()
			l.results = append(l.results, registration{Email: email, IdentityID: id, Err: err, Answered: time.Now()})
			l.mu.Unlock()
		})
	}
}

// stop ends the load and waits for the registrations in flight; it returns every outcome and
// how many ticks found no free slot.
func (l *load) stop() ([]registration, int) {
	l.stopOnce.Do(func() { close(l.stopCh) })
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]registration(nil), l.results...), l.skipped
}

// count is how many registrations answered so far.
func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.results)
}
