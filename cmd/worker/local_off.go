//go:build nolocal

package main

import (
	"context"
	"errors"
)

// localStateFile is where `worker local` says which queues it serves.
const localStateFile = ".local/local.json"

// localUsage is empty: this build has no `worker local` to list.
const localUsage = ""

// LocalCommand is `worker local`, left out of this build (tag nolocal), so
// the production binary carries no AWS emulator.
type LocalCommand struct {
	*Main
}

// Run says the command is not in this build.
func (c *LocalCommand) Run(context.Context, []string) error {
	return errors.New("this binary was built without the embedded emulator (-tags nolocal): build without the tag to use `worker local`")
}
