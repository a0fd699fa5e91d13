package main

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/ecstask"
	"github.com/webordinary/claude-code-astro/internal/idle"
	"github.com/webordinary/claude-code-astro/internal/taskprotect"
	"github.com/webordinary/claude-code-astro/worker"
)

// inService says whether the worker runs in an ECS service (ECS_TASK_MODE,
// or with "auto" the task metadata's ServiceName): there the service's
// scaler stops tasks, and the worker protects its own while busy.
func inService(ctx context.Context, cfg config.Config, log *slog.Logger) bool {
	switch {
	case cfg.ECSMetadataURI == "":
		return false
	case cfg.ECSTaskMode == config.TaskService:
		return true
	case cfg.ECSTaskMode == config.TaskStandalone:
		return false
	}
	task, err := ecstask.FromMetadata(ctx, nil, cfg.ECSMetadataURI)
	if err != nil {
		log.Warn("cannot read the task metadata; taking the task for a standalone one (set ECS_TASK_MODE)", "error", err)
		return false
	}
	return task.ServiceName != ""
}

// activities tells every one of its members of the worker's jobs.
type activities []worker.Activity

// Begin begins an activity in each member.
func (as activities) Begin() (end func()) {
	ends := make([]func(), len(as))
	for i, a := range as {
		ends[i] = a.Begin()
	}
	return func() {
		for _, e := range ends {
			e()
		}
	}
}

// protection returns the keeper of the task's scale-in protection in a
// service (nil elsewhere, or without ECS_AGENT_URI: then nothing protects
// the task, and the scaler may stop it with a job running, which another
// worker then takes).
func protection(cfg config.Config, service bool, log *slog.Logger) *taskprotect.Keeper {
	if !service {
		return nil
	}
	if cfg.ECSAgentURI == "" {
		log.Warn("in an ECS service but ECS_AGENT_URI is not set: the task cannot protect itself from scale-in")
		return nil
	}
	return taskprotect.New(taskprotect.Config{Setter: taskprotect.Agent{URI: cfg.ECSAgentURI}, Logger: log.With("component", "taskprotect")})
}

// idleStop waits until the worker is idle, then ends the run: off ECS it
// exits; in a standalone ECS task it stops the task first. In an ECS
// service it never stops: the service would start another task; the
// protection is off while idle and the scaler decides, so it only logs.
func idleStop(ctx context.Context, stop context.CancelFunc, cfg config.Config, service bool, awsCfg aws.Config, activity *idle.Tracker, log *slog.Logger) {
	reason := "idle for " + strconv.FormatFloat(cfg.AutoShutdown.Minutes(), 'f', -1, 64) + " minutes"
	for service {
		if err := activity.Wait(ctx); err != nil {
			return
		}
		changed := activity.Changed()
		log.Info("idle: in an ECS service the task is not stopped; it is unprotected, and the service scales in", "reason", reason)
		select { // until something happens
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
	if err := activity.Wait(ctx); err != nil {
		return
	}
	log.Info("idle: shutting down", "reason", reason, "on_ecs", cfg.ECSMetadataURI != "")
	// Stop receiving first, so no job starts only to be cut short by the
	// task's own stop; serve waits for this goroutine before it exits.
	stop()
	if cfg.ECSMetadataURI != "" {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		task, err := ecstask.FromMetadata(sctx, nil, cfg.ECSMetadataURI)
		if err == nil {
			err = ecstask.Stop(sctx, ecs.NewFromConfig(awsCfg), task, reason)
		}
		cancel()
		if err != nil {
			log.Error("cannot stop the ECS task; exiting anyway", "error", err)
		} else {
			log.Info("ECS task stop requested", "task", task.TaskARN, "cluster", task.Cluster)
		}
	}
}
