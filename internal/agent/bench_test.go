package agent

import (
	"context"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/repo"
)

// BenchmarkRunOverhead measures one headless run of the real CLI against the
// fake API: start-up (start to the init line), the CLI's own duration_ms and
// the wall time of Run, whose difference is the CLI's start and exit cost.
//
//	go test -run '^$' -bench RunOverhead -benchtime 5x ./agent
func BenchmarkRunOverhead(b *testing.B) {
	scripts := []struct {
		name   string
		script func(e *testEnv) []fakeanthropic.Step
	}{
		{"text", func(*testEnv) []fakeanthropic.Step { return []fakeanthropic.Step{fakeanthropic.Text("ok")} }},
		{"read-edit-text", func(e *testEnv) []fakeanthropic.Step {
			return fakeanthropic.EditFile(e.path("index.md"), "world", "there", "ok")
		}},
	}
	for _, sc := range scripts {
		b.Run(sc.name, func(b *testing.B) {
			e := newTestEnv(b, repo.CLIs(b)[0])
			e.srv.SetScript(sc.script(e)...)
			r := e.runner(nil)
			var startup, cli, wall time.Duration
			for b.Loop() {
				e.writeFile("index.md", "hello world\n")
				start := time.Now()
				res, err := r.Run(context.Background(), e.request("Benchmark"), nil)
				if err != nil {
					b.Fatalf("Run: %v", err)
				}
				wall += time.Since(start)
				startup += time.Duration(res.StartupMs) * time.Millisecond
				cli += time.Duration(res.DurationMs) * time.Millisecond
			}
			n := float64(b.N)
			ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) / n }
			b.ReportMetric(ms(startup), "startup-ms/op")
			b.ReportMetric(ms(cli), "cli-ms/op")
			b.ReportMetric(ms(wall), "wall-ms/op")
			b.ReportMetric(ms(wall-cli), "overhead-ms/op")
			b.Logf("%d runs: startup %.0f ms, CLI duration_ms %.0f ms, wall %.0f ms, overhead (wall - duration_ms) %.0f ms",
				b.N, ms(startup), ms(cli), ms(wall), ms(wall-cli))
		})
	}
}
