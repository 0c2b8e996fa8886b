package money

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Micros{
		"0": 0, "500": 500 * Scale, "1,000": 1000 * Scale, "1,443.96": 1443_960000, "0.25": 250000, ".5": 500000,
		"0.000001": 1, "9,000,000,000": Max * Scale, "007": 7 * Scale, "12,345,678.5": 12345678_500000,
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, why := range map[string]string{
		"1e3": "not a decimal", "1E3": "not a decimal", "0x10": "not a decimal", "-5": "not a decimal", "+5": "not a decimal",
		"NaN": "not a decimal", "inf": "not a decimal", "": "not a decimal", ".": "not a decimal", "1.2.3": "not a decimal",
		"1,0,0,0": "thousands separator", "1,00": "thousands separator", ",100": "thousands separator", "1000,000": "thousands separator",
		"1.000,5": "not a decimal", "0.0000001": "6 decimal places", "9,000,000,001": "more than 9,000,000,000",
		"99999999999999999999": "more than 9,000,000,000",
	} {
		if got, err := Parse(in); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("Parse(%q) = %d, %v; want an error saying %q", in, got, err, why)
		}
	}
}

// Sums are exact to a millionth: the float64 of a sum is the one of the
// decimal, never 0.30000000000000004.
func TestSumsAreExact(t *testing.T) {
	t.Parallel()
	if got := Sum(0.1, 0.1, 0.1); got != 0.3 {
		t.Errorf("0.1+0.1+0.1 = %v", got)
	}
	if got := Add(0.1, 0.2); got != 0.3 {
		t.Errorf("0.1+0.2 = %v", got)
	}
	total := 0.0
	for range 1000 {
		total = Add(total, 2.4066)
	}
	if total != 2406.6 {
		t.Errorf("1000 x 2.4066 = %v", total)
	}
	for m, s := range map[Micros]string{0: "0", 1: "0.000001", 1443_960000: "1443.96", 36000 * Scale: "36000", -250000: "-0.25"} {
		if m.String() != s || FromFloat(m.Float()) != m {
			t.Errorf("%d: %q, round trip %d", m, m.String(), FromFloat(m.Float()))
		}
	}
}
