package lease_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/lease"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
)

func newTable(t *testing.T, name string) *lease.Table {
	t.Helper()
	emu := sqstest.Start(t)
	return lease.NewTable(emu.DynamoDB(), emu.CreateLeaseTable(t, name))
}

func TestLeaseFollowsTheLatestTaker(t *testing.T) {
	ctx := context.Background()
	tab := newTable(t, "leases-follow")
	a := lease.Lease{Preview: "acme-alice-x", ClientID: "acme", UserID: "alice", Owner: "worker-a", Addr: "10.0.0.1:8080"}
	b := a
	b.Owner, b.Addr = "worker-b", "10.0.0.2:8080"

	steps := []struct {
		name      string
		take      lease.Lease
		wantEpoch int64
	}{
		{"first take", a, 1},
		{"the owner takes again: a renewal", a, 1},
		{"another worker's job takes it over", b, 2},
		{"and back", a, 3},
	}
	for _, s := range steps {
		got, err := tab.Take(ctx, s.take, time.Minute)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got.Epoch != s.wantEpoch || got.Owner != s.take.Owner {
			t.Fatalf("%s: took %+v, want epoch %d owned by %s", s.name, got, s.wantEpoch, s.take.Owner)
		}
		item, found, err := tab.Get(ctx, a.Preview)
		if err != nil || !found || item.Owner != s.take.Owner || item.Addr != s.take.Addr || item.Epoch != s.wantEpoch || !item.Live(time.Now()) {
			t.Fatalf("%s: item %+v found=%v err=%v", s.name, item, found, err)
		}
	}
	// The old owner (b, epoch 2) can neither renew nor end the lease now.
	old := b
	old.Epoch = 2
	if _, err := tab.Renew(ctx, old, time.Minute); !errors.Is(err, lease.ErrTaken) {
		t.Fatalf("stale renewal: %v, want ErrTaken", err)
	}
	if err := tab.End(ctx, old); !errors.Is(err, lease.ErrTaken) {
		t.Fatalf("stale end: %v, want ErrTaken", err)
	}
	// The owner ends it: the item stays, with its ids, and is no lease.
	cur, _, _ := tab.Get(ctx, a.Preview)
	if err := tab.End(ctx, cur); err != nil {
		t.Fatal(err)
	}
	item, found, err := tab.Get(ctx, a.Preview)
	if err != nil || !found || item.Live(time.Now()) || item.ClientID != "acme" || item.UserID != "alice" {
		t.Fatalf("ended lease: %+v found=%v err=%v", item, found, err)
	}
	// Taken again after its end: a change of owner even for the same worker.
	again, err := tab.Take(ctx, a, time.Minute)
	if err != nil || again.Epoch != 4 {
		t.Fatalf("take after end: %+v %v, want epoch 4", again, err)
	}
}

// TestRaceOneOwner: workers taking one lease at once: exactly one wins each
// round, and the epoch never goes back.
func TestRaceOneOwner(t *testing.T) {
	ctx := context.Background()
	tab := newTable(t, "leases-race")
	const workers, rounds = 4, 8
	last := int64(0)
	for round := range rounds {
		var wg sync.WaitGroup
		won := make([]lease.Lease, workers)
		errs := make([]error, workers)
		start := make(chan struct{})
		for i := range workers {
			wg.Go(func() {
				<-start
				want := lease.Lease{Preview: "acme-bob-x", ClientID: "acme", UserID: "bob", Owner: "worker-" + string(rune('a'+i)), Addr: "127.0.0.1:1"}
				won[i], errs[i] = tab.Take(ctx, want, time.Minute)
			})
		}
		close(start)
		wg.Wait()
		// Every take that succeeded holds an epoch of its own (a worker
		// that came second, after the first's write, took it over with the
		// next one); the item's owner is the one with the highest.
		byEpoch := map[int64]string{}
		var top lease.Lease
		for i, err := range errs {
			switch {
			case err == nil:
				if other, ok := byEpoch[won[i].Epoch]; ok {
					t.Fatalf("round %d: %s and %s both own epoch %d", round, other, won[i].Owner, won[i].Epoch)
				}
				byEpoch[won[i].Epoch] = won[i].Owner
				if won[i].Epoch > top.Epoch {
					top = won[i]
				}
			case !errors.Is(err, lease.ErrTaken):
				t.Fatalf("round %d: worker %d: %v", round, i, err)
			}
		}
		item, _, err := tab.Get(ctx, "acme-bob-x")
		if err != nil {
			t.Fatal(err)
		}
		if len(byEpoch) == 0 || item.Owner != top.Owner || item.Epoch != top.Epoch {
			t.Fatalf("round %d: item %+v, winners %v", round, item, byEpoch)
		}
		if item.Epoch <= last {
			t.Fatalf("round %d: epoch went from %d to %d", round, last, item.Epoch)
		}
		last = item.Epoch
	}
}

