// Package provenance finds in a text the values that decide where an action goes: e-mail
// addresses, URLs and their domains, IBANs, account and phone numbers, file paths, amounts,
// and codes or tokens. Values are normalized, so the same destination written two ways is
// one value: a policy can then ask whether a value the agent uses came from the user or
// from a tool's output. It reads text once, left to right, and stops at MaxBytes and
// MaxValues.
package provenance

import (
	"strings"
)

// Kind is what a value is.
type Kind uint8

// Kinds of values.
const (
	Email Kind = iota + 1
	URL
	Domain
	IBAN
	Account
	Phone
	Path
	Amount
	Code
)

var kindNames = [...]string{"", "email", "url", "domain", "iban", "account", "phone", "path", "amount", "code"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Bounds of one extraction.
const (
	// MaxBytes is how much of a text is read.
	MaxBytes = 64 << 10
	// MaxValues is how many values one text yields.
	MaxValues = 64
	// maxWord bounds a word looked at; longer words (data, not destinations) are skipped.
	maxWord = 2048
)

// Value is one value found, normalized.
type Value struct {
	Kind Kind
	Text string
	// Pos is the byte offset in the text of the word the value was read from, so that a
	// caller can look at what the text says around it.
	Pos int
}

// Extract appends to out the values found in text, in order of appearance, without
// repeats, and returns it.
func Extract(text string, out []Value) []Value {
	if len(text) > MaxBytes {
		text = text[:MaxBytes]
	}
	start := len(out)
	pos := 0 // where the word being classified starts
	add := func(k Kind, s string) bool {
		if s == "" {
			return len(out)-start < MaxValues
		}
		for _, v := range out[start:] {
			if v.Text == s {
				return true
			}
		}
		if len(out)-start >= MaxValues {
			return false
		}
		out = append(out, Value{k, s, pos})
		return len(out)-start < MaxValues
	}
	w := words{s: text}
	for {
		word, ok := w.next()
		if !ok {
			return out
		}
		pos = w.start
		if len(word) > maxWord {
			continue
		}
		if !w.classify(word, add) {
			return out
		}
	}
}

// words splits a text at spaces and at marks that quote or bracket a value.
type words struct {
	s     string
	i     int
	start int // of the last word next returned
}

// Classes of bytes for splitting words, looked up rather than compared.
const (
	cSpace = 1 << iota // a space
	cQuote             // ends any word, a URL's too: quotes and angle brackets
	cBreak             // ends a word that is not a URL: brackets, =, ;, |
)

var byteClass = func() (t [256]uint8) {
	for _, c := range " \t\n\r\f\v" {
		t[c] = cSpace | cQuote | cBreak
	}
	for _, c := range "\"'`<>" {
		t[c] = cQuote | cBreak
	}
	for _, c := range "()[]{}|;=" {
		t[c] = cBreak
	}
	return t
}()

func isSpace(c byte) bool { return byteClass[c]&cSpace != 0 }

// isBreak reports whether c ends a word: spaces, quotes, brackets and the marks that join
// a key to its value in text (=, ;, |).
func isBreak(c byte) bool { return byteClass[c]&cBreak != 0 }

// next returns the next word, with marks that end a sentence trimmed. A word that starts a
// URL runs to the next space or quote, so that its query string stays whole.
func (w *words) next() (string, bool) {
	for w.i < len(w.s) && (isBreak(w.s[w.i]) || w.s[w.i] == ',') {
		w.i++
	}
	if w.i >= len(w.s) {
		return "", false
	}
	start := w.i
	w.start = start
	url := false
	for w.i < len(w.s) {
		c := w.s[w.i]
		if c == ':' && !url && strings.HasPrefix(w.s[w.i:], "://") && schemeBefore(w.s[start:w.i]) {
			url = true
		}
		if cl := byteClass[c]; cl&cQuote != 0 || !url && cl != 0 {
			break
		}
		// A comma ends a word unless it separates digits (1,250.00).
		if c == ',' && !url && !(w.i > start && isDigit(w.s[w.i-1]) && w.i+1 < len(w.s) && isDigit(w.s[w.i+1])) {
			break
		}
		w.i++
	}
	return trimWord(w.s[start:w.i]), true
}

// peek returns the word after the current one without taking it.
func (w *words) peek() string {
	save := w.i
	word, _ := w.next()
	w.i = save
	return word
}

func trimWord(s string) string {
	for len(s) > 0 && trailing(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	for len(s) > 0 && (s[0] == ':' || s[0] == ',' || s[0] == '*') {
		s = s[1:]
	}
	return s
}

// trailing reports whether c ends a sentence or a clause rather than a value.
func trailing(c byte) bool {
	switch c {
	case '.', ',', ':', '!', '?', '*':
		return true
	}
	return false
}

func schemeBefore(s string) bool {
	if s == "" || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !isDigit(c) && c != '+' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isAlnum(c byte) bool  { return isDigit(c) || isLetter(c) }

// classify adds the values of one word (and of the words after it that continue the same
// value: the groups of a phone number or IBAN, an amount's currency). It returns false once
// no more values are wanted.
func (w *words) classify(word string, add func(Kind, string) bool) bool {
	if word == "" {
		return true
	}
	// Most words are words: letters only can be nothing but a currency code.
	letters := true
	for i := 0; i < len(word) && letters; i++ {
		letters = isLetter(word[i])
	}
	if letters {
		if (len(word) == 3 || len(word) == 4) && isUpperWord(word) {
			if a := w.amount(word); a != "" {
				return add(Amount, a)
			}
		}
		return true
	}
	if i := strings.Index(word, "://"); i > 0 {
		j := i
		for j > 0 && (isAlnum(word[j-1]) || strings.IndexByte("+.-", word[j-1]) >= 0) {
			j--
		}
		for j < i && !isLetter(word[j]) {
			j++ // a scheme starts with a letter
		}
		if j == i {
			return true
		}
		if u, host := normURL(word[j:]); u != "" {
			return add(URL, u) && add(Domain, host)
		}
		return true
	}
	if at := strings.IndexByte(word, '@'); at > 0 {
		if e := normEmail(word); e != "" {
			return add(Email, e)
		}
		return true
	}
	if isPath(word) || isFileName(word) {
		return add(Path, word)
	}
	if word[0] == '+' && len(word) > 1 && isDigit(word[1]) {
		if p := w.phone(word); p != "" {
			return add(Phone, p)
		}
		return true
	}
	if a := w.amount(word); a != "" {
		return add(Amount, a)
	}
	if ib := w.iban(word); ib != "" {
		return add(IBAN, ib)
	}
	if acct := w.account(word); acct != "" {
		return add(Account, acct)
	}
	if d := normDomain(word); d != "" {
		return add(Domain, d)
	}
	if isCode(word) {
		return add(Code, word)
	}
	return true
}

// normURL lowercases a URL's scheme and host and returns it with its host; "" when it has
// no host.
func normURL(s string) (string, string) {
	i := strings.Index(s, "://")
	scheme, rest := strings.ToLower(s[:i]), s[i+3:]
	end := len(rest)
	for k := 0; k < len(rest); k++ {
		if c := rest[k]; c == '/' || c == '?' || c == '#' {
			end = k
			break
		}
	}
	authority, path := rest[:end], rest[end:]
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		authority = authority[at+1:]
	}
	host, port := authority, ""
	if c := strings.LastIndexByte(host, ':'); c >= 0 && !strings.Contains(host[c:], "]") {
		host, port = host[:c], host[c:]
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if !validHost(host) || !validPort(port) {
		return "", ""
	}
	if path == "/" {
		path = ""
	}
	// Credentials before the host are dropped: the host decides where the request goes.
	return scheme + "://" + host + port + path, host
}

func validHost(h string) bool {
	if h == "" || !isAlnum(h[0]) && h[0] != '[' || h[len(h)-1] == '.' || strings.Contains(h, "..") {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !isAlnum(c) && c != '.' && c != '-' && c != '[' && c != ']' && c != ':' {
			return false
		}
	}
	return true
}

func validPort(p string) bool {
	if p == "" {
		return true
	}
	return len(p) > 1 && len(p) <= 6 && allDigits(p[1:])
}

// normEmail returns a lowercased address, or "" when word is not one.
func normEmail(word string) string {
	word = strings.TrimPrefix(strings.TrimPrefix(word, "mailto:"), "MAILTO:")
	at := strings.IndexByte(word, '@')
	if at <= 0 || at != strings.LastIndexByte(word, '@') {
		return ""
	}
	local, domain := word[:at], word[at+1:]
	for i := 0; i < len(local); i++ {
		c := local[i]
		if !isAlnum(c) && strings.IndexByte(".!#$%&*+-/=?^_{}~", c) < 0 {
			return ""
		}
	}
	if !isDomain(domain) {
		return ""
	}
	return strings.ToLower(word)
}

// isDomain reports whether s is labels of letters, digits and hyphens joined by dots, its
// last label letters only.
func isDomain(s string) bool {
	dots, last := 0, 0
	if s == "" || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if i == 0 || s[i-1] == '.' {
				return false
			}
			dots++
			last = i + 1
		case isAlnum(c) || c == '-' || c == '_':
		default:
			return false
		}
	}
	tld := s[last:]
	if dots == 0 || len(tld) < 2 || len(tld) > 24 {
		return false
	}
	for i := 0; i < len(tld); i++ {
		if !isLetter(tld[i]) {
			return false
		}
	}
	return true
}

// fileExts are endings that make a dotted word a file name rather than a host: the
// documents agents read, share and delete, and source files.
var fileExts = map[string]bool{
	"txt": true, "md": true, "py": true, "go": true, "js": true, "ts": true, "json": true, "yaml": true,
	"yml": true, "csv": true, "pdf": true, "png": true, "jpg": true, "jpeg": true, "gif": true,
	"html": true, "htm": true, "xml": true, "exe": true, "sh": true, "log": true, "zip": true,
	"gz": true, "tar": true, "doc": true, "docx": true, "xls": true, "xlsx": true, "ppt": true,
	"rs": true, "java": true, "rb": true, "php": true, "css": true, "ini": true, "cfg": true,
	"conf": true, "toml": true, "lock": true, "sql": true, "db": true, "bak": true, "tmp": true,
	"c": true, "h": true, "cpp": true, "hpp": true, "jsx": true, "tsx": true, "vue": true, "svg": true,
	"mp3": true, "mp4": true, "wav": true, "bin": true, "dll": true, "so": true, "env": true, "pem": true, "key": true,
	"tsv": true, "odt": true, "ods": true, "odp": true, "rtf": true, "pptx": true, "mov": true, "tgz": true,
	"7z": true, "rar": true, "sqlite": true, "eml": true, "ics": true, "vcf": true,
}

// normDomain returns a bare host name (example.com, www.example.org) lowercased, or "".
func normDomain(word string) string {
	if !isDomain(word) {
		return ""
	}
	lower := strings.ToLower(word)
	tld := lower[strings.LastIndexByte(lower, '.')+1:]
	if fileExts[tld] {
		return ""
	}
	// Two sentences run together (done.Next) are not a host.
	if dot := strings.IndexByte(word, '.'); strings.Count(word, ".") == 1 && word[dot+1] >= 'A' && word[dot+1] <= 'Z' {
		return ""
	}
	return lower
}

// isPath reports whether word is a file path: /a/b, ~/a, C:\a.
func isPath(word string) bool {
	var rest string
	switch {
	case len(word) >= 2 && word[0] == '/' && word[1] != '/':
		rest = word[1:]
	case strings.HasPrefix(word, "~/"):
		rest = word[2:]
	case len(word) >= 4 && isLetter(word[0]) && word[1] == ':' && word[2] == '\\':
		rest = word[3:]
	default:
		return false
	}
	if rest == "" {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !isAlnum(c) && strings.IndexByte("._-/\\~+@%", c) < 0 && c < 0x80 {
			return false
		}
	}
	return true
}

// phone reads a phone number that starts with word (+ and digits) and may go on in the
// next words (+1 555 123 4567); it returns its digits, 8 to 15 of them, or "".
func (w *words) phone(word string) string {
	var b [16]byte
	n := 0
	digits := func(s string) bool {
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case isDigit(c):
				if n == len(b) {
					return false
				}
				b[n] = c
				n++
			case c == '-' || c == '.' || c == '+' && i == 0:
			default:
				return false
			}
		}
		return true
	}
	if !digits(word) {
		return ""
	}
	for n < 15 {
		next := w.peek()
		if next == "" || !isDigit(next[0]) || len(next) > 9 || !digits(next) {
			break
		}
		w.next()
	}
	if n < 8 || n > 15 {
		return ""
	}
	return string(b[:n])
}

