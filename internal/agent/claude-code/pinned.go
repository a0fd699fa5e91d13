// Package claudecode names where this repository pins the Claude Code CLI:
// package.json and package-lock.json in this directory are the one place its
// version is set. `npm ci --prefix internal/agent/claude-code` installs it
// (.ci/run does), the Dockerfile copies and installs the same two files,
// `worker local` and the tests run what they install.
//
// The subdirectory oldest/ pins the oldest release the worker still
// supports, for the tests alone: the tests that run the CLI run against
// both, so that going back to it stays possible. Nothing else installs it.
package claudecode

// Dir is this directory, relative to the repository root.
const Dir = "internal/agent/claude-code"

// Bin is the CLI that `npm ci --prefix Dir` installs, relative to the
// repository root.
const Bin = Dir + "/node_modules/.bin/claude"

// OldestDir pins the oldest supported CLI (tests only), relative to the
// repository root.
const OldestDir = Dir + "/oldest"

// OldestBin is the CLI that `npm ci --prefix OldestDir` installs, relative
// to the repository root.
const OldestBin = OldestDir + "/node_modules/.bin/claude"
