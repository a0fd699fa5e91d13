package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// maxPushBody bounds a push the gateway reads: it checks the whole pack
// before any of it is forwarded.
const maxPushBody = 256 << 20

// maxPushCommits bounds the commits walked from a push's new tip looking
// for its old one.
const maxPushCommits = 10000

// errPushRefused is wrapped by every reason a push is refused.
var errPushRefused = errors.New("push refused")

// pushCommand is one ref update of a git-receive-pack request.
type pushCommand struct {
	old, new, ref string
}

// readPushBody returns a git-receive-pack request's body, uncompressed
// (git sends a large one gzipped), up to maxPushBody.
func readPushBody(body io.Reader, encoding string) ([]byte, error) {
	if encoding == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("read the push: %w", err)
		}
		defer zr.Close()
		body = zr
	} else if encoding != "" {
		return nil, fmt.Errorf("read the push: content encoding %q", encoding)
	}
	b, err := io.ReadAll(io.LimitReader(body, maxPushBody+1))
	if err != nil {
		return nil, fmt.Errorf("read the push: %w", err)
	}
	if len(b) > maxPushBody {
		return nil, fmt.Errorf("%w: larger than %d MB", errPushRefused, maxPushBody>>20)
	}
	return b, nil
}

// parsePushCommands reads the command list at the start of a
// git-receive-pack request (pkt-lines up to a flush-pkt) and returns the
// commands and what follows them: the pack. Shallow updates, push
// certificates and push options are refused: the worker's pushes use none.
func parsePushCommands(body []byte) (cmds []pushCommand, pack []byte, err error) {
	for first := true; ; first = false {
		if len(body) < 4 {
			return nil, nil, fmt.Errorf("%w: truncated command list", errPushRefused)
		}
		n, err := strconv.ParseUint(string(body[:4]), 16, 16)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: bad pkt-line length", errPushRefused)
		}
		if n == 0 { // flush-pkt: the commands end
			if len(cmds) == 0 {
				return nil, nil, fmt.Errorf("%w: no command", errPushRefused)
			}
			return cmds, body[4:], nil
		}
		if n < 4 || int(n) > len(body) {
			return nil, nil, fmt.Errorf("%w: bad pkt-line length", errPushRefused)
		}
		line := strings.TrimSuffix(string(body[4:n]), "\n")
		body = body[n:]
		if first {
			var caps string
			line, caps, _ = strings.Cut(line, "\x00")
			for _, c := range strings.Fields(caps) {
				if c == "push-options" {
					return nil, nil, fmt.Errorf("%w: push options", errPushRefused)
				}
			}
		}
		f := strings.Fields(line)
		if len(f) != 3 || !isObjectID(f[0]) || !isObjectID(f[1]) {
			return nil, nil, fmt.Errorf("%w: not a ref update: %.60q", errPushRefused, line)
		}
		cmds = append(cmds, pushCommand{old: f[0], new: f[1], ref: f[2]})
	}
}

// isObjectID reports whether s is a SHA-1 or SHA-256 object id in hex.
func isObjectID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// isNullID reports whether an object id is all zeros: no object.
func isNullID(s string) bool { return strings.Trim(s, "0") == "" }

// checkPush allows a push that updates one ref, the branch
// refs/heads/thread-{threadID}: it creates it or fast-forwards it. Anything
// else (another ref, a deletion, several refs, a rewrite) is refused before
// a byte of it reaches the remote. The remote's receive-pack itself checks
// that a command's old id is the ref's current one (or that a created ref
// does not exist), so old, as sent, is the remote's state.
func checkPush(ctx context.Context, body []byte, threadID string) error {
	if threadID == "" {
		return fmt.Errorf("%w: this job pushes nothing", errPushRefused)
	}
	cmds, pack, err := parsePushCommands(body)
	if err != nil {
		return err
	}
	want := "refs/heads/thread-" + threadID
	if len(cmds) != 1 || cmds[0].ref != want {
		refs := make([]string, len(cmds))
		for i, c := range cmds {
			refs[i] = c.ref
		}
		return fmt.Errorf("%w: a job pushes %s only, not %.200q", errPushRefused, want, strings.Join(refs, " "))
	}
	c := cmds[0]
	switch {
	case isNullID(c.new):
		return fmt.Errorf("%w: a job never deletes a branch", errPushRefused)
	case isNullID(c.old):
		return nil // a new branch
	}
	ff, err := fastForward(ctx, pack, c.old, c.new)
	if err != nil {
		return err
	}
	if !ff {
		return fmt.Errorf("%w: not a fast-forward of %s (or its commits are not all in the pack)", errPushRefused, want)
	}
	return nil
}

// fastForward reports whether the commit newID descends from oldID, by the
// commits in pack alone: the pack is indexed in a private scratch
// repository and the parents walked from newID. A thin pack (deltas on
// objects it does not hold) cannot be indexed there and is refused; the
// worker pushes with --no-thin.
func fastForward(ctx context.Context, pack []byte, oldID, newID string) (bool, error) {
	dir, err := os.MkdirTemp("", "gateway-push-")
	if err != nil {
		return false, fmt.Errorf("check the push: %w", err)
	}
	defer os.RemoveAll(dir) //nolint:errcheck // a scratch directory; removal failing leaves a temp dir
	git := func(stdin []byte, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"--git-dir=" + dir}, args...)...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_GLOBAL=/dev/null", "GIT_NO_REPLACE_OBJECTS=1", "LC_ALL=C"}
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
		}
		return out, nil
	}
	if _, err := git(nil, "init", "--bare", "--quiet", "--template="); err != nil {
		return false, fmt.Errorf("check the push: %w", err)
	}
	if _, err := git(pack, "index-pack", "--stdin"); err != nil {
		return false, fmt.Errorf("%w: its pack cannot be checked on its own (a thin pack?): %w", errPushRefused, err)
	}
	seen := map[string]bool{newID: true}
	queue := []string{newID}
	for len(queue) > 0 && len(seen) <= maxPushCommits {
		id := queue[0]
		queue = queue[1:]
		if id == oldID {
			return true, nil
		}
		out, err := git(nil, "cat-file", "commit", id)
		if err != nil {
			continue // not in the pack: already on the remote, and not old
		}
		header, _, _ := bytes.Cut(out, []byte("\n\n"))
		for _, line := range strings.Split(string(header), "\n") {
			if p, ok := strings.CutPrefix(line, "parent "); ok && !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	return false, nil
}