// currencies maps signs and codes to the code an amount is written with.
var currencies = map[string]string{
	"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR", "₿": "BTC",
	"USD": "USD", "EUR": "EUR", "GBP": "GBP", "JPY": "JPY", "CHF": "CHF", "CAD": "CAD", "AUD": "AUD",
	"INR": "INR", "CNY": "CNY", "SEK": "SEK", "NOK": "NOK", "DKK": "DKK", "PLN": "PLN", "BTC": "BTC",
	"ETH": "ETH", "USDT": "USDT", "USDC": "USDC", "MXN": "MXN", "BRL": "BRL", "HKD": "HKD", "SGD": "SGD",
}

// signs are the currency signs written before a number.
var signs = []string{"$", "€", "£", "¥", "₹", "₿"}

// amount reads an amount: a sign and a number ($1,250.00, 1250€), or a number and a code
// (1250 USD), or a code and a number (EUR 300). It returns "CODE number", the number
// without separators or trailing zero decimals.
func (w *words) amount(word string) string {
	if c, e := word[0], word[len(word)-1]; c == '$' || c >= 0xc2 || e == '$' || e >= 0x80 {
		if a := signed(word); a != "" {
			return a
		}
	}
	if code := currencies[word]; code != "" && len(word) >= 3 && isUpperWord(word) {
		if n := number(w.peek()); n != "" {
			w.next()
			return code + " " + n
		}
		return ""
	}
	if !isDigit(word[0]) {
		return ""
	}
	if n := number(word); n != "" {
		next := w.peek()
		if code := currencies[next]; code != "" && len(next) >= 3 {
			w.next()
			return code + " " + n
		}
	}
	return ""
}

