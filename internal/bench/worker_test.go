package bench

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/ledger"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/worker"
)

// Windows of the idle measurement.
const (
	idleSettle = 5 * time.Second
	idleWindow = 10 * time.Second
)

// queues creates a FIFO job queue and a FIFO response queue named after
// name (kumo keeps one store per process: every section names its own).
func queues(tb testing.TB, emu *sqstest.Emulator, name string) (jobsQ, respQ sqstest.Queue) {
	jobsQ = emu.CreateQueue(tb, "bench-"+name+"-jobs", sqstest.QueueOptions{FIFO: true, VisibilityTimeout: 60 * time.Second})
	respQ = emu.CreateQueue(tb, "bench-"+name+"-responses", sqstest.QueueOptions{FIFO: true})
	return jobsQ, respQ
}

// benchIdle: rows 1a and 1b, the worker binary long-polling an empty queue.
func benchIdle(b *testing.B, e *env) {
	emu := sqstest.Start(b)
	jobsQ, respQ := queues(b, emu, "idle")
	p := e.startWorker(b, workerEnv(b, emu, jobsQ, respQ))
	p.waitHealthy(20*time.Millisecond, 30*time.Second)
	time.Sleep(idleSettle) // the measurement's settling time, not a readiness wait

	pid := p.pid()
	cpu0, err := cpuTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var peak int64
	for time.Since(start) < idleWindow {
		rss, err := procStatusKB(pid, "VmRSS")
		if err != nil {
			b.Fatalf("read the worker's RSS: %v", err)
		}
		peak = max(peak, rss)
		time.Sleep(250 * time.Millisecond)
	}
	cpu1, err := cpuTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	wall := time.Since(start)
	pct := 100 * float64(cpu1-cpu0) / float64(wall)
	e.table.Check("1a", MiB(peak), peak < 30<<20)
	e.table.Check("1b", fmt.Sprintf("%.2f%% (%d ms of CPU in %.1f s, counted in 10 ms ticks)", pct, (cpu1-cpu0).Milliseconds(), wall.Seconds()), pct < 1)
	b.ReportMetric(float64(peak)/(1<<20), "idle-rss-MiB")
	b.ReportMetric(pct, "idle-cpu-%")
}

// benchStart: row 2, exec to the first 200 from /health, five times.
func benchStart(b *testing.B, e *env) {
	const starts = 5
	emu := sqstest.Start(b)
	jobsQ, respQ := queues(b, emu, "start")
	bin := e.workerBin(b) // built before the clock starts
	var took, bare []time.Duration
	for range starts {
		// The baseline, taking turns with the measure: the same binary
		// started and gone, doing nothing (`worker version`).
		start := time.Now()
		if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil {
			b.Fatalf("worker version: %v: %s", err, out)
		}
		bare = append(bare, time.Since(start))
		p := e.startWorker(b, workerEnv(b, emu, jobsQ, respQ))
		healthy := p.waitHealthy(2*time.Millisecond, 30*time.Second)
		took = append(took, healthy.Sub(p.started))
		p.stop()
	}
	ratio := Ratio(took, bare)
	e.table.Check("2", VsBaseline(took, bare), ratio < startGoal)
	b.ReportMetric(ms(Median(took)), "start-median-ms")
	b.ReportMetric(ratio, "start-vs-bare-x")
}

// noopHandler returns a job handler that returns at once.
func noopHandler() jobs.Handler {
	return jobs.HandlerFunc(func(context.Context, jobs.Job, jobs.ProgressFunc) (jobs.Response, error) {
		return jobs.Response{}, nil
	})
}

// runWorker runs an in-process worker with the no-op handler and a ledger,
// as the binary has, until the benchmark ends.
func runWorker(b *testing.B, emu *sqstest.Emulator, jobsQ, respQ sqstest.Queue, users int) {
	runWorkerWith(b, emu, jobsQ, respQ, worker.Config{Handler: noopHandler(), MaxConcurrentUsers: users})
}

// runWorkerWith runs an in-process worker configured by cfg (queues, a
// ledger and the logger added) until the benchmark ends.
func runWorkerWith(b *testing.B, emu *sqstest.Emulator, jobsQ, respQ sqstest.Queue, cfg worker.Config) {
	cfg.JobQueueURL, cfg.ResponseQueueURL = jobsQ.URL, respQ.URL
	cfg.Ledger, cfg.Logger = ledger.New(b.TempDir()), quietLogger(b)
	w, err := worker.New(emu.SQS(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("worker run: %v", err)
		}
	})
}

