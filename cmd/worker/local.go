//go:build !nolocal

package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	claudecode "github.com/webordinary/claude-code-astro/internal/agent/claude-code"
	"github.com/webordinary/claude-code-astro/internal/atomicfile"
	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/demoagent"
	"github.com/webordinary/claude-code-astro/internal/localsqs"
)

// localStateFile is where `worker local` says which queues it serves, for
// `worker send`.
const localStateFile = ".local/local.json"

// localUsage is `worker local`'s line in the command list.
const localUsage = "  local        run everything here: an embedded SQS emulator, the worker, the preview\n"

// LocalCommand is `worker local`: the whole system on this machine, with an
// embedded SQS emulator instead of AWS. No account, no Docker.
type LocalCommand struct {
	*Main
}

// Run starts the emulator, creates the queues, and serves the worker.
func (c *LocalCommand) Run(ctx context.Context, args []string) error {
	flags := flag.NewFlagSet("worker local", flag.ContinueOnError)
	flags.SetOutput(c.Stderr)
	dir := flags.String("dir", ".local", "folder for the workspaces, the example repo and the state file "+
		"(as root, the workspaces and the example repo go under WORKER_CACHE_DIR when other uids cannot pass through this folder)")
	awsAddr := flags.String("aws-addr", "127.0.0.1:4566", "address of the embedded SQS emulator")
	httpAddr := flags.String("http", "127.0.0.1:8080", "address of /health and the preview (HTTP_ADDR)")
	site := flags.String("site", "examples/site", "the example site cloned by an init without repoUrl, when REPO_URL is not set")
	noKey := c.Getenv("ANTHROPIC_API_KEY") == "" && c.Getenv("ANTHROPIC_API_KEY_SECRET_ID") == ""
	demo := flags.Bool("demo-agent", noKey, "answer execute jobs with the scripted demo agent instead of the Messages API: "+
		"no model and no key; the real CLI sets "+demoagent.Page+"'s first heading to the instruction. "+
		"On by default when ANTHROPIC_API_KEY is not set")
	workers := flags.Int("workers", 1, "run a fleet: this many workers (child processes), a router on -http and the lease table in the emulator (README, \"Fleet\")")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *workers < 1 || *workers > 16 {
		return fmt.Errorf("-workers: from 1 to 16, not %d", *workers)
	}
	root, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	_, statErr := os.Stat(root)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", root, err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		if err := os.Chmod(root, 0o755); err != nil { // whatever the umask
			return fmt.Errorf("create %s: %w", root, err)
		}
	}
	dirSet := false
	flags.Visit(func(f *flag.Flag) { dirSet = dirSet || f.Name == "dir" })
	cache := claudecode.Cache{Dir: cmp.Or(c.Getenv("WORKER_CACHE_DIR"), claudecode.DefaultDir(os.Geteuid(), c.Getenv))}
	// Tenant uids clone the example repository and work in their
	// workspaces: both must be within their reach.
	tenantDir, moved, err := localTenantDir(root, dirSet, cache.Dir)
	if err != nil {
		return err
	}

	emu, err := localsqs.Start(*awsAddr)
	if err != nil {
		return fmt.Errorf("-aws-addr: %w", err)
	}
	defer emu.Close()
	endpoint := emu.URL
	awsCfg := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}
	jobQ, respQ, err := createLocalQueues(ctx, sqs.NewFromConfig(awsCfg))
	if err != nil {
		return err
	}
	// The queues' messages outlive a restart: a job not yet done, an
	// answer not yet read.
	if n, err := emu.Persist(ctx, filepath.Join(root, "queues.json")); err != nil {
		return err
	} else if n > 0 {
		fmt.Fprintf(c.Stderr, "worker local: %d messages kept from the last run are back on the queues\n", n)
	}

	overlay := map[string]string{
		"JOB_QUEUE_URL": jobQ, "RESPONSE_QUEUE_URL": respQ, "HTTP_ADDR": *httpAddr,
	}
	if *demo {
		agentAPI, err := demoagent.Start("127.0.0.1:0", nil)
		if err != nil {
			return err
		}
		defer func() { _ = agentAPI.Close(context.WithoutCancel(ctx)) }() // nothing is left to tell
		// The worker's API gateway talks to the demo agent, with a key that
		// is no secret.
		overlay["ANTHROPIC_BASE_URL"] = agentAPI.URL
		overlay["ANTHROPIC_API_KEY"] = demoKey
		overlay["ANTHROPIC_API_KEY_SECRET_ID"] = ""
	}
	defaults := map[string]string{
		"WORKSPACE_PATH":        filepath.Join(tenantDir, "workspace"),
		"WORKER_CACHE_DIR":      cache.Dir,
		"AUTO_SHUTDOWN_MINUTES": "0",
		"PREVIEW_BASE_URL":      localPreviewURL(*httpAddr),
	}
	if c.Getenv("PREVIEW_SECRET") == "" && c.Getenv("PREVIEW_SECRET_SECRET_ID") == "" {
		// One key across restarts, so preview links outlive them.
		key, err := localPreviewKey(filepath.Join(root, "preview-key"))
		if err != nil {
			return err
		}
		defaults["PREVIEW_SECRET"] = key
	}
	cliProblem := ""
	if c.Getenv("CLAUDE_BIN") == "" {
		bin, err := c.pinnedCLI(ctx, cache)
		if err != nil && ctx.Err() != nil {
			return nil // stopped (Ctrl-C) while installing
		}
		if err != nil {
			cliProblem = err.Error()
			fmt.Fprintf(c.Stderr, "worker local: %v\n", err)
		} else {
			defaults["CLAUDE_BIN"] = bin
		}
	}
	if c.Getenv("REPO_URL") == "" {
		if repo, err := exampleRepo(ctx, *site, tenantDir, c.Getenv("PATH")); err != nil {
			fmt.Fprintf(c.Stderr, "worker local: no example repo (%v); init jobs need repoUrl\n", err)
		} else if err := exampleReachable(repo); err != nil {
			return err
		} else if repo != "" {
			defaults["REPO_URL"] = repo
		}
	}
	getenv := func(k string) string {
		if v, ok := overlay[k]; ok {
			return v
		}
		if v := c.Getenv(k); v != "" {
			return v
		}
		return defaults[k]
	}
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return err
	}
	state := sendTarget{Endpoint: endpoint, Region: "us-east-1", JobQueueURL: jobQ, ResponseQueueURL: respQ, PreviewURL: cfg.PreviewBaseURL}
	b, _ := json.MarshalIndent(state, "", "  ")
	statePath := filepath.Join(root, "local.json")
	if err := atomicfile.Write(statePath, b, 0o644); err != nil {
		return err
	}
	defer os.Remove(statePath)

	if *workers > 1 {
		env := map[string]string{}
		for _, k := range []string{"JOB_QUEUE_URL", "RESPONSE_QUEUE_URL", "WORKSPACE_PATH", "AUTO_SHUTDOWN_MINUTES", "CLAUDE_BIN", "REPO_URL",
			"ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY_SECRET_ID", "ASTRO_PORT"} {
			env[k] = getenv(k)
		}
		return localFleet(ctx, c, *workers, *httpAddr, awsCfg, endpoint, env, func(addr string, ws []string) {
			c.printWelcome(cfg, state, statePath, addr, *demo, welcomeNotes{cliProblem: cliProblem, moved: moved})
			fmt.Fprintf(c.Stdout, "A fleet: %d workers on %v, the router on %s (every previewUrl opens through it), the lease table %q in the emulator.\n\n",
				len(ws), ws, addr, localLeaseTable)
		})
	}
	return serve(ctx, cfg, serveOptions{AWS: awsCfg, Stderr: c.Stderr, PATH: c.Getenv("PATH"), Hurry: c.Hurry, Ready: func(addr, claudeBin string) {
		c.printWelcome(cfg, state, statePath, addr, *demo, welcomeNotes{cli: claudeBin, cliProblem: cliProblem, moved: moved})
	}})
}

