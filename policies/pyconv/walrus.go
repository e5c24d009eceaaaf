package pyconv

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// walrusName stands for an assignment expression while the condition is parsed: the parser
// knows the Python of before assignment expressions, so NAME := VALUE is rewritten into a
// call walrusName('NAME', VALUE) first, and the converter reads that call back.
const walrusName = "__troy_walrus"

// token is one Python token, enough of one to find assignment expressions: names, strings,
// numbers and operators, with their byte offsets.
type token struct {
	kind       byte // 'n' name, 's' string, 'd' number, 'o' operator or bracket
	text       string
	start, end int
}

func tokenize(src string) []token {
	var out []token
	for i := 0; i < len(src); {
		ch := src[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\\':
			i++
		case ch == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case ch == '\'' || ch == '"':
			end := skipPyString(src, i)
			out = append(out, token{'s', src[i:end], i, end})
			i = end
		case isIdent(ch) && !(ch >= '0' && ch <= '9') || ch >= 0x80:
			j := i
			for j < len(src) && (isIdent(src[j]) || src[j] >= 0x80) {
				j++
			}
			if j < len(src) && (src[j] == '\'' || src[j] == '"') && isStringPrefix(src[i:j]) {
				end := skipPyString(src, j)
				out = append(out, token{'s', src[i:end], i, end})
				i = end
				continue
			}
			out = append(out, token{'n', src[i:j], i, j})
			i = j
		case ch >= '0' && ch <= '9' || ch == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9':
			j := i
			for j < len(src) && (isIdent(src[j]) || src[j] == '.' ||
				(src[j] == '+' || src[j] == '-') && (src[j-1] == 'e' || src[j-1] == 'E')) {
				j++
			}
			out = append(out, token{'d', src[i:j], i, j})
			i = j
		default:
			n := 1
			for _, op := range []string{"**=", "//=", ">>=", "<<=", "...", ":=", "==", "!=", "<=", ">=", "->", "**", "//", "<<", ">>", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "@="} {
				if strings.HasPrefix(src[i:], op) {
					n = len(op)
					break
				}
			}
			out = append(out, token{'o', src[i : i+n], i, i + n})
			i += n
		}
	}
	return out
}

func isStringPrefix(s string) bool {
	switch strings.ToLower(s) {
	case "r", "u", "b", "f", "br", "rb", "fr", "rf":
		return true
	}
	return false
}

// skipPyString returns the offset just past the string literal starting with the quote at i
// (the end of src when it is not closed: the parser reports that).
func skipPyString(src string, i int) int {
	q := src[i]
	triple := strings.HasPrefix(src[i:], strings.Repeat(string(q), 3))
	if triple {
		end := strings.Index(src[i+3:], strings.Repeat(string(q), 3))
		for end >= 0 && escaped(src, i+3+end) {
			next := strings.Index(src[i+3+end+1:], strings.Repeat(string(q), 3))
			if next < 0 {
				end = -1
				break
			}
			end += 1 + next
		}
		if end < 0 {
			return len(src)
		}
		return i + 3 + end + 3
	}
	for j := i + 1; j < len(src); j++ {
		switch src[j] {
		case '\\':
			j++
		case q:
			return j + 1
		case '\n':
			return j
		}
	}
	return len(src)
}

// escaped reports whether the byte at i follows an odd number of backslashes.
func escaped(src string, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && src[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

var pyKeywords = map[string]bool{
	"False": true, "None": true, "True": true, "and": true, "as": true, "assert": true, "async": true,
	"await": true, "break": true, "class": true, "continue": true, "def": true, "del": true, "elif": true,
	"else": true, "except": true, "finally": true, "for": true, "from": true, "global": true, "if": true,
	"import": true, "in": true, "is": true, "lambda": true, "nonlocal": true, "not": true, "or": true,
	"pass": true, "raise": true, "return": true, "try": true, "while": true, "with": true, "yield": true,
}

// hideWalrus rewrites every assignment expression NAME := VALUE of src into
// walrusName('NAME', VALUE). Python allows one only right after an opening bracket or a
// comma (in a call's arguments, a list, a set, a tuple in parentheses, a subscript), with a
// plain name on its left; VALUE runs to the comma, closing bracket or for of that level.
//
// back maps a 1-based column of the rewritten text to the column of src it came from, so
// that messages point at what the author wrote.
func hideWalrus(src string) (hidden string, back func(col int) int, err error) {
	same := func(col int) int { return col }
	if !strings.Contains(src, ":=") {
		return src, same, nil
	}
	toks := tokenize(src)
	type edit struct {
		at, to int // replace src[at:to] with text
		text   string
	}
	var edits []edit
	for i, t := range toks {
		if t.kind != 'o' || t.text != ":=" {
			continue
		}
		if i == 0 || toks[i-1].kind != 'n' || pyKeywords[toks[i-1].text] {
			return "", same, &Error{Msg: "invalid syntax: the left of := must be a name"}
		}
		name := toks[i-1]
		if i < 2 || toks[i-2].kind != 'o' || !strings.Contains("([{,", toks[i-2].text) {
			return "", same, &Error{Msg: fmt.Sprintf("invalid syntax: %s := ... must be in parentheses", name.text)}
		}
		end, depth, lambdas := len(src), 0, 0
	scan:
		for _, u := range toks[i+1:] {
			if u.kind == 'n' {
				switch u.text {
				case "lambda":
					if depth == 0 {
						lambdas++
					}
				case "for", "async":
					if depth == 0 {
						end = u.start
						break scan
					}
				}
				continue
			}
			if u.kind != 'o' {
				continue
			}
			switch u.text {
			case "(", "[", "{":
				depth++
			case ")", "]", "}":
				if depth == 0 {
					end = u.start
					break scan
				}
				depth--
			case ",", ":=":
				if depth == 0 {
					end = u.start
					break scan
				}
			case ":":
				if depth == 0 {
					if lambdas == 0 {
						end = u.start
						break scan
					}
					lambdas--
				}
			}
		}
		if strings.TrimSpace(src[t.end:end]) == "" {
			return "", same, &Error{Msg: fmt.Sprintf("invalid syntax: %s := needs a value", name.text)}
		}
		edits = append(edits, edit{name.start, t.end, walrusName + "('" + name.text + "',"}, edit{end, end, ")"})
	}
	// At one offset a closing bracket (an empty span) goes before a rewritten name.
	slices.SortFunc(edits, func(a, b edit) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.to, b.to)) })
	var b strings.Builder
	pos := 0
	// hidden[from:end] was written for src[at:to].
	type span struct{ from, end, at, to int }
	var spans []span
	for _, e := range edits {
		b.WriteString(src[pos:e.at])
		spans = append(spans, span{b.Len(), b.Len() + len(e.text), e.at, e.to})
		b.WriteString(e.text)
		pos = e.to
	}
	b.WriteString(src[pos:])
	back = func(col int) int {
		h, hEnd, srcTo := col-1, 0, 0
		for _, sp := range spans {
			switch {
			case h < sp.from:
				return h - hEnd + srcTo + 1
			case h < sp.end:
				return sp.at + 1
			}
			hEnd, srcTo = sp.end, sp.to
		}
		return h - hEnd + srcTo + 1
	}
	return b.String(), back, nil
}
