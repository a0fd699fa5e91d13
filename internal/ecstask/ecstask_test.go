package ecstask_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/ecstask"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
)

func TestFromMetadata(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		want       ecstask.Task
		errHas     string
	}{
		{"ok", `{"Cluster":"arn:aws:ecs:us-east-1:1:cluster/c","TaskARN":"arn:aws:ecs:us-east-1:1:task/c/abc","Family":"w"}`, 200,
			ecstask.Task{Cluster: "arn:aws:ecs:us-east-1:1:cluster/c", TaskARN: "arn:aws:ecs:us-east-1:1:task/c/abc"}, ""},
		{"missing arn", `{"Cluster":"c"}`, 200, ecstask.Task{}, "no Cluster or TaskARN"},
		{"not json", `<html>`, 200, ecstask.Task{}, "decode"},
		{"server error", `oops`, 500, ecstask.Task{}, "status 500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v4/abc/task" {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			got, err := ecstask.FromMetadata(context.Background(), srv.Client(), srv.URL+"/v4/abc")
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("err = %v, want %q", err, tt.errHas)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v", got, err)
			}
		})
	}
}

func TestStopInEmulator(t *testing.T) {
	emu := sqstest.Start(t)
	api := emu.ECS()
	cluster, arn := emu.RunTask(t, "ecstask-test")
	task := ecstask.Task{Cluster: cluster, TaskARN: arn}
	reason := "idle for 5 minutes " + strings.Repeat("x", 300)
	if err := ecstask.Stop(context.Background(), api, task, reason); err != nil {
		t.Fatal(err)
	}
	status, r := emu.DescribeTask(t, cluster, arn)
	if status != "STOPPED" {
		t.Errorf("task status %s, want STOPPED", status)
	}
	if !strings.HasPrefix(r, "idle for 5 minutes") || len(r) > ecstask.MaxReasonLen {
		t.Errorf("stopped reason %q", r)
	}
}