// signed reads an amount written with a currency sign before or after its number.
func signed(word string) string {
	for _, s := range signs {
		if strings.HasPrefix(word, s) {
			if n := number(word[len(s):]); n != "" {
				return currencies[s] + " " + n
			}
		}
		if strings.HasSuffix(word, s) {
			if n := number(word[:len(word)-len(s)]); n != "" {
				return currencies[s] + " " + n
			}
		}
	}
	return ""
}

func isUpperWord(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// number normalizes 1,250.50 to 1250.5 and 300.00 to 300; "" when s is not a number.
func number(s string) string {
	if s == "" || len(s) > 32 || !isDigit(s[0]) {
		return ""
	}
	if allDigits(s) {
		return s
	}
	var b strings.Builder
	dot := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isDigit(c):
			b.WriteByte(c)
		case c == ',' && !dot && i+4 <= len(s) && allDigits(s[i+1:i+4]) && (i+4 == len(s) || !isDigit(s[i+4])):
		case c == '.' && !dot && i+1 < len(s):
			dot = true
			b.WriteByte(c)
		default:
			return ""
		}
	}
	n := b.String()
	if dot {
		n = strings.TrimRight(n, "0")
		n = strings.TrimSuffix(n, ".")
	}
	return n
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// iban reads an IBAN, whole (DE89370400440532013000) or in groups of four; it returns it
// uppercased without spaces when its check digits are right, else "".
func (w *words) iban(word string) string {
	if len(word) < 4 || len(word) > 34 || !isLetter(word[0]) || !isLetter(word[1]) || !isDigit(word[2]) || !isDigit(word[3]) {
		return ""
	}
	for i := 0; i < len(word); i++ {
		if !isAlnum(word[i]) {
			return ""
		}
	}
	s := strings.ToUpper(word)
	if len(s) >= 15 && ibanValid(s) {
		return s
	}
	if len(word) != 4 {
		return ""
	}
	// Groups: take the words that follow while they are groups of up to four, and keep
	// the longest run that checks.
	save := w.i
	best, bestAt := "", w.i
	for len(s) < 34 {
		next := w.peek()
		if next == "" || len(next) > 4 || len(s)+len(next) > 34 {
			break
		}
		ok := true
		for i := 0; i < len(next); i++ {
			ok = ok && isAlnum(next[i])
		}
		if !ok {
			break
		}
		w.next()
		s += strings.ToUpper(next)
		if len(s) >= 15 && ibanValid(s) {
			best, bestAt = s, w.i
		}
		if len(next) < 4 {
			break
		}
	}
	if best == "" {
		w.i = save
		return ""
	}
	w.i = bestAt
	return best
}

