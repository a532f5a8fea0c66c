package events

// RelayLockKey is the advisory lock a relay takes to publish, for tests that play the relay
// holding it.
const RelayLockKey = relayLockKey
