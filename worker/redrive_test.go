package worker

import "testing"

func TestMaxReceiveCount(t *testing.T) {
	tests := []struct {
		policy string
		want   int
	}{
		{"", 0},
		{`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":5}`, 5},
		{`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":"3"}`, 3},
		{`{"deadLetterTargetArn":"arn"}`, 0},
		{`not json`, 0},
	}
	for _, tt := range tests {
		if got := maxReceiveCount(tt.policy); got != tt.want {
			t.Errorf("maxReceiveCount(%q) = %d, want %d", tt.policy, got, tt.want)
		}
	}
}
