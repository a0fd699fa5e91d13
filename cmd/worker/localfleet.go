//go:build !nolocal

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/lease"
)

// localLeaseTable is the lease table of `worker local -workers N`.
const localLeaseTable = "preview-leases"

// localFleet runs n workers as child processes of this binary (`worker run`,
// each on its own HTTP port above the router's and its own dev-server ports)
// and a router in this process on the -http address, with the lease table
// in the embedded emulator: a fleet on one machine. env is what every
// worker gets (the emulator, the queues, the workspace root); ready is told
// the router's address.
func localFleet(ctx context.Context, c *LocalCommand, n int, httpAddr string, awsCfg aws.Config, endpoint string,
	env map[string]string, ready func(routerAddr string, workers []string)) error {
	if err := lease.CreateTable(ctx, dynamodb.NewFromConfig(awsCfg), localLeaseTable); err != nil {
		return err
	}
	host, portText, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return fmt.Errorf("-http: %w", err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port == 0 {
		return fmt.Errorf("-http: a fleet needs a fixed port, not %q", httpAddr)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary: %w", err)
	}
	secret := rand.Text() // the fleet's preview token key, shared by workers and router
	base := localPreviewURL(httpAddr)
	astroPort := config.Default().AstroPort
	if v, err := strconv.Atoi(env["ASTRO_PORT"]); err == nil {
		astroPort = v
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var workers []string
	procs := make([]*exec.Cmd, 0, n)
	for i := range n {
		addr := net.JoinHostPort(host, strconv.Itoa(port+1+i))
		workers = append(workers, addr)
		cmd := exec.Command(self, "run")
		cmd.Env = os.Environ() // the operator's own shell, as `worker run` would have it
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Env = append(cmd.Env,
			"AWS_ENDPOINT_URL="+endpoint, "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local",
			"HTTP_ADDR="+addr, "PREVIEW_ADVERTISE_ADDR="+addr, "PREVIEW_BASE_URL="+base, "PREVIEW_SECRET="+secret,
			"LEASE_TABLE="+localLeaseTable, "ASTRO_PORT="+strconv.Itoa(astroPort+100*i),
			// A status socket of each worker's own: they would all take the
			// default one, and a second worker refuses to share it.
			"STATUS_SOCKET="+filepath.Join(env["WORKSPACE_PATH"]+"-status", "worker-"+strconv.Itoa(i+1), "status.sock"))
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C reaches the fleet through us, in order
		out, err := cmd.StderrPipe()
		if err != nil {
			return err
		}
		cmd.Stdout = c.Stdout
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start worker %d: %w", i+1, err)
		}
		procs = append(procs, cmd)
		name := "worker-" + strconv.Itoa(i+1)
		wg.Go(func() { prefixLines(c.Stderr, out, name) })
		wg.Go(func() {
			if err := cmd.Wait(); err != nil && runCtx.Err() == nil {
				fmt.Fprintf(c.Stderr, "worker local: %s exited: %v\n", name, err)
			}
		})
	}
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM) // it drains and ends its leases
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			for _, p := range procs {
				_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			}
			<-done
		}
	}()

	rcfg := config.Router{HTTPAddr: httpAddr, PreviewBaseURL: base, PreviewSecret: secret, PreviewTokenTTL: config.Default().PreviewTokenTTL,
		LeaseTable: localLeaseTable, JobQueueURL: env["JOB_QUEUE_URL"], LogFormat: config.Default().LogFormat}
	if err := rcfg.Validate(); err != nil {
		return err
	}
	return route(runCtx, rcfg, routerOptions{AWS: awsCfg, Stderr: c.Stderr, Ready: func(addr string) { ready(addr, workers) }})
}

// prefixLines copies r to w line by line, each line prefixed with name.
func prefixLines(w io.Writer, r io.Reader, name string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		fmt.Fprintf(w, "%s | %s\n", name, sc.Text())
	}
}
