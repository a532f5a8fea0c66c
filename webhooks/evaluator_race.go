//go:build race

package webhooks

// The race detector's shadow memory counts against RLIMIT_DATA: a race-built evaluator gets
// room for it, or it could not start its own threads.
const evaluatorMemoryFactor = 8
