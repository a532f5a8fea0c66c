package webhooks

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultSchedule is the Standard Webhooks example schedule: the delay before attempt 1..10,
// the first immediate, about 75.6 hours in all. Long enough to ride out a weekend outage of a
// receiver, short enough that a dead endpoint stops costing work within a few days. Do not
// modify it; a hook's config.retry.schedule replaces it.
var DefaultSchedule = []time.Duration{
	0,
	5 * time.Second,
	5 * time.Minute,
	30 * time.Minute,
	2 * time.Hour,
	5 * time.Hour,
	10 * time.Hour,
	14 * time.Hour,
	20 * time.Hour,
	24 * time.Hour,
}

// Retry timing knobs.
const (
	// jitterFraction spreads retries by ±20 % (Svix's JITTER_DELTA), so deliveries that
	// failed together during an outage do not come back together.
	jitterFraction = 0.2
	// retryAfterMinRoom is how far past the scheduled delay a Retry-After may push an attempt
	// even when the delay is tiny, so a 429 on the 5 s retry can still buy the receiver a minute.
	retryAfterMinRoom = time.Minute
	// maxScheduleLen and maxScheduleDelay bound config.retry.schedule; beyond them is a config
	// mistake (and a delay of centuries would overflow time.Duration arithmetic).
	maxScheduleLen   = 100
	maxScheduleDelay = 30 * 24 * time.Hour
)

// NextAttempt computes when the next attempt of a delivery is due. attempt is the number of the
// attempt that just failed (1-based; 0 asks when attempt 1 is due). ok is false when the
// schedule is exhausted: the delivery is dead.
//
// The delay is schedule[attempt] times a jitter factor in [0.8, 1.2] drawn from rnd (in [0,1),
// injected so that the schedule is table-testable). A retryAfter > 0 (the receiver's
// Retry-After) can push the attempt later, up to max(2×delay, delay+1m), and never brings it
// earlier: a receiver may ask for breathing room but cannot stretch a delivery's life
// indefinitely or make Latch hammer it.
func NextAttempt(schedule []time.Duration, attempt int, now time.Time, retryAfter time.Duration, rnd float64) (next time.Time, ok bool) {
	if attempt < 0 {
		attempt = 0
	}
	if attempt >= len(schedule) {
		return time.Time{}, false
	}
	if !(rnd >= 0 && rnd < 1) { // also catches NaN
		rnd = 0.5
	}
	base := max(schedule[attempt], 0)
	delay := time.Duration(float64(base) * (1 + jitterFraction*(2*rnd-1)))
	if retryAfter > delay {
		delay = min(retryAfter, max(2*delay, delay+retryAfterMinRoom))
	}
	return now.Add(delay), true
}

// ParseRetryAfter reads a Retry-After header value: delay-seconds or an HTTP-date (RFC 9110
// §10.2.3), relative to now. It returns 0 when the header is absent, malformed or in the past,
// which NextAttempt treats as "no opinion".
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
				return time.Duration(math.MaxInt64)
			}
			return 0
		}
		if secs > uint64(math.MaxInt64/int64(time.Second)) {
			return time.Duration(math.MaxInt64)
		}
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	if d := t.Sub(now); d > 0 {
		return d
	}
	return 0
}

// validateSchedule checks a configured schedule: at least one attempt, no negative or
// absurdly long delay.
func validateSchedule(s []time.Duration) error {
	if len(s) == 0 {
		return errors.New("no attempts")
	}
	if len(s) > maxScheduleLen {
		return fmt.Errorf("%d attempts; at most %d", len(s), maxScheduleLen)
	}
	for i, d := range s {
		if d < 0 {
			return fmt.Errorf("delay before attempt %d is negative (%s)", i+1, d)
		}
		if d > maxScheduleDelay {
			return fmt.Errorf("delay before attempt %d is %s; at most %s", i+1, d, maxScheduleDelay)
		}
	}
	return nil
}
