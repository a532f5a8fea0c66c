//go:build !race

package webhooks

// evaluatorMemoryFactor scales TemplateMemoryLimit for the kernel's cap (see evaluator_race.go).
const evaluatorMemoryFactor = 1
