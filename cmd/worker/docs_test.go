//go:build !nolocal

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/testkit/repo"
	"github.com/webordinary/claude-code-astro/jobs"
)

// TestDocumentsAgree: the README, the compose file, infra/README.md, the
// task definition and BENCHMARKS.md give the same figures and commands where
// they share them, and those of the code.
func TestDocumentsAgree(t *testing.T) {
	root := repo.Root(t)
	docs := map[string]string{}
	for _, rel := range []string{"README.md", "docker-compose.yml", "infra/README.md", "infra/worker.yaml", "BENCHMARKS.md", "docs/CONTRACT.md"} {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		docs[rel] = string(b)
	}
	number := func(doc, pattern string) int {
		t.Helper()
		m := regexp.MustCompile(pattern).FindStringSubmatch(docs[doc])
		if m == nil {
			t.Fatalf("%s: nothing matches %s", doc, pattern)
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	// The stop: SIGTERM to exit, as the code bounds it, inside the grace
	// the compose file and ECS give.
	exit := int(jobs.ShutdownBudget.Seconds())
	for _, doc := range []string{"README.md", "docker-compose.yml", "infra/README.md", "infra/worker.yaml", "docs/CONTRACT.md"} {
		found := regexp.MustCompile(`within (\d+) s of SIGTERM`).FindAllStringSubmatch(docs[doc], -1)
		if len(found) == 0 {
			t.Errorf("%s does not say how soon the worker exits after SIGTERM", doc)
		}
		for _, m := range found {
			if m[1] != strconv.Itoa(exit) {
				t.Errorf("%s: %q, but the code exits within %d s", doc, m[0], exit)
			}
		}
		if regexp.MustCompile(`stops within \d+ s of SIGTERM`).MatchString(docs[doc]) {
			t.Errorf("%s: \"stops within N s of SIGTERM\": say \"exits within %d s of SIGTERM\"", doc, exit)
		}
	}
	// A job's last steps, in a run and in a stop, as jobs/shutdown.go bounds
	// them.
	secs := func(d time.Duration) int { return int(d.Seconds()) }
	for _, want := range []string{
		fmt.Sprintf("gets %d s (`jobs.FinishTimeout`)", secs(jobs.FinishTimeout)),
		fmt.Sprintf("%d s (`jobs.LeftoversTimeout`)", secs(jobs.LeftoversTimeout)),
		fmt.Sprintf("end %d s after the signal (the job loop's %d s less the answer's %d s)",
			secs(jobs.ShutdownStop-jobs.ShutdownAnswer), secs(jobs.ShutdownStop), secs(jobs.ShutdownAnswer)),
		fmt.Sprintf("still has %d s for them (`jobs.StopFinishTimeout`)", secs(jobs.StopFinishTimeout)),
	} {
		if !strings.Contains(strings.Join(strings.Fields(docs["README.md"]), " "), want) {
			t.Errorf("README.md does not say %q", want)
		}
	}
	grace := number("docker-compose.yml", `stop_grace_period: (\d+)s`)
	ecs := number("infra/worker.yaml", `StopTimeout: (\d+)`)
	if grace <= exit || ecs <= exit {
		t.Errorf("the compose file's %d s or ECS's %d s to stop leave no room for the worker's %d s", grace, ecs, exit)
	}
	if want := fmt.Sprintf("ECS allows %d s, the compose file %d s", ecs, grace); !strings.Contains(docs["README.md"], want) {
		t.Errorf("README.md does not say %q", want)
	}
	if want := fmt.Sprintf("`stopTimeout` %d s", ecs); !strings.Contains(docs["infra/README.md"], want) {
		t.Errorf("infra/README.md does not say %q", want)
	}
	if want := fmt.Sprintf("%d s to stop", grace); !strings.Contains(docs["infra/README.md"], want) {
		t.Errorf("infra/README.md does not say %q", want)
	}

	// The image's start time: the README quotes BENCHMARKS.md's row 16b.
	m := regexp.MustCompile(`\| 16b \|[^|]*\| (\d+(?:\.\d+)? m?s) `).FindStringSubmatch(docs["BENCHMARKS.md"])
	if m == nil {
		t.Fatal("BENCHMARKS.md has no row 16b with a figure")
	}
	for _, want := range []string{"`podman run` to a healthy `/health` in " + m[1], "/ " + m[1] + " /"} {
		if !strings.Contains(docs["README.md"], want) {
			t.Errorf("README.md does not say %q (BENCHMARKS.md row 16b)", want)
		}
	}

	// LocalStack: one version everywhere.
	ls := regexp.MustCompile(`localstack/localstack:(\d+\.\d+\.\d+)`).FindStringSubmatch(docs["docker-compose.yml"])
	if ls == nil {
		t.Fatal("docker-compose.yml names no LocalStack image")
	}
	for _, doc := range []string{"README.md", "infra/README.md"} {
		for _, v := range regexp.MustCompile(`LocalStack[^.]*?(\d+\.\d+\.\d+)`).FindAllStringSubmatch(docs[doc], -1) {
			if v[1] != ls[1] {
				t.Errorf("%s names LocalStack %s, the compose file %s", doc, v[1], ls[1])
			}
		}
	}

	// The compose commands of the README are infra/README.md's.
	compose := commands(docs["README.md"], "docker compose ")
	if len(compose) < 4 {
		t.Fatalf("README.md has %d docker compose commands", len(compose))
	}
	infraCmds := strings.Join(commands(docs["infra/README.md"], "docker compose "), "\n")
	for _, c := range compose {
		if !strings.Contains(infraCmds, c) {
			t.Errorf("README.md's %q is not in infra/README.md", c)
		}
	}

	// The preview: the compose file points at the previewUrl, whose form
	// the README gives; the bare port is no preview.
	base := regexp.MustCompile(`PREVIEW_BASE_URL: (\S+)`).FindStringSubmatch(docs["docker-compose.yml"])
	if base == nil || !strings.Contains(docs["README.md"], "`"+strings.Replace(base[1], config.PreviewPlaceholder, "{preview}", 1)) {
		t.Errorf("the compose file's PREVIEW_BASE_URL %v is not the README's", base)
	}
	if regexp.MustCompile(`preview at http://localhost:8080/?[^?{]`).MatchString(docs["docker-compose.yml"]) {
		t.Error("docker-compose.yml sends the reader to http://localhost:8080/, which answers 401")
	}

	// The send commands `worker local` prints are the README's.
	var out bytes.Buffer
	c := &LocalCommand{Main: &Main{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	c.printWelcome(config.Default(), sendTarget{}, filepath.Join(wd, localStateFile), "127.0.0.1:8080", true, welcomeNotes{})
	printed := commands(out.String(), "go run ./cmd/worker send")
	if len(printed) != 2 {
		t.Fatalf("worker local printed %d send commands:\n%s", len(printed), out.String())
	}
	readme := strings.Join(commands(docs["README.md"], "go run ./cmd/worker send"), "\n")
	for _, p := range printed {
		if strings.Contains(p, "-local-state") {
			t.Errorf("worker local adds -local-state for its default state file: %q", p)
		}
		if !strings.Contains(readme, p) {
			t.Errorf("worker local prints %q, which the README does not show", p)
		}
	}
	c.printWelcome(config.Default(), sendTarget{}, "/elsewhere/local.json", "127.0.0.1:8080", true, welcomeNotes{})
	if !strings.Contains(out.String(), "send -local-state /elsewhere/local.json") {
		t.Error("worker local with -dir elsewhere does not tell send where its state is")
	}
}

// commands returns the shell commands in text that start with prefix
// (after leading spaces), continuation lines joined and spaces collapsed.
func commands(text, prefix string) []string {
	var out []string
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, `\`) + " " + strings.TrimSpace(lines[i])
		}
		out = append(out, strings.Join(strings.Fields(line), " "))
	}
	return out
}
