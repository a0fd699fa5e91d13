package jobs

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/ident"
)

func TestDecodeValid(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Job
	}{
		{"init minimal", `{"type":"init","clientId":"acme","userId":"u1","threadId":"t1"}`,
			Job{Type: TypeInit, JobID: "msg-1", ClientID: "acme", UserID: "u1", ThreadID: "t1"}},
		{"init full", `{"type":"init","jobId":"j:1.a-b","clientId":"acme","userId":"u1","threadId":"t1","repoUrl":"https://github.com/a/b.git","baseBranch":"main"}`,
			Job{Type: TypeInit, JobID: "j:1.a-b", ClientID: "acme", UserID: "u1", ThreadID: "t1", RepoURL: "https://github.com/a/b.git", BaseBranch: "main"}},
		{"execute default mode", `{"type":"execute","clientId":"acme","userId":"u1","threadId":"t1","instruction":"make it blue"}`,
			Job{Type: TypeExecute, JobID: "msg-1", ClientID: "acme", UserID: "u1", ThreadID: "t1", Instruction: "make it blue", Mode: ModeExecute}},
		{"execute plan", `{"type":"execute","clientId":"a","userId":"b","threadId":"c","instruction":"x","mode":"plan"}`,
			Job{Type: TypeExecute, JobID: "msg-1", ClientID: "a", UserID: "b", ThreadID: "c", Instruction: "x", Mode: ModePlan}},
		{"init fork", `{"type":"init","clientId":"acme","userId":"u1","threadId":"t2","fromThreadId":"t1"}`,
			Job{Type: TypeInit, JobID: "msg-1", ClientID: "acme", UserID: "u1", ThreadID: "t2", FromThreadID: "t1"}},
		{"cancel without thread", `{"type":"cancel","jobId":"c1","clientId":"acme","userId":"u1","targetJobId":"job-42"}`,
			Job{Type: TypeCancel, JobID: "c1", ClientID: "acme", UserID: "u1", TargetJobID: "job-42"}},
		{"cancel with thread", `{"type":"cancel","clientId":"acme","userId":"u1","threadId":"t1","targetJobId":"job-42"}`,
			Job{Type: TypeCancel, JobID: "msg-1", ClientID: "acme", UserID: "u1", ThreadID: "t1", TargetJobID: "job-42"}},
		{"revert steps", `{"type":"revert","clientId":"acme","userId":"u1","threadId":"t1","steps":2}`,
			Job{Type: TypeRevert, JobID: "msg-1", ClientID: "acme", UserID: "u1", ThreadID: "t1", Steps: 2}},
		{"revert to commit", `{"type":"revert","clientId":"acme","userId":"u1","threadId":"t1","toCommit":"3f2c9a1"}`,
			Job{Type: TypeRevert, JobID: "msg-1", ClientID: "acme", UserID: "u1", ThreadID: "t1", ToCommit: "3f2c9a1"}},
		{"preview of the current thread", `{"type":"preview","clientId":"acme","userId":"u1"}`,
			Job{Type: TypePreview, JobID: "msg-1", ClientID: "acme", UserID: "u1"}},
		{"preview of a thread", `{"type":"preview","clientId":"acme","userId":"u1","threadId":"t1"}`,
			Job{Type: TypePreview, JobID: "msg-1", ClientID: "acme", UserID: "u1", ThreadID: "t1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.body), "msg-1")
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeInvalid(t *testing.T) {
	const ok = `"clientId":"acme","userId":"u1","threadId":"t1"`
	tests := []struct {
		name        string
		body        string
		field       string
		addressable bool
		msg         string
	}{
		{"not json", `hello`, "", false, "not a JSON object"},
		{"array", `[1,2]`, "", false, "not a JSON object"},
		{"null", `null`, "", false, "not a JSON object"},
		{"trailing data", `{"type":"init",` + ok + `} {}`, "", false, "after the JSON object"},
		{"missing type", `{` + ok + `}`, "type", true, "required"},
		{"unknown type", `{"type":"deploy",` + ok + `}`, "type", true, `"deploy" is not`},
		{"type not string", `{"type":1,` + ok + `}`, "type", true, "must be a string"},
		{"unknown field", `{"type":"init","shell":"rm",` + ok + `}`, "shell", true, "unknown field"},
		{"missing client", `{"type":"init","userId":"u1","threadId":"t1"}`, "clientId", false, "required"},
		{"dotdot client", `{"type":"init","clientId":"../x","userId":"u1","threadId":"t1"}`, "clientId", false, "must be 1-64"},
		{"slash user", `{"type":"init","clientId":"acme","userId":"a/b","threadId":"t1"}`, "userId", false, "must be 1-64"},
		{"dash thread", `{"type":"init","clientId":"acme","userId":"u1","threadId":"-rf"}`, "threadId", true, "not starting"},
		{"underscore thread", `{"type":"init","clientId":"acme","userId":"u1","threadId":"_x"}`, "threadId", true, "not starting"},
		{"empty thread", `{"type":"init","clientId":"acme","userId":"u1","threadId":""}`, "threadId", true, "required"},
		{"long thread", `{"type":"init","clientId":"acme","userId":"u1","threadId":"` + strings.Repeat("a", 200) + `"}`, "threadId", true, "must be 1-64"},
		{"nul in id", `{"type":"init","clientId":"acme","userId":"u1","threadId":"a\u0000b"}`, "threadId", true, "must be 1-64"},
		{"bad job id", `{"type":"init","jobId":"a/b",` + ok + `}`, "jobId", true, "1-128"},
		{"dotdot job id", `{"type":"init","jobId":"..",` + ok + `}`, "jobId", true, "1-128"},
		{"long job id", `{"type":"init","jobId":"` + strings.Repeat("j", 129) + `",` + ok + `}`, "jobId", true, "1-128"},
		{"init with instruction", `{"type":"init","instruction":"x",` + ok + `}`, "instruction", true, "not allowed"},
		{"execute without instruction", `{"type":"execute",` + ok + `}`, "instruction", true, "required"},
		{"execute blank instruction", `{"type":"execute","instruction":"  ",` + ok + `}`, "instruction", true, "required"},
		{"oversize instruction", `{"type":"execute","instruction":"` + strings.Repeat("x", MaxInstructionBytes+1) + `",` + ok + `}`, "instruction", true, "more than 100000"},
		{"bad mode", `{"type":"execute","instruction":"x","mode":"yolo",` + ok + `}`, "mode", true, `"yolo"`},
		{"execute with repo", `{"type":"execute","instruction":"x","repoUrl":"https://h/r",` + ok + `}`, "repoUrl", true, "not allowed"},
		{"repo with token", `{"type":"init","repoUrl":"https://user:ghp_secret@github.com/a/b",` + ok + `}`, "repoUrl", true, "credentials"},
		{"repo http public", `{"type":"init","repoUrl":"http://github.com/a/b",` + ok + `}`, "repoUrl", true, "loopback"},
		{"repo option", `{"type":"init","repoUrl":"--upload-pack=evil",` + ok + `}`, "repoUrl", true, "'-'"},
		{"repo ftp", `{"type":"init","repoUrl":"ftp://h/r",` + ok + `}`, "repoUrl", true, "must be https"},
		{"bad base branch", `{"type":"init","baseBranch":"-x",` + ok + `}`, "baseBranch", true, "branch"},
		{"fork from itself", `{"type":"init","fromThreadId":"t1",` + ok + `}`, "fromThreadId", true, "another thread"},
		{"fork from a bad id", `{"type":"init","fromThreadId":"../t",` + ok + `}`, "fromThreadId", true, "thread id"},
		{"fork and base branch", `{"type":"init","fromThreadId":"t0","baseBranch":"main",` + ok + `}`, "fromThreadId", true, "not both"},
		{"fork in an execute", `{"type":"execute","instruction":"x","fromThreadId":"t0",` + ok + `}`, "fromThreadId", true, "not allowed in an execute"},
		{"cancel without target", `{"type":"cancel","clientId":"acme","userId":"u1"}`, "targetJobId", true, "required"},
		{"cancel bad target", `{"type":"cancel","clientId":"acme","userId":"u1","targetJobId":"../x"}`, "targetJobId", true, "1-128"},
		{"cancel itself", `{"type":"cancel","jobId":"c1","clientId":"acme","userId":"u1","targetJobId":"c1"}`, "targetJobId", true, "itself"},
		{"cancel with instruction", `{"type":"cancel","targetJobId":"j","instruction":"x",` + ok + `}`, "instruction", true, "not allowed in a cancel"},
		{"cancel without user", `{"type":"cancel","clientId":"acme","targetJobId":"j"}`, "userId", false, "required"},
		{"preview with instruction", `{"type":"preview","instruction":"x",` + ok + `}`, "instruction", true, "not allowed in a preview"},
		{"preview with repo", `{"type":"preview","repoUrl":"https://h/r",` + ok + `}`, "repoUrl", true, "not allowed in a preview"},
		{"preview without user", `{"type":"preview","clientId":"acme"}`, "userId", false, "required"},
		{"target in an execute", `{"type":"execute","instruction":"x","targetJobId":"j",` + ok + `}`, "targetJobId", true, "not allowed"},
		{"revert without target", `{"type":"revert",` + ok + `}`, "toCommit", true, "exactly one"},
		{"revert with both", `{"type":"revert","toCommit":"abcd","steps":1,` + ok + `}`, "toCommit", true, "exactly one"},
		{"revert bad commit", `{"type":"revert","toCommit":"HEAD~1",` + ok + `}`, "toCommit", true, "hexadecimal"},
		{"revert option commit", `{"type":"revert","toCommit":"--hard",` + ok + `}`, "toCommit", true, "hexadecimal"},
		{"revert zero steps", `{"type":"revert","steps":0,` + ok + `}`, "steps", true, "whole number"},
		{"revert fractional steps", `{"type":"revert","steps":1.5,` + ok + `}`, "steps", true, "whole number"},
		{"revert string steps", `{"type":"revert","steps":"2",` + ok + `}`, "steps", true, "whole number"},
		{"revert too many steps", `{"type":"revert","steps":1001,` + ok + `}`, "steps", true, "whole number"},
		{"revert without thread", `{"type":"revert","steps":1,"clientId":"acme","userId":"u1"}`, "threadId", true, "required"},
		{"steps in an init", `{"type":"init","steps":1,` + ok + `}`, "steps", true, "not allowed in an init"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.body), "msg-1")
			var ie *InvalidError
			if !errors.As(err, &ie) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode error = %v, want *InvalidError", err)
			}
			if ie.Field != tt.field {
				t.Errorf("field = %q, want %q (%v)", ie.Field, tt.field, err)
			}
			if ie.Addressable() != tt.addressable {
				t.Errorf("addressable = %v, want %v", ie.Addressable(), tt.addressable)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			if strings.Contains(err.Error(), "ghp_secret") {
				t.Errorf("error echoes the credential: %q", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"type":"init","clientId":"acme","userId":"u1","threadId":"t1"}`), "m1")
	f.Add([]byte(`{"type":"execute","clientId":"a","userId":"b","threadId":"c","instruction":"x","mode":"plan"}`), "m2")
	f.Add([]byte(`{"type":"init","clientId":"../x","userId":"u1","threadId":"t1","repoUrl":"git@h:p"}`), "")
	f.Add([]byte(`not json`), "m3")
	f.Add([]byte(`{"type":"cancel","clientId":"a","userId":"b","targetJobId":"j"}`), "m4")
	f.Add([]byte(`{"type":"revert","clientId":"a","userId":"b","threadId":"c","steps":2}`), "m5")
	f.Add([]byte(`{"type":"init","clientId":"a","userId":"b","threadId":"c","fromThreadId":"d"}`), "m6")
	f.Fuzz(func(t *testing.T, body []byte, messageID string) {
		job, err := Decode(body, messageID)
		if err != nil {
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("error is not *InvalidError: %v", err)
			}
			if ie.Addressable() && (!ident.ValidID(ie.Job.ClientID) || !ident.ValidID(ie.Job.UserID)) {
				t.Fatalf("addressable with invalid ids: %+v", ie.Job)
			}
			return
		}
		ids := []string{job.ClientID, job.UserID, job.ThreadID}
		if job.Type == TypeCancel && job.ThreadID == "" {
			ids = ids[:2]
		}
		if job.FromThreadID != "" {
			ids = append(ids, job.FromThreadID)
		}
		for _, id := range ids {
			if !ident.ValidID(id) || strings.ContainsAny(id, "/.\x00 ") {
				t.Fatalf("accepted unsafe id %q", id)
			}
		}
		if !ident.ValidJobID(job.JobID) || (job.Type == TypeCancel) != (job.TargetJobID != "") || job.TargetJobID != "" && !ident.ValidJobID(job.TargetJobID) {
			t.Fatalf("accepted job id %q, target %q", job.JobID, job.TargetJobID)
		}
		if !job.Type.Known() {
			t.Fatalf("accepted type %q", job.Type)
		}
		if job.Type == TypeRevert && (job.ToCommit == "") == (job.Steps == 0) || strings.HasPrefix(job.ToCommit, "-") {
			t.Fatalf("accepted revert target %q / %d", job.ToCommit, job.Steps)
		}
		if job.Type == TypeExecute && (job.Instruction == "" || len(job.Instruction) > MaxInstructionBytes) {
			t.Fatalf("accepted instruction of %d bytes", len(job.Instruction))
		}
	})
}

// TestSchemaIsJobsFields: the schema Decode reads from and Job's JSON tags
// name the same fields, so a field added to one and not the other fails here
// instead of being refused as unknown or dropped.
func TestSchemaIsJobsFields(t *testing.T) {
	var tags []string
	typ := reflect.TypeFor[Job]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		tags = append(tags, name)
	}
	var names []string
	for _, f := range schema {
		names = append(names, f.name)
	}
	slices.Sort(tags)
	slices.Sort(names)
	if !slices.Equal(tags, names) {
		t.Errorf("Job's JSON fields %v, the schema's %v", tags, names)
	}
}

// TestEveryFieldRoundTrips: a job with every field of its type set, encoded
// as upstream would, decodes to the same job.
func TestEveryFieldRoundTrips(t *testing.T) {
	for _, want := range []Job{
		{Type: TypeInit, JobID: "j1", ClientID: "c", UserID: "u", ThreadID: "t", RepoURL: "https://github.com/a/b.git", BaseBranch: "main"},
		{Type: TypeInit, JobID: "j1", ClientID: "c", UserID: "u", ThreadID: "t", FromThreadID: "p"},
		{Type: TypeExecute, JobID: "j2", ClientID: "c", UserID: "u", ThreadID: "t", Instruction: "x", Mode: ModePlan, MaxBudgetUSD: 1.5},
		{Type: TypeCancel, JobID: "j3", ClientID: "c", UserID: "u", TargetJobID: "j2"},
		{Type: TypeRevert, JobID: "j4", ClientID: "c", UserID: "u", ThreadID: "t", Steps: 2},
		{Type: TypeRevert, JobID: "j4", ClientID: "c", UserID: "u", ThreadID: "t", ToCommit: "abcd1234"},
	} {
		body, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(body, "m")
		if err != nil || got != want {
			t.Errorf("Decode(%s) = %+v, %v; want %+v", body, got, err, want)
		}
	}
}
