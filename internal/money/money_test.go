package money_test

import (
	"encoding/json"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/money"
)

func TestRoundPrintsAtMostSixDecimals(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0.00008999999999999999, "0.00009"},
		{0.1 + 0.2, "0.3"},
		{0.0123454, "0.012345"},
		{0.0123456, "0.012346"},
		{1.5, "1.5"},
		{0, "0"},
		{0.0000004, "0"},
		{123.4567891, "123.456789"},
	}
	for _, tt := range tests {
		b, err := json.Marshal(money.Round(tt.in))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.want {
			t.Errorf("Round(%v) prints %s, want %s", tt.in, b, tt.want)
		}
	}
}
