// Package systemtest runs the real worker binary as a subprocess against the
// in-process AWS emulator, real git, and the real Claude Code CLI talking to a
// fake Messages API on loopback: the behaviour an operator and upstream see
// (exit codes, signals, responses on the queue, commits in the remote, idle
// self-stop, secrets). It holds tests only.
package systemtest
