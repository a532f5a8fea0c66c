package main

import (
	"os"
	"testing"

	"github.com/latchhq/latch/webhooks"
)

// TestMain lets this test binary serve as a template evaluator: loading a configuration with a
// body template parses it in a child process, which is the running binary re-executed.
func TestMain(m *testing.M) {
	webhooks.RunTemplateEvaluatorIfChild()
	os.Exit(m.Run())
}
