//go:build !linux

package pipeline

import (
	"errors"
	"syscall"
)

// procAttr has nothing to add outside Linux (no parent-death signal).
func procAttr() *syscall.SysProcAttr { return nil }

// tcpPortOwners needs /proc; elsewhere the tests pick a worker without knowing what it holds.
func tcpPortOwners([]int) (map[int]int, error) { return nil, errors.ErrUnsupported }