// noopJob is an execute job for the no-op handler.
func noopJob(id, user string) jobs.Job {
	return jobs.Job{Type: jobs.TypeExecute, JobID: id, ClientID: "acme", UserID: user, ThreadID: "t1", Instruction: "nothing"}
}

// benchJobOverhead: rows 3a-3c, 100 no-op jobs one at a time through an
// in-process worker.
func benchJobOverhead(b *testing.B, e *env) {
	const warmup, n = 5, 100
	emu := sqstest.Start(b)
	jobsQ, respQ := queues(b, emu, "overhead")
	runWorker(b, emu, jobsQ, respQ, 2)
	responses := collect(b, respQ, 1)
	ctx := context.Background()

	var toQueue, inWorker, e2e []time.Duration
	for i := range warmup + n {
		id := fmt.Sprintf("noop-%03d", i)
		sent := time.Now()
		if err := sendJob(ctx, jobsQ, noopJob(id, "alice")); err != nil {
			b.Fatal(err)
		}
		r := responses.wait(b, id, 30*time.Second)
		if r.resp.Status != jobs.StatusSucceeded {
			b.Fatalf("job %s: %+v", id, r.resp)
		}
		if i < warmup {
			continue // connections and the ledger's directories are set up
		}
		rec, fin := times(b, r.resp)
		toQueue = append(toQueue, r.at.Sub(rec))
		inWorker = append(inWorker, fin.Sub(rec))
		e2e = append(e2e, r.at.Sub(sent))
	}
	med := Median(toQueue)
	e.table.Check("3a", medP95(toQueue), med < 20*time.Millisecond)
	e.table.Info("3b", medP95(inWorker))
	e.table.Info("3c", medP95(e2e))
	b.ReportMetric(ms(med), "receive-to-response-median-ms")
	b.ReportMetric(ms(Median(e2e)), "end-to-end-median-ms")
}

// benchThroughput: row 4, 500 no-op jobs from 10 users at once.
func benchThroughput(b *testing.B, e *env) {
	rate, n, took := throughput(b, "throughput", 0)
	e.table.Check("4", fmt.Sprintf("%.0f jobs/s (%d jobs in %s)", rate, n, Ms(took)), rate > 50)
	b.ReportMetric(rate, "jobs/s")
}

// throughput measures row 4: 500 no-op jobs from 10 users on one worker
// (maxHeld as worker.Config.MaxHeld), first send to last response.
func throughput(b *testing.B, name string, maxHeld int) (rate float64, n int, took time.Duration) {
	const users, perUser = 10, 50
	emu := sqstest.Start(b)
	jobsQ, respQ := queues(b, emu, name)
	runWorkerWith(b, emu, jobsQ, respQ, worker.Config{Handler: noopHandler(), MaxConcurrentUsers: users, MaxHeld: maxHeld})
	responses := collect(b, respQ, 2)
	ctx := context.Background()

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, users)
	for u := range users {
		wg.Go(func() {
			for i := range perUser { // one user's jobs in order, as upstream sends them
				if err := sendJob(ctx, jobsQ, noopJob(fmt.Sprintf("tp-%d-%03d", u, i), fmt.Sprintf("user%d", u))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	all := responses.all(b, users*perUser, 2*time.Minute)
	var last time.Time
	for _, r := range all {
		if r.resp.Status != jobs.StatusSucceeded {
			b.Fatalf("job %s: %+v", r.resp.JobID, r.resp)
		}
		if r.at.After(last) {
			last = r.at
		}
	}
	took = last.Sub(start)
	return float64(len(all)) / took.Seconds(), len(all), took
}

// medP95 formats the median and p95 of ds.
func medP95(ds []time.Duration) string {
	return fmt.Sprintf("%s (%s)", Ms(Median(ds)), Ms(Quantile(ds, 0.95)))
}

// medMax formats the median and maximum of ds.
func medMax(ds []time.Duration) string {
	return fmt.Sprintf("%s (%s)", Ms(Median(ds)), Ms(Quantile(ds, 1)))
}

// ms converts d to milliseconds for ReportMetric.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