// demoKey is the API key the worker's gateway sends the demo agent: no
// secret.
const demoKey = "local-demo-agent-key"

// welcomeNotes are what worker local found at start, for its welcome.
type welcomeNotes struct {
	cli        string // the CLI tenants run
	cliProblem string // why there is none
	moved      string // why the workspaces are not under -dir
}

func (c *LocalCommand) printWelcome(cfg config.Config, st sendTarget, statePath, httpAddr string, demo bool, notes welcomeNotes) {
	key := "set"
	cli := notes.cli
	if notes.cliProblem != "" {
		cli = "NOT INSTALLED: execute jobs will fail. " + notes.cliProblem
	}
	workspaces := cfg.WorkspacePath
	if notes.moved != "" {
		workspaces += " (" + notes.moved + ")"
	}
	switch {
	case demo:
		key = "none: the DEMO AGENT answers execute jobs (no model: it sets " + demoagent.Page +
			"'s first heading to the instruction). For the real agent: export ANTHROPIC_API_KEY, or -demo-agent=false"
	case c.Getenv("ANTHROPIC_API_KEY") == "" && c.Getenv("ANTHROPIC_API_KEY_SECRET_ID") == "":
		key = "NOT SET: execute jobs will fail until you export ANTHROPIC_API_KEY"
	}
	send := "go run ./cmd/worker send" + localStateFlag(statePath)
	fmt.Fprintf(c.Stdout, `
worker local is running (Ctrl-C stops it)
  SQS emulator    %s
  job queue       %s
  response queue  %s
  workspaces      %s
  example repo    %s
  Claude Code     %s
  agent           %s
  health          http://%s/health
  previews        %s (each user's own; open the previewUrl of a job's answer: it signs the browser in)

Send a job from another terminal:
  %s -type init -client acme -user alice -thread t1 -wait 5m
  %s -type execute -client acme -user alice -thread t1 -instruction "Change the heading to Hello" -wait 10m

`, st.Endpoint, st.JobQueueURL, st.ResponseQueueURL, workspaces, orNone(cfg.RepoURL), cli, key, httpAddr, cfg.PreviewBaseURL, send, send)
}