func TestHolderRenewsAndLosesATakenLease(t *testing.T) {
	ctx := context.Background()
	tab := newTable(t, "leases-holder")
	lost := make(chan string, 1)
	protected := 0
	var mu sync.Mutex
	h := lease.NewHolder(lease.HolderConfig{Table: tab, Owner: "worker-a", Addr: "127.0.0.1:1", TTL: 1500 * time.Millisecond,
		Lost: func(p string) { lost <- p },
		Protect: func() func() {
			mu.Lock()
			protected++
			mu.Unlock()
			return func() { mu.Lock(); protected--; mu.Unlock() }
		}})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go h.Run(rctx)
	first, err := h.Take(ctx, "acme-carol-x", "acme", "carol")
	if err != nil {
		t.Fatal(err)
	}
	// Renewed: still live after twice its TTL.
	wait.For(t, 10*time.Second, "the lease renewed past its first expiry", func() bool {
		item, _, _ := tab.Get(ctx, "acme-carol-x")
		return item.ExpiresAt.After(first.ExpiresAt) && item.Live(time.Now())
	})
	mu.Lock()
	if protected != 1 {
		t.Fatalf("protection holds = %d while a lease is held, want 1", protected)
	}
	mu.Unlock()
	// Another worker takes it: the holder learns within a renewal period.
	if _, err := tab.Take(ctx, lease.Lease{Preview: "acme-carol-x", ClientID: "acme", UserID: "carol", Owner: "worker-b", Addr: "127.0.0.1:2"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-lost:
		if p != "acme-carol-x" {
			t.Fatalf("lost %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the holder never noticed the takeover")
	}
	if h.Holds("acme-carol-x") {
		t.Fatal("still holds a lease taken over")
	}
	mu.Lock()
	if protected != 0 {
		t.Fatalf("protection holds = %d with no lease, want 0", protected)
	}
	mu.Unlock()
	// The new owner's lease is untouched by the old holder's End.
	h.End(ctx, "acme-carol-x")
	item, _, _ := tab.Get(ctx, "acme-carol-x")
	if item.Owner != "worker-b" || !item.Live(time.Now()) {
		t.Fatalf("item after the old holder's end: %+v", item)
	}
}

// TestTakeFreeLeavesALiveLease: a page load's take never takes a preview
// from the worker that holds it live; once that lease ended it does.
func TestTakeFreeLeavesALiveLease(t *testing.T) {
	ctx := context.Background()
	tab := newTable(t, "leases-free")
	a := lease.Lease{Preview: "acme-dora-x", ClientID: "acme", UserID: "dora", Owner: "worker-a", Addr: "127.0.0.1:1"}
	b := a
	b.Owner, b.Addr = "worker-b", "127.0.0.1:2"
	held, err := tab.Take(ctx, a, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tab.TakeFree(ctx, b, time.Minute); !errors.Is(err, lease.ErrTaken) {
		t.Fatalf("TakeFree of a live lease of another worker: %v, want ErrTaken", err)
	}
	if again, err := tab.TakeFree(ctx, a, time.Minute); err != nil || again.Epoch != held.Epoch {
		t.Fatalf("TakeFree by its owner: %+v %v, want a renewal at epoch %d", again, err, held.Epoch)
	}
	if err := tab.End(ctx, held); err != nil {
		t.Fatal(err)
	}
	got, err := tab.TakeFree(ctx, b, time.Minute)
	if err != nil || got.Epoch != held.Epoch+1 || got.Owner != "worker-b" {
		t.Fatalf("TakeFree of an ended lease: %+v %v", got, err)
	}
}
