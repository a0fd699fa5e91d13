package idle

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestWaitReturnsAfterTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := New(5 * time.Minute)
		start := time.Now()
		if err := tr.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != 5*time.Minute {
			t.Errorf("idle after %s, want 5m", got)
		}
	})
}

func TestActivityPushesDeadlineBack(t *testing.T) {
	tests := []struct {
		name     string
		activity func(tr *Tracker)
		want     time.Duration
	}{
		{"touch at 3m", func(tr *Tracker) { time.Sleep(3 * time.Minute); tr.Touch() }, 8 * time.Minute},
		{"job from 1m to 10m", func(tr *Tracker) {
			time.Sleep(time.Minute)
			end := tr.Begin()
			time.Sleep(9 * time.Minute)
			end()
		}, 15 * time.Minute},
		{"socket open 2m to 20m, end twice", func(tr *Tracker) {
			time.Sleep(2 * time.Minute)
			end := tr.Begin()
			time.Sleep(18 * time.Minute)
			end()
			end()
		}, 25 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := New(5 * time.Minute)
				start := time.Now()
				go tt.activity(tr)
				if err := tr.Wait(t.Context()); err != nil {
					t.Fatal(err)
				}
				if got := time.Since(start); got != tt.want {
					t.Errorf("idle after %s, want %s", got, tt.want)
				}
			})
		})
	}
}

func TestDisabledNeverIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := New(0)
		ctx, cancel := context.WithTimeout(t.Context(), 24*time.Hour)
		defer cancel()
		if err := tr.Wait(ctx); err != context.DeadlineExceeded {
			t.Errorf("Wait = %v, want the context's deadline", err)
		}
		if _, ok := tr.Deadline(); ok {
			t.Error("a disabled tracker has a deadline")
		}
	})
}

func TestDeadlineWhileActive(t *testing.T) {
	tr := New(time.Minute)
	if _, ok := tr.Deadline(); !ok {
		t.Error("no deadline while idle")
	}
	end := tr.Begin()
	if _, ok := tr.Deadline(); ok {
		t.Error("a deadline while a job runs")
	}
	end()
	if d, ok := tr.Deadline(); !ok || d.Before(tr.LastActivity()) {
		t.Errorf("deadline %v %v after the job", d, ok)
	}
}
