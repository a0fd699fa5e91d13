// Package claudecode is the pinned Claude Code CLI: where its version is set
// and where the worker keeps the copy tenants run.
//
// package.json and package-lock.json in this directory are the one place
// its version is set. `npm ci --prefix internal/agent/claude-code` installs
// it (.ci/run does), the Dockerfile copies and installs the same two files,
// and both are built into the worker, so `worker local` installs the same
// pin by itself (Cache.Install) when none is installed.
//
// Tenant processes run the CLI under their own uids, so it must lie where
// every uid can reach it. When the configured one does not (a checkout
// under root's home, mode 0700), the worker copies it into a Cache: a
// directory root owns and every uid may read, holding nothing else.
//
// The subdirectory oldest/ pins the oldest release the worker still
// supports, for the tests alone: the tests that run the CLI run against
// both, so that going back to it stays possible. Nothing else installs it.
package claudecode

import (
	"crypto/sha256"
	_ "embed" // the pin, built into the worker
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
)

// Dir is this directory, relative to the repository root.
const Dir = "internal/agent/claude-code"

// Bin is the CLI that `npm ci --prefix Dir` installs, relative to the
// repository root.
const Bin = Dir + "/node_modules/.bin/claude"

// binInPrefix is Bin relative to an npm prefix.
const binInPrefix = "node_modules/.bin/claude"

// packageName is the CLI's npm package.
const packageName = "@anthropic-ai/claude-code"

//go:embed package.json
var packageJSON []byte

//go:embed package-lock.json
var lockfile []byte

// PackageJSON returns the pinned package.json.
func PackageJSON() []byte { return append([]byte(nil), packageJSON...) }

// Lockfile returns the pinned package-lock.json.
func Lockfile() []byte { return append([]byte(nil), lockfile...) }

// Version returns the CLI version the lockfile pins, or "" when the
// lockfile names none.
func Version() string {
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if json.Unmarshal(lockfile, &lock) != nil {
		return ""
	}
	return lock.Packages["node_modules/"+packageName].Version
}

// InstalledVersion returns the version of the CLI installed in the npm
// prefix dir (what its node_modules holds), or "" when none is.
func InstalledVersion(prefix string) string {
	b, err := os.ReadFile(filepath.Join(prefix, "node_modules", packageName, "package.json"))
	if err != nil {
		return ""
	}
	var pkg struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(b, &pkg) != nil {
		return ""
	}
	return pkg.Version
}

// Key names the pin in a Cache: the version and a digest of package.json
// and the lockfile, so a new pin (a bump, a changed lockfile) gets a
// directory of its own and an old one is never taken for it.
func Key() string {
	h := sha256.New()
	h.Write(packageJSON)
	h.Write([]byte{0})
	h.Write(lockfile)
	return Version() + "-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// OldestDir pins the oldest supported CLI (tests only), relative to the
// repository root.
const OldestDir = Dir + "/oldest"

// OldestBin is the CLI that `npm ci --prefix OldestDir` installs, relative
// to the repository root.
const OldestBin = OldestDir + "/node_modules/.bin/claude"
