package sandboxtest

import (
	"testing"

	"github.com/webordinary/claude-code-astro/internal/sandbox"
)

func TestClaimUIDsGivesDisjointSlices(t *testing.T) {
	var claimed []sandbox.UIDRange
	t.Run("claims", func(t *testing.T) {
		for range 3 {
			r := ClaimUIDs(t)
			if r.Min < UIDs.Min || r.Max > UIDs.Max || r.Max-r.Min+1 != slotSize {
				t.Fatalf("claimed %d-%d: want %d uids inside %d-%d", r.Min, r.Max, slotSize, UIDs.Min, UIDs.Max)
			}
			for _, c := range claimed {
				if r.Min <= c.Max && c.Min <= r.Max {
					t.Fatalf("claimed %d-%d while %d-%d is claimed", r.Min, r.Max, c.Min, c.Max)
				}
			}
			claimed = append(claimed, r)
		}
	})
	// The subtest's claims ended with it: the first slice is free again
	// (unless another test binary took it meanwhile, in which case another
	// free one comes back).
	again := ClaimUIDs(t)
	if again.Min > claimed[2].Min {
		t.Errorf("after the claims were released, the next claim is %d-%d, past all three earlier ones", again.Min, again.Max)
	}
}
