package core

import (
	"context"
	"net/netip"
)

// ReserveLoginAttempt runs the throttle's reservation alone, so tests can race many of them on
// real Postgres and count how many would have reached the hasher.
func (s *Service) ReserveLoginAttempt(ctx context.Context, addr netip.Addr, identifier string) (locked bool, err error) {
	v, err := s.reserveAttempt(ctx, s.config().Throttle, throttleKeysFor(addr, identifier))
	return v.locked, err
}
