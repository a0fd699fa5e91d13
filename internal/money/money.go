// Package money rounds amounts of US dollars to what the worker prints,
// records and sends: six decimals (a millionth of a dollar), so a cost reads
// 0.00009, not 0.00008999999999999999.
package money

import "math"

// Decimals is how many decimals of a dollar the worker keeps.
const Decimals = 6

// Round returns usd rounded to Decimals decimals. Its shortest decimal
// form (what encoding/json and strconv print) has at most Decimals
// decimals.
func Round(usd float64) float64 {
	if math.IsNaN(usd) || math.IsInf(usd, 0) {
		return usd
	}
	return math.Round(usd*1e6) / 1e6
}
