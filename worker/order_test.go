package worker

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

func TestInsertInOrder(t *testing.T) {
	msg := func(id, seq string) *delivery {
		m := types.Message{MessageId: &id, Attributes: map[string]string{}}
		if seq != "" {
			m.Attributes[string(types.MessageSystemAttributeNameSequenceNumber)] = seq
		}
		return &delivery{msg: m}
	}
	tests := []struct {
		name string
		in   []*delivery
		want []string
	}{
		{"fifo in order", []*delivery{msg("a", "1"), msg("b", "2"), msg("c", "3")}, []string{"a", "b", "c"}},
		{"fifo reordered", []*delivery{msg("c", "30"), msg("a", "9"), msg("b", "10")}, []string{"a", "b", "c"}},
		{"long numbers", []*delivery{msg("b", "18880000000000000002"), msg("a", "18880000000000000001")}, []string{"a", "b"}},
		{"standard keeps arrival", []*delivery{msg("x", ""), msg("y", ""), msg("z", "")}, []string{"x", "y", "z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q []*delivery
			for _, d := range tt.in {
				q = insertInOrder(q, d)
			}
			for i, d := range q {
				if got := *d.msg.MessageId; got != tt.want[i] {
					t.Fatalf("position %d = %s, want order %v", i, got, tt.want)
				}
			}
		})
	}
}
