package ident

import (
	"fmt"
	"strconv"
	"strings"
)

// UIDRange is a range of tenant uids (and gids), both ends included
// (TENANT_UIDS).
type UIDRange struct{ Min, Max uint32 }

// ParseUIDRange reads "MIN-MAX" and checks it (UIDRange.Check).
func ParseUIDRange(s string) (UIDRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	min, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 32)
	max, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return UIDRange{}, fmt.Errorf("want MIN-MAX, such as 100000-1099999")
	}
	r := UIDRange{Min: uint32(min), Max: uint32(max)}
	return r, r.Check()
}

// String returns "MIN-MAX".
func (r UIDRange) String() string { return fmt.Sprintf("%d-%d", r.Min, r.Max) }

// Check returns an error unless r may hold tenant uids: above the system
// accounts (1000), at least 100 uids, below the 2^31 limit some tools
// assume.
func (r UIDRange) Check() error {
	switch {
	case r.Min < 1000:
		return fmt.Errorf("tenant uids must start at 1000 or above (system accounts), not %d", r.Min)
	case r.Max < r.Min+99:
		return fmt.Errorf("tenant uid range %s is too small: want at least 100 uids", r)
	case r.Max >= 1<<31-1:
		return fmt.Errorf("tenant uids must stay below 2147483647, not %d", r.Max)
	}
	return nil
}