// ibanValid checks an IBAN's mod-97 check digits.
func ibanValid(s string) bool {
	r := 0
	feed := func(c byte) {
		switch {
		case isDigit(c):
			r = (r*10 + int(c-'0')) % 97
		default:
			v := int(c-'A') + 10
			r = (r*100 + v) % 97
		}
	}
	for i := 4; i < len(s); i++ {
		feed(s[i])
	}
	for i := 0; i < 4; i++ {
		feed(s[i])
	}
	return r == 1
}

// account reads an account number: 8 to 20 digits, whole, joined by hyphens in groups of
// three or more (not a date), or in groups of four across words (1234 5678 9012 3456).
func (w *words) account(word string) string {
	var b [20]byte
	n := 0
	group := 0
	for i := 0; i <= len(word); i++ {
		if i == len(word) || word[i] == '-' {
			if group < 3 {
				return ""
			}
			group = 0
			continue
		}
		if !isDigit(word[i]) || n == len(b) {
			return ""
		}
		b[n] = word[i]
		n++
		group++
	}
	if len(word) == 4 && n == 4 {
		for n+4 <= len(b) {
			next := w.peek()
			if len(next) != 4 || !allDigits(next) {
				break
			}
			w.next()
			n += copy(b[n:], next)
		}
	}
	if n < 8 {
		return ""
	}
	return string(b[:n])
}

// isCode reports whether word is a code, token or password: 6 to 64 letters and digits,
// both, and maybe the marks passwords carry.
func isCode(word string) bool {
	if len(word) < 6 || len(word) > 64 {
		return false
	}
	letters, digits := false, false
	for i := 0; i < len(word); i++ {
		c := word[i]
		switch {
		case isDigit(c):
			digits = true
		case isLetter(c):
			letters = true
		case strings.IndexByte("#!$%&*?_-+^~", c) >= 0:
		default:
			return false
		}
	}
	return letters && digits
}

// isFileName reports whether word is a file's bare name: a name, a dot and a document's
// extension (board-minutes.docx, budget_v2.xlsx).
func isFileName(word string) bool {
	dot := strings.LastIndexByte(word, '.')
	if dot <= 0 || dot == len(word)-1 || len(word) > 255 {
		return false
	}
	if !fileExts[strings.ToLower(word[dot+1:])] {
		return false
	}
	for i := 0; i < dot; i++ {
		c := word[i]
		if !isAlnum(c) && strings.IndexByte("._-+~", c) < 0 && c < 0x80 {
			return false
		}
	}
	return true
}
