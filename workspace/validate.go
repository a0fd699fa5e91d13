package workspace

import (
	"fmt"

	"github.com/webordinary/claude-code-astro/internal/ident"
)

// ValidateID checks a client, user or thread id (ident.ValidID). The
// error wraps ErrInvalidID.
func ValidateID(id string) error { return ident.CheckID(id) }

// ValidateJobID checks a job id (ident.ValidJobID). The error wraps
// ErrInvalidID.
func ValidateJobID(id string) error { return ident.CheckJobID(id) }

// validateBranchName checks a base branch name given by a job.
func validateBranchName(b string) error {
	if !ident.ValidBranch(b) {
		return fmt.Errorf("%w: base branch name", ErrInvalidID)
	}
	return nil
}

// ValidateRepoURL checks a repository URL (ident.CheckRepoURL). The error
// wraps ErrInvalidRepoURL and never holds the URL.
func ValidateRepoURL(raw string) error { return ident.CheckRepoURL(raw) }
