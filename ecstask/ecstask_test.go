package ecstask_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/sivchari/kumo"

	"github.com/webordinary/claude-code-astro/ecstask"
	"github.com/webordinary/claude-code-astro/testkit/sqstest"
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
	srv := kumo.NewServer()
	t.Cleanup(srv.Close)
	api := ecs.NewFromConfig(sqstest.AWSConfig(), func(o *ecs.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	task := RunTask(t, api)
	reason := "idle for 5 minutes " + strings.Repeat("x", 300)
	if err := ecstask.Stop(context.Background(), api, task, reason); err != nil {
		t.Fatal(err)
	}
	out, err := api.DescribeTasks(context.Background(), &ecs.DescribeTasksInput{Cluster: aws.String(task.Cluster), Tasks: []string{task.TaskARN}})
	if err != nil || len(out.Tasks) != 1 {
		t.Fatalf("describe: %v %+v", err, out)
	}
	got := out.Tasks[0]
	if aws.ToString(got.DesiredStatus) != "STOPPED" && aws.ToString(got.LastStatus) != "STOPPED" {
		t.Errorf("task status %s/%s, want STOPPED", aws.ToString(got.LastStatus), aws.ToString(got.DesiredStatus))
	}
	if r := aws.ToString(got.StoppedReason); !strings.HasPrefix(r, "idle for 5 minutes") || len(r) > ecstask.MaxReasonLen {
		t.Errorf("stopped reason %q", r)
	}
}

// RunTask starts a task in the emulator, as upstream's RunTask would.
func RunTask(t *testing.T, api *ecs.Client) ecstask.Task {
	t.Helper()
	ctx := context.Background()
	cl, err := api.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String("workers")})
	if err != nil {
		t.Fatal(err)
	}
	td, err := api.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family:               aws.String("worker"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("worker"), Image: aws.String("worker:test")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	run, err := api.RunTask(ctx, &ecs.RunTaskInput{Cluster: cl.Cluster.ClusterArn, TaskDefinition: td.TaskDefinition.TaskDefinitionArn})
	if err != nil || len(run.Tasks) != 1 {
		t.Fatalf("run task: %v", err)
	}
	return ecstask.Task{Cluster: aws.ToString(cl.Cluster.ClusterArn), TaskARN: aws.ToString(run.Tasks[0].TaskArn)}
}
