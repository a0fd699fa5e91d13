// Package pricing is what Claude models' tokens cost: the built-in list
// prices, and CLAUDE_PRICING laid over them. The configuration parses
// CLAUDE_PRICING into a Table once; the API gateway prices a job's usage
// with it to hold the job to its budget.
package pricing

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Price is what a model's tokens cost, in US dollars per million tokens.
type Price struct {
	Input      float64 `json:"input"`
	Output     float64 `json:"output"`
	CacheRead  float64 `json:"cacheRead"`
	CacheWrite float64 `json:"cacheWrite"`
}

// Table prices a model by the longest model-name prefix it knows. A model
// it does not know is priced at its highest price, so a budget is never
// spent unnoticed. The zero value knows nothing: use Builtin or Parse. A
// Table is never changed once made: it is safe for concurrent use.
type Table struct {
	prefixes []string // longest first, then by name
	prices   map[string]Price
	highest  Price
}

// builtinPrices are the list prices of the models known to this version
// (USD per million tokens, from Anthropic's pricing page): cache writes at
// the 5-minute rate. CLAUDE_PRICING overrides and extends them.
var builtinPrices = map[string]Price{
	"claude-opus-4-1":   {Input: 15, Output: 75, CacheWrite: 18.75, CacheRead: 1.5},
	"claude-opus-4-0":   {Input: 15, Output: 75, CacheWrite: 18.75, CacheRead: 1.5},
	"claude-opus-4-2":   {Input: 15, Output: 75, CacheWrite: 18.75, CacheRead: 1.5},
	"claude-opus-4":     {Input: 5, Output: 25, CacheWrite: 6.25, CacheRead: 0.5}, // 4.5 and later
	"claude-sonnet-4":   {Input: 3, Output: 15, CacheWrite: 3.75, CacheRead: 0.3},
	"claude-3-7-sonnet": {Input: 3, Output: 15, CacheWrite: 3.75, CacheRead: 0.3},
	"claude-3-5-sonnet": {Input: 3, Output: 15, CacheWrite: 3.75, CacheRead: 0.3},
	"claude-haiku-4":    {Input: 1, Output: 5, CacheWrite: 1.25, CacheRead: 0.1},
	"claude-3-5-haiku":  {Input: 0.8, Output: 4, CacheWrite: 1, CacheRead: 0.08},
	"claude-3-haiku":    {Input: 0.25, Output: 1.25, CacheWrite: 0.3, CacheRead: 0.03},
	"claude-3-opus":     {Input: 15, Output: 75, CacheWrite: 18.75, CacheRead: 1.5},
}

// Builtin returns the built-in prices.
func Builtin() *Table {
	t, _ := newTable(builtinPrices) // the built-ins are valid
	return t
}

// Parse reads CLAUDE_PRICING: a JSON object from model name (or prefix) to
// {"input", "output", "cacheRead", "cacheWrite"} in USD per million tokens,
// laid over the built-in prices. Empty means the built-ins.
func Parse(s string) (*Table, error) {
	prices := map[string]Price{}
	for k, v := range builtinPrices {
		prices[k] = v
	}
	if strings.TrimSpace(s) != "" {
		var extra map[string]Price
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&extra); err != nil {
			return nil, fmt.Errorf(`want {"model": {"input": 3, "output": 15, "cacheRead": 0.3, "cacheWrite": 3.75}} in USD per million tokens: %w`, err)
		}
		for k, v := range extra {
			prices[k] = v
		}
	}
	return newTable(prices)
}

func newTable(prices map[string]Price) (*Table, error) {
	t := &Table{prices: prices}
	for name, price := range prices {
		if name == "" || price.Input < 0 || price.Output < 0 || price.CacheRead < 0 || price.CacheWrite < 0 {
			return nil, fmt.Errorf("price of %q: want a model name and prices of 0 or more", name)
		}
		t.prefixes = append(t.prefixes, name)
		t.highest.Input = max(t.highest.Input, price.Input)
		t.highest.Output = max(t.highest.Output, price.Output)
		t.highest.CacheRead = max(t.highest.CacheRead, price.CacheRead)
		t.highest.CacheWrite = max(t.highest.CacheWrite, price.CacheWrite)
	}
	sort.Slice(t.prefixes, func(i, j int) bool {
		a, b := t.prefixes[i], t.prefixes[j]
		return len(a) > len(b) || (len(a) == len(b) && a < b)
	})
	return t, nil
}

// For returns model's price.
func (t *Table) For(model string) Price {
	for _, prefix := range t.prefixes {
		if strings.HasPrefix(model, prefix) {
			return t.prices[prefix]
		}
	}
	return t.highest
}
