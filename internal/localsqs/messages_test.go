package localsqs

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestParseSent: what the group cache and the journal learn from a send.
func TestParseSent(t *testing.T) {
	const q = `"QueueUrl":"http://q/jobs.fifo"`
	tests := []struct {
		name      string
		req, resp string
		want      []sentMessage
	}{
		{
			name: "standard message",
			req:  `{` + q + `,"MessageBody":"a"}`,
			resp: `{"MessageId":"m1"}`,
			want: []sentMessage{{id: "m1", request: json.RawMessage(`{` + q + `,"MessageBody":"a"}`)}},
		},
		{
			name: "FIFO message",
			req:  `{` + q + `,"MessageBody":"a","MessageGroupId":"g"}`,
			resp: `{"MessageId":"m1","SequenceNumber":"1"}`,
			want: []sentMessage{{id: "m1", group: "g", request: json.RawMessage(`{` + q + `,"MessageBody":"a","MessageGroupId":"g"}`)}},
		},
		{
			name: "batch, one entry failed",
			req: `{` + q + `,"Entries":[{"Id":"e1","MessageBody":"a","MessageGroupId":"g1"},` +
				`{"Id":"e2","MessageBody":"b","MessageGroupId":"g2"},{"Id":"e3","MessageBody":"c"}]}`,
			resp: `{"Successful":[{"Id":"e3","MessageId":"m3"},{"Id":"e1","MessageId":"m1"}],"Failed":[{"Id":"e2"}]}`,
			want: []sentMessage{
				{id: "m1", group: "g1", request: json.RawMessage(`{"MessageBody":"a","MessageGroupId":"g1",` + q + `}`)},
				{id: "m3", request: json.RawMessage(`{"MessageBody":"c",` + q + `}`)},
			},
		},
		{name: "request not JSON", req: `MessageBody=a`, resp: `{"MessageId":"m1"}`},
		{name: "answer not JSON", req: `{` + q + `}`, resp: `<xml/>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseSent([]byte(tt.req), []byte(tt.resp))
			if len(got) != len(tt.want) {
				t.Fatalf("parseSent = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i].id != tt.want[i].id || got[i].group != tt.want[i].group || !sameJSON(t, got[i].request, tt.want[i].request) {
					t.Errorf("message %d = {%s %s %s}, want {%s %s %s}", i, got[i].id, got[i].group, got[i].request,
						tt.want[i].id, tt.want[i].group, tt.want[i].request)
				}
			}
		})
	}
}

func TestDeletedHandles(t *testing.T) {
	tests := []struct {
		req  string
		want []string
	}{
		{`{"QueueUrl":"q","ReceiptHandle":"h1"}`, []string{"h1"}},
		{`{"QueueUrl":"q","Entries":[{"Id":"a","ReceiptHandle":"h1"},{"Id":"b","ReceiptHandle":"h2"}]}`, []string{"", "h1", "h2"}},
		{`not json`, nil},
	}
	for _, tt := range tests {
		if got := deletedHandles([]byte(tt.req)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("deletedHandles(%s) = %q, want %q", tt.req, got, tt.want)
		}
	}
}

// sameJSON reports whether a and b hold the same JSON value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}