// localStateFlag is the -local-state flag a send from the current
// directory needs to find statePath: none when it is send's default.
func localStateFlag(statePath string) string {
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, statePath); err == nil && rel == filepath.FromSlash(localStateFile) {
			return ""
		}
	}
	return " -local-state " + statePath
}

// localPreviewKey returns the preview key kept at path (only its owner
// may read it), drawn and written the first time.
func localPreviewKey(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read the preview key: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("draw a preview key: %w", err)
	}
	key := hex.EncodeToString(b)
	if err := atomicfile.Write(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("keep the preview key: %w", err)
	}
	return key, nil
}

// localPreviewURL is worker local's PREVIEW_BASE_URL: a host name per
// preview under localhost, which browsers resolve to this machine.
func localPreviewURL(httpAddr string) string {
	_, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		port = "8080"
	}
	return "http://" + config.PreviewPlaceholder + ".localhost:" + port + "/"
}

func orNone(s string) string {
	if s == "" {
		return "(none: give repoUrl in init jobs)"
	}
	return s
}

// createLocalQueues creates the FIFO job and response queues.
func createLocalQueues(ctx context.Context, client *sqs.Client) (jobQ, respQ string, err error) {
	for _, q := range []struct {
		name string
		dst  *string
	}{{"jobs.fifo", &jobQ}, {"responses.fifo", &respQ}} {
		out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(q.name),
			Attributes: map[string]string{"FifoQueue": "true", "VisibilityTimeout": "60"}})
		if err != nil {
			return "", "", fmt.Errorf("create queue %s: %w", q.name, err)
		}
		*q.dst = aws.ToString(out.QueueUrl)
	}
	return jobQ, respQ, nil
}

// exampleRepo makes a bare git repository of the example site under root,
// which every tenant uid can read and push to,
// once, and returns its path; "" when there is no site folder.
func exampleRepo(ctx context.Context, site, root, path string) (string, error) {
	src, err := filepath.Abs(site)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(src, "package.json")); err != nil {
		return "", nil
	}
	bare := filepath.Join(root, "example-site.git")
	if _, err := os.Stat(filepath.Join(bare, "HEAD")); err == nil {
		return bare, nil
	}
	work, err := os.MkdirTemp(root, "example-site-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".astro" || d.Name() == "dist") {
			return filepath.SkipDir
		}
		dst := filepath.Join(work, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return "", fmt.Errorf("copy the example site: %w", err)
	}
	env := []string{"PATH=" + path, "HOME=" + work, "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Example", "GIT_AUTHOR_EMAIL=example@localhost", "GIT_COMMITTER_NAME=Example", "GIT_COMMITTER_EMAIL=example@localhost"}
	for _, args := range [][]string{
		{"-C", work, "init", "-q", "-b", "main"},
		{"-C", work, "add", "-A"},
		{"-C", work, "commit", "-q", "-m", "Example site"},
		// Shared: tenant uids, not this process, clone it and push to it.
		{"init", "-q", "--bare", "--shared=0777", "-b", "main", bare},
		{"-C", work, "push", "-q", bare, "main"},
	} {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
		}
	}
	if _, err := os.Stat(bare); errors.Is(err, fs.ErrNotExist) {
		return "", errors.New("bare repo not created")
	}
	return bare, nil
}
