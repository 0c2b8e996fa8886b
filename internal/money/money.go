// Package money does reelq's arithmetic on amounts (US dollars, credits)
// exactly: in integer millionths of a unit. Amounts travel as JSON numbers
// and float64 fields (the contract of cost, budgets and spend), but every
// amount a person writes is parsed as a decimal, never through float64,
// and every sum is taken in micros, so 0.1 + 0.2 is 0.3 and a budget of
// $0.30 fits three jobs of $0.10.
package money

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Micros is an amount in millionths of a unit.
type Micros int64

// Scale is the number of micros in a unit.
const Scale = 1_000_000

// Max is the largest amount Parse accepts, in units: every amount up to it
// converts between micros and float64 without loss (2^53 micros is about
// 9.007e9 units).
const Max = 9_000_000_000

var (
	errNotDecimal = errors.New("not a decimal amount")
	errGrouping   = errors.New("a thousands separator ',' goes between groups of three digits (1,000 or 1,000,000)")
	errPrecision  = errors.New("more than 6 decimal places: amounts are exact to a millionth")
	errTooLarge   = errors.New("more than 9,000,000,000")
)

// Parse reads a non-negative decimal amount as a person writes it: digits,
// optionally grouped by commas in threes ("1,000"), optionally a point and
// up to six decimals ("0.25", ".5"). No sign, exponent ("1e3"), hex, NaN
// or infinity: each is refused with what is wrong.
func Parse(s string) (Micros, error) {
	whole, frac, point := strings.Cut(s, ".")
	if strings.Contains(whole, ",") {
		groups := strings.Split(whole, ",")
		if len(groups[0]) < 1 || len(groups[0]) > 3 {
			return 0, errGrouping
		}
		for _, g := range groups[1:] {
			if len(g) != 3 {
				return 0, errGrouping
			}
		}
		whole = strings.Join(groups, "")
	}
	if whole == "" && frac == "" || !digits(whole) || !digits(frac) || point && strings.Contains(frac, ",") {
		return 0, errNotDecimal
	}
	if len(frac) > 6 {
		return 0, errPrecision
	}
	whole = strings.TrimLeft(whole, "0")
	if len(whole) > 10 {
		return 0, errTooLarge
	}
	var units int64
	if whole != "" {
		units, _ = strconv.ParseInt(whole, 10, 64)
	}
	if units > Max {
		return 0, errTooLarge
	}
	f, _ := strconv.ParseInt((frac + "000000")[:6], 10, 64)
	return Micros(units*Scale + f), nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// UnmarshalText reads an amount as Parse does, so a setting such as
// SEGMIND_PRICE_PER_RUN=2.4066 is taken exactly, never through float64.
func (m *Micros) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// FromFloat is the amount f (a JSON number, a provider's estimate)
// rounded to the nearest millionth.
func FromFloat(f float64) Micros {
	if math.IsNaN(f) {
		return 0
	}
	return Micros(math.Round(f * Scale))
}

// Float is m as the float64 nearest to its decimal value: what JSON
// fields carry.
func (m Micros) Float() float64 { return float64(m) / Scale }

// String renders m as a decimal without trailing zeros: "1443.96", "36000".
func (m Micros) String() string {
	sign := ""
	if m < 0 {
		sign, m = "-", -m
	}
	s := sign + strconv.FormatInt(int64(m/Scale), 10)
	if f := int64(m % Scale); f != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%06d", f), "0")
	}
	return s
}

// Add returns a + b, summed in micros.
func Add(a, b float64) float64 { return (FromFloat(a) + FromFloat(b)).Float() }

// Sum returns the sum of vs, taken in micros.
func Sum(vs ...float64) float64 {
	var m Micros
	for _, v := range vs {
		m += FromFloat(v)
	}
	return m.Float()
}
