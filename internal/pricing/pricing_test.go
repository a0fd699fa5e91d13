package pricing_test

import (
	"testing"

	"github.com/webordinary/claude-code-astro/internal/pricing"
)

func TestParse(t *testing.T) {
	table, err := pricing.Parse(`{"claude-sonnet-4-5": {"input": 1, "output": 2, "cacheRead": 3, "cacheWrite": 4}, "my-model": {"input": 100, "output": 200}}`)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		model string
		want  pricing.Price
	}{
		{"claude-sonnet-4-5-20250929", pricing.Price{Input: 1, Output: 2, CacheRead: 3, CacheWrite: 4}}, // the longer prefix wins
		{"claude-sonnet-4-0", pricing.Price{Input: 3, Output: 15, CacheWrite: 3.75, CacheRead: 0.3}},    // a built-in
		{"my-model-x", pricing.Price{Input: 100, Output: 200}},
		{"unknown", pricing.Price{Input: 100, Output: 200, CacheRead: 3, CacheWrite: 18.75}}, // the highest of each
	}
	for _, tt := range tests {
		if got := table.For(tt.model); got != tt.want {
			t.Errorf("For(%q) = %+v, want %+v", tt.model, got, tt.want)
		}
	}
	if got, want := pricing.Builtin().For("claude-opus-4-5"), (pricing.Price{Input: 5, Output: 25, CacheWrite: 6.25, CacheRead: 0.5}); got != want {
		t.Errorf("built-in claude-opus-4-5 = %+v, want %+v", got, want)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{`[]`, `{"m": {"input": "x"}}`, `{"m": {"inputs": 1}}`, `{"m": {"input": -1}}`, `{"": {"input": 1}}`} {
		if _, err := pricing.Parse(s); err == nil {
			t.Errorf("Parse(%s) accepted", s)
		}
	}
	if _, err := pricing.Parse("  "); err != nil {
		t.Errorf("empty: %v", err)
	}
}
