// Package image holds the image test: it builds the repository's
// Dockerfile with podman, from stand-in base images built from Debian's
// archive, the npm registry and the Go module proxy (see
// internal/testkit/imagekit), and runs the worker in that container against
// the in-process AWS emulator, a git server and the fake Messages API on
// the host's loopback. Run it with infra/image/test (bash .ci/run does);
// it is behind the build tag imagetest, so `go test ./...` leaves it out.
package image
