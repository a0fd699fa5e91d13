package bench

import (
	"testing"
	"time"
)

func TestTableRows(t *testing.T) {
	specs := []Spec{
		{ID: "1", Name: "checked and met", Goal: "< 1 ms"},
		{ID: "2", Name: "checked and missed", Goal: "< 1 ms"},
		{ID: "3", Name: "reported only"},
		{ID: "4", Name: "ran without a result", Goal: "< 5 s"},
		{ID: "5", Name: "never ran", Goal: "< 5 s"},
	}
	tests := []struct {
		name   string
		fill   func(*Table)
		want   []Row
		failed bool
	}{
		{
			name: "nothing ran",
			fill: func(*Table) {},
		},
		{
			name: "all kinds, printed in declaration order",
			fill: func(tb *Table) {
				tb.Tried("1", "2", "3", "4")
				tb.Info("3", "42 ms")
				tb.Check("2", "3 ms", false)
				tb.Check("1", "0.5 ms", true)
			},
			want: []Row{
				{Spec: specs[0], Result: "0.5 ms", Verdict: Pass},
				{Spec: specs[1], Result: "3 ms", Verdict: Fail},
				{Spec: specs[2], Result: "42 ms", Verdict: Info},
				{Spec: specs[3], Result: "not measured (see the log above)", Verdict: Error},
			},
			failed: true,
		},
		{
			name: "all met",
			fill: func(tb *Table) {
				tb.Tried("1", "3")
				tb.Check("1", "0.5 ms", true)
				tb.Info("3", "42 ms")
			},
			want: []Row{
				{Spec: specs[0], Result: "0.5 ms", Verdict: Pass},
				{Spec: specs[2], Result: "42 ms", Verdict: Info},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := NewTable(specs...)
			tt.fill(tb)
			got := tb.Rows()
			if len(got) != len(tt.want) {
				t.Fatalf("rows = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("row %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
			if tb.Failed() != tt.failed {
				t.Errorf("Failed() = %v, want %v", tb.Failed(), tt.failed)
			}
		})
	}
}

func TestTableMarkdown(t *testing.T) {
	tb := NewTable(Spec{ID: "1a", Name: "a | b", Goal: "< 2 GiB"}, Spec{ID: "2", Name: "c"})
	tb.Check("1a", "1.0 GiB", true)
	tb.Info("2", "7 s")
	want := "| # | measurement | result | goal | verdict |\n" +
		"|---|---|---|---|---|\n" +
		"| 1a | a \\| b | 1.0 GiB | < 2 GiB | PASS |\n" +
		"| 2 | c | 7 s | report only | info |\n" +
		"\n2 rows: 1 pass, 0 fail, 1 report only, 0 not measured.\n"
	if got := tb.Markdown(); got != want {
		t.Errorf("Markdown() =\n%s\nwant\n%s", got, want)
	}
}

func TestUndeclaredRowPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Info on an undeclared row did not panic")
		}
	}()
	NewTable().Info("9", "x")
}

func TestFormats(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{Ms(1234 * time.Microsecond), "1.23 ms"},
		{Ms(42300 * time.Microsecond), "42.3 ms"},
		{Ms(420 * time.Millisecond), "420 ms"},
		{Ms(42 * time.Second), "42.0 s"},
		{MiB(30 << 20), "30.0 MiB"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestQuantile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"odd median", ms(5, 1, 3), 0.5, 3 * time.Millisecond},
		{"even median is the lower middle", ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
		{"p95 of 20", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20), 0.95, 19 * time.Millisecond},
		{"max", ms(1, 9, 5), 1, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Quantile(tt.in, tt.q); got != tt.want {
				t.Errorf("Quantile(%v, %v) = %v, want %v", tt.in, tt.q, got, tt.want)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		var ds []time.Duration
		for _, v := range vs {
			ds = append(ds, time.Duration(v)*time.Millisecond)
		}
		return ds
	}
	tests := []struct {
		name     string
		ds, base []time.Duration
		want     float64
		text     string
	}{
		{"twice the baseline", ms(200, 180, 220), ms(100, 90, 110), 2, "2.00x (200 ms, max 220 ms; baseline 100 ms)"},
		{"faster than the baseline", ms(50), ms(100), 0.5, "0.50x (50.0 ms, max 50.0 ms; baseline 100 ms)"},
		{"no baseline", ms(50), nil, 0, "0.00x (50.0 ms, max 50.0 ms; baseline 0.00 ms)"},
		{"no result", nil, ms(100), 0, "0.00x (0.00 ms, max 0.00 ms; baseline 100 ms)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Ratio(tc.ds, tc.base); got != tc.want {
				t.Errorf("Ratio = %v, want %v", got, tc.want)
			}
			if got := VsBaseline(tc.ds, tc.base); got != tc.text {
				t.Errorf("VsBaseline = %q, want %q", got, tc.text)
			}
		})
	}
}
