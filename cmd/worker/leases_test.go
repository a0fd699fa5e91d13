package main

import (
	"context"
	"log/slog"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/preview"
)

// TestTakenOverOutlivesAFailedClaim: worker A's lease of alice's preview
// is taken over by worker B. Before A's dev server for her has stopped, a
// page load reaches A (a router's cache still names A) and A's claim of the
// lease fails. When A's dev server then stops, A must still know the lease
// was taken over: otherwise it stops every process of alice's tenant, which
// on a kernel the workers share (worker local -workers N) are B's agent and
// dev server.
func TestTakenOverOutlivesAFailedClaim(t *testing.T) {
	emu := sqstest.Start(t)
	awsCfg := sqstest.AWSConfig()
	awsCfg.BaseEndpoint = aws.String(emu.URL)
	cfg := config.Default()
	cfg.LeaseTable = emu.CreateLeaseTable(t, "taken-over")
	ctx := context.Background()
	jobCtx := context.WithValue(ctx, jobTargetKey{}, true)
	alice := preview.Target{ID: preview.ID("acme", "alice"), Key: "acme/alice"}

	start := func(l *leases, addr string) {
		t.Helper()
		c := cfg
		c.PreviewAdvertiseAddr = addr
		if _, err := l.start(ctx, c, awsCfg, addr, nil, func(string) {}, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
	}
	var a, b leases
	start(&a, "127.0.0.1:1001")
	start(&b, "127.0.0.1:1002")
	if err := a.claim(jobCtx, alice); err != nil {
		t.Fatalf("A takes alice's lease for a job: %v", err)
	}
	if err := b.claim(jobCtx, alice); err != nil {
		t.Fatalf("B takes alice's lease over for a job: %v", err)
	}
	a.lost(alice.ID) // what A's holder reports at its next renewal

	if err := a.claim(ctx, alice); err == nil {
		t.Fatal("A claimed, for a page load, a lease B holds")
	}
	if !a.stopped(alice) {
		t.Error("after a failed claim, A forgot that B took alice's lease over: it would stop her processes, B's on a shared kernel")
	}
	if b.stopped(alice) {
		t.Error("B, which serves alice, reports her lease taken over")
	}
}
