package bench

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/imagekit"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
)

// benchImage: rows 16a-16c, the worker's container image as podman builds
// it from the repository's Dockerfile (infra/image/test does the same):
// its size and what takes it, and how fast a container of it answers
// /health.
func benchImage(b *testing.B, e *env) {
	const starts = 3
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	k := imagekit.New(b)
	k.EnsureBases(ctx)
	built := k.BuildImage(ctx, imagekit.WorkerTag)
	size, layers := k.Size(ctx, imagekit.WorkerTag)
	var parts []string
	for _, l := range layers[:min(4, len(layers))] {
		parts = append(parts, l.String())
	}
	e.table.Check("16a", fmt.Sprintf("%s: %s", MiB(size), strings.Join(parts, "; ")), size < 1<<30)
	e.table.Info("16c", Ms(built)+" (stand-in bases cached)")
	b.ReportMetric(float64(size)/(1<<20), "image-MiB")

	emu := sqstest.Start(b)
	jobsQ, respQ := queues(b, emu, "image")
	var took []time.Duration
	for i := range starts {
		port := freePort(b)
		name := fmt.Sprintf("claude-code-astro-bench-%d-%d", time.Now().UnixNano(), i)
		args := imagekit.RunArgs(name)
		for k, v := range map[string]string{"JOB_QUEUE_URL": jobsQ.URL, "RESPONSE_QUEUE_URL": respQ.URL,
			"AWS_ENDPOINT_URL": emu.URL, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
			"ANTHROPIC_API_KEY": benchAPIKey, "HTTP_ADDR": "127.0.0.1:" + strconv.Itoa(port), "AUTO_SHUTDOWN_MINUTES": "0"} {
			args = append(args, "-e", k+"="+v)
		}
		start := time.Now()
		k.MustPodman(ctx, append(args, imagekit.WorkerTag)...)
		healthy := false
		for time.Since(start) < time.Minute {
			resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/health")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					healthy = true
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		d := time.Since(start)
		_, _ = k.Podman(context.Background(), "rm", "-f", "-t", "0", name)
		if !healthy {
			b.Fatalf("the container did not answer /health within a minute")
		}
		took = append(took, d)
	}
	e.table.Check("16b", medMax(took), Median(took) < 5*time.Second)
	b.ReportMetric(ms(Median(took)), "container-start-to-healthy-median-ms")
}
