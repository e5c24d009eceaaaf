package pyjson

import (
	"math"
	"math/big"
)

// Compare orders two numbers (int, float64 or *big.Int) exactly, as Python compares int
// and float: -1, 0 or 1. ok is false when either is not such a number, or is NaN, which
// is neither less than, equal to nor greater than anything.
func Compare(a, b any) (c int, ok bool) {
	a, b = bigPointer(a), bigPointer(b)
	switch x := a.(type) {
	case int:
		switch y := b.(type) {
		case int:
			return cmp3(x < y, x > y), true
		case float64:
			return compareIntFloat(x, y)
		case *big.Int:
			if y == nil {
				return 0, false
			}
			var bx big.Int
			return bx.SetInt64(int64(x)).Cmp(y), true
		}
	case float64:
		switch y := b.(type) {
		case float64:
			if math.IsNaN(x) || math.IsNaN(y) {
				return 0, false
			}
			return cmp3(x < y, x > y), true
		case int:
			c, ok := compareIntFloat(y, x)
			return -c, ok
		case *big.Int:
			if y == nil {
				return 0, false
			}
			c, ok := compareBigFloat(y, x)
			return -c, ok
		}
	case *big.Int:
		if x == nil {
			return 0, false
		}
		switch y := b.(type) {
		case *big.Int:
			if y == nil {
				return 0, false
			}
			return x.Cmp(y), true
		case int:
			var by big.Int
			return x.Cmp(by.SetInt64(int64(y))), true
		case float64:
			return compareBigFloat(x, y)
		}
	}
	return 0, false
}

// bigPointer takes a big.Int passed by value (expr dereferences pointers it passes to
// functions) as the *big.Int it was.
func bigPointer(v any) any {
	if b, ok := v.(big.Int); ok {
		return &b
	}
	return v
}

func cmp3(less, greater bool) int {
	switch {
	case less:
		return -1
	case greater:
		return 1
	}
	return 0
}

// compareIntFloat compares exactly: an int beyond 2^53 is not always a float64.
func compareIntFloat(i int, f float64) (int, bool) {
	if math.IsNaN(f) {
		return 0, false
	}
	if -1<<53 <= i && i <= 1<<53 || math.IsInf(f, 0) {
		g := float64(i)
		return cmp3(g < f, g > f), true
	}
	var bi big.Int
	return compareBigFloat(bi.SetInt64(int64(i)), f)
}

func compareBigFloat(b *big.Int, f float64) (int, bool) {
	switch {
	case math.IsNaN(f):
		return 0, false
	case math.IsInf(f, 1):
		return -1, true
	case math.IsInf(f, -1):
		return 1, true
	}
	var x, y big.Float
	x.SetInt(b) // exact: the precision grows to the integer's length
	y.SetFloat64(f)
	return x.Cmp(&y), true
}
