package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/ledger"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/worker"
)

// envelope are the Response fields the worker itself sets: the job's ids,
// the status, the error body and the times. Every other field is the
// handler's.
var envelope = map[string]bool{
	"JobID": true, "Type": true, "ClientID": true, "UserID": true, "ThreadID": true, "Status": true,
	"Error": true, "Progress": true, "ReceivedAt": true, "StartedAt": true, "FinishedAt": true, "DurationMs": true,
}

// TestEveryHandlerFieldReachesTheAnswer: a handler's response with every
// field set arrives on the response queue with every field as the handler
// set it, so a field added to jobs.Response is never dropped on the way.
func TestEveryHandlerFieldReachesTheAnswer(t *testing.T) {
	var want jobs.Response
	v := reflect.ValueOf(&want).Elem()
	for i := range v.NumField() {
		if name := v.Type().Field(i).Name; !envelope[name] {
			fill(t, v.Field(i), name)
		}
	}
	e := newEnv(t, true, 30*time.Second)
	handler := jobs.HandlerFunc(func(context.Context, jobs.Job, jobs.ProgressFunc) (jobs.Response, error) { return want, nil })
	e.start(t, nil, worker.Config{Handler: handler, Ledger: ledger.New(t.TempDir())})
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "j-fields", "acme", "u1", "t1", "anything"))
	got := e.responses.WaitFinal(t, 1, 20*time.Second)[0]

	// Compare as upstream reads them: decoded from the message's JSON.
	gotV := reflect.ValueOf(got)
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if envelope[name] {
			continue
		}
		if !reflect.DeepEqual(gotV.Field(i).Interface(), v.Field(i).Interface()) {
			g, _ := json.Marshal(gotV.Field(i).Interface())
			w, _ := json.Marshal(v.Field(i).Interface())
			t.Errorf("%s = %s in the answer, the handler set %s", name, g, w)
		}
	}
	if got.JobID != "j-fields" || got.ClientID != "acme" || got.UserID != "u1" || got.ThreadID != "t1" ||
		got.Type != jobs.TypeExecute || got.Status != jobs.StatusSucceeded {
		t.Errorf("envelope = %+v", got)
	}
}

// fill sets v to a value that is not its zero value, different per field.
func fill(t *testing.T, v reflect.Value, name string) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString("value-of-" + name)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(len(name)) + 7)
	case reflect.Float64:
		v.SetFloat(float64(len(name)) + 0.25)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(t, s.Index(i), fmt.Sprintf("%s%d", name, i))
		}
		v.Set(s)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(t, p.Elem(), name)
		v.Set(p)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, v.Field(i), name+"."+v.Type().Field(i).Name)
		}
	default:
		t.Fatalf("fill %s: a field of kind %s: teach fill about it", name, v.Kind())
	}
}
