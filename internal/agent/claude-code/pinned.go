// Package claudecode names where this repository pins the Claude Code CLI:
// package.json and package-lock.json in this directory are the one place its
// version is set. `npm ci --prefix internal/agent/claude-code` installs it
// (.ci/run does), the Dockerfile copies and installs the same two files,
// `worker local` and the tests run what they install.
package claudecode

// Dir is this directory, relative to the repository root.
const Dir = "internal/agent/claude-code"

// Bin is the CLI that `npm ci --prefix Dir` installs, relative to the
// repository root.
const Bin = Dir + "/node_modules/.bin/claude"
