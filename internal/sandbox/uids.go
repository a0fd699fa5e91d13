package sandbox

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/webordinary/claude-code-astro/internal/ident"
)

// maxProbes bounds the search for a free uid.
const maxProbes = 10000

// Allocator gives each tenant key a uid of its own from a range, recorded
// on the shared root so that every worker on it agrees: the file
// Root/.uids/{uid} holds the key that owns uid. A key's uids are probed in
// one fixed order from a hash of the key; the first record holding the key
// is its uid, the first free slot is claimed by a hard link, which fails if
// another worker claimed it first (atomic on local disks and on NFS/EFS). The
// records are the worker's, mode 0600 in a 0700 directory. Safe for
// concurrent use, across processes too.
type Allocator struct {
	dir string
	r   ident.UIDRange

	mu    sync.Mutex
	known map[string]uint32
}

// NewAllocator returns an Allocator recording under root/.uids.
func NewAllocator(root string, r ident.UIDRange) (*Allocator, error) {
	dir := filepath.Join(root, ".uids")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the uid records: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the uid records: %w", err)
	}
	return &Allocator{dir: dir, r: r, known: map[string]uint32{}}, nil
}

// UID returns key's uid, claiming one the first time.
func (a *Allocator) UID(key string) (uint32, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if uid, ok := a.known[key]; ok {
		return uid, nil
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	size := uint64(a.r.Max-a.r.Min) + 1
	start := h.Sum64() % size
	for i := range uint64(min(maxProbes, size)) {
		uid := a.r.Min + uint32((start+i)%size)
		owner, err := a.claim(uid, key)
		if err != nil {
			return 0, err
		}
		if owner == key {
			a.known[key] = uid
			return uid, nil
		}
	}
	return 0, fmt.Errorf("no free uid after %d tries in %s", maxProbes, a.r)
}

// claim returns the key that owns uid, making it key when nobody does.
func (a *Allocator) claim(uid uint32, key string) (string, error) {
	rec := filepath.Join(a.dir, strconv.FormatUint(uint64(uid), 10))
	if owner, err := readOwner(rec); err == nil {
		return owner, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	tmp, err := os.CreateTemp(a.dir, ".claim-*")
	if err != nil {
		return "", fmt.Errorf("claim uid %d: %w", uid, err)
	}
	_, werr := tmp.WriteString(key + "\n")
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return "", errors.Join(fmt.Errorf("claim uid %d: %w", uid, err), os.Remove(tmp.Name()))
	}
	lerr := os.Link(tmp.Name(), rec)
	if err := os.Remove(tmp.Name()); err != nil {
		return "", fmt.Errorf("claim uid %d: %w", uid, err)
	}
	if lerr != nil && !errors.Is(lerr, fs.ErrExist) {
		return "", fmt.Errorf("claim uid %d: %w", uid, lerr)
	}
	return readOwner(rec) // ours, or the worker's that linked first
}

func readOwner(rec string) (string, error) {
	b, err := os.ReadFile(rec)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
