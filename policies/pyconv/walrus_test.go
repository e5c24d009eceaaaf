package pyconv

import "testing"

// := is found only as an operator, never inside a string, and its value runs to the end of
// its level.
func TestHideWalrus(t *testing.T) {
	tests := []struct{ src, want string }{
		{`a and b`, `a and b`},
		{`matches(x, r'[:=]')`, `matches(x, r'[:=]')`},
		{`(x := 1)`, `(__troy_walrus('x', 1))`},
		{`(x := 1) and x`, `(__troy_walrus('x', 1)) and x`},
		{`f(a, y := b + 1, c)`, `f(a, __troy_walrus('y', b + 1), c)`},
		{`[a := 1, b := [2, 3]]`, `[__troy_walrus('a', 1), __troy_walrus('b', [2, 3])]`},
		{`(a := (b := 1) + 1)`, `(__troy_walrus('a', (__troy_walrus('b', 1)) + 1))`},
		{`(s := 'it\'s := "x"')`, `(__troy_walrus('s', 'it\'s := "x"'))`},
		{`(s := """a := 'b'""")`, `(__troy_walrus('s', """a := 'b'"""))`},
		{`(s := rb':=')`, `(__troy_walrus('s', rb':='))`},
		{`(v := 1 if a else 2)`, `(__troy_walrus('v', 1 if a else 2))`},
		{`(f := lambda s: s)`, `(__troy_walrus('f', lambda s: s))`},
		{`any(y := x for x in z)`, `any(__troy_walrus('y', x )for x in z)`},
		{`x[i := 0]`, `x[__troy_walrus('i', 0)]`},
		{`{k := 1}`, `{__troy_walrus('k', 1)}`},
		{`(x := 1 # comment := 2`, `(__troy_walrus('x', 1 # comment := 2)`},
	}
	for _, tt := range tests {
		got, back, err := hideWalrus(tt.src)
		if err != nil || got != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.src, got, err, tt.want)
			continue
		}
		if back(1) != 1 {
			t.Errorf("%s: column 1 maps to %d", tt.src, back(1))
		}
	}
}
