package explainer

import (
	"regexp"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// Personal data that no secret scanner looks for: e-mail addresses, phone numbers,
// national identity numbers, card numbers and IBANs. Numbers are confirmed by their
// checksums or, for phones, by libphonenumber's numbering plans, so that order numbers,
// dates and amounts stay.
var (
	emailRe = lazyRegexp(`\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b`)
	ssnRe   = lazyRegexp(`\b\d{3}-\d{2}-\d{4}\b|\b\d{3} \d{2} \d{4}\b`)
	nineRe  = lazyRegexp(`\b\d{9}\b|\b\d{3}[ -]\d{3}[ -]\d{3}\b`)
	ninoRe  = lazyRegexp(`\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b`)
	// India: Aadhaar (Verhoeff checksum) and PAN.
	aadhaarRe = lazyRegexp(`\b[2-9]\d{3}[ -]?\d{4}[ -]?\d{4}\b`)
	panRe     = lazyRegexp(`\b[A-Z]{3}[ABCFGHLJPT][A-Z]\d{4}[A-Z]\b`)
	// Brazil: CPF.
	cpfRe = lazyRegexp(`\b\d{3}\.\d{3}\.\d{3}-\d{2}\b|\b\d{11}\b`)
	// Spain: DNI and NIE.
	dniRe = lazyRegexp(`(?i)\b[XYZ]?-?\d{7,8}-?[A-HJ-NP-TV-Z]\b`)
	// Italy: codice fiscale; Mexico: CURP.
	fiscaleRe = lazyRegexp(`(?i)\b[A-Z]{6}\d{2}[A-EHLMPR-T]\d{2}[A-Z]\d{3}[A-Z]\b`)
	curpRe    = lazyRegexp(`\b[A-Z][AEIOUX][A-Z]{2}\d{6}[HM][A-Z]{5}[A-Z0-9]\d\b`)
	// China: resident identity card (ISO 7064 checksum).
	chinaIDRe = lazyRegexp(`\b[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]\b`)
	// France: NIR (social security number, key 97 − n mod 97).
	nirRe = lazyRegexp(`\b[12] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[ABab]) ?\d{3} ?\d{3} ?\d{2}\b`)
	// A number after the name of an identity document.
	idAfterNameRe = lazyRegexp(`(?i)\b(?:passport|national id|identity card|id card|tax id|taxpayer id|tin|driver'?s? licen[cs]e|licen[cs]e|personalausweis|ausweis|steuer-?id|bsn|burgerservicenummer|cpf|dni|nie|nif|aadhaar|aadhar|pan|sin|social insurance|nino|insee|curp|rfc|ssn|social security)(?: number| no\.?| num| #)?\s*[:#=]?\s*(?-i:([A-Z0-9][A-Z0-9-]{4,18}[A-Z0-9]|\d{3} \d{2} \d{4}|\d{3} \d{3} \d{3}))\b`)
	// A phone number: digits with the separators people write between them.
	phoneRe = lazyRegexp(`\+?\(?\d[\d \-.()]{5,24}\d`)
)

// idDocumentWords are the keywords of idAfterNameRe.
var idDocumentWords = []string{"passport", "national id", "identity card", "id card", "tax", "tin", "licen",
	"ausweis", "steuer", "bsn", "burgerservice", "cpf", "dni", "nie", "nif", "aadha", "pan", "sin", "social",
	"nino", "insee", "curp", "rfc", "ssn"}

// pii runs the detectors of personal data on the text.
func (rs *rules) pii(sc *scan) {
	s := sc.s
	if strings.IndexByte(s, '@') >= 0 {
		for _, m := range emailRe().FindAllStringIndex(s, -1) {
			sc.add(m[0], m[1], "EMAIL")
		}
	}
	digits := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			digits++
		}
	}
	if digits >= 4 {
		findIBANs(sc)
		for _, m := range ninoRe().FindAllStringIndex(s, -1) {
			if p := strings.ToUpper(s[m[0] : m[0]+2]); !badNINOPrefix[p] {
				sc.add(m[0], m[1], "NATIONAL_ID")
			}
		}
		matchAll(sc, panRe(), "NATIONAL_ID", nil)
	}
	if digits < 7 {
		return
	}
	if sc.has(idDocumentWords...) {
		matchAll(sc, idAfterNameRe(), "NATIONAL_ID", func(v string) bool { return countDigits(v) >= 4 })
	}
	findCards(sc)
	matchAll(sc, ssnRe(), "SSN", validSSN)
	for _, m := range nineRe().FindAllStringIndex(s, -1) {
		v := s[m[0]:m[1]]
		ctx := wordsBefore(sc.lower, m[0], 30)
		switch {
		case containsAny(ctx, " ssn ", " social security ", " ss "):
			if validSSN(v) {
				sc.add(m[0], m[1], "SSN")
			}
		case containsAny(ctx, " bsn ", " burgerservicenummer ") && elevenProof(v):
			sc.add(m[0], m[1], "NATIONAL_ID")
		case containsAny(ctx, " sin ", " social insurance ", " nas ") && luhn(v):
			sc.add(m[0], m[1], "NATIONAL_ID")
		}
	}
	for _, m := range aadhaarRe().FindAllStringIndex(s, -1) {
		v := s[m[0]:m[1]]
		if verhoeff(digitsOf(v)) && (strings.ContainsAny(v, " -") && phoneContext(sc.lower, m[0]) >= 0 || containsAny(wordsBefore(sc.lower, m[0], 30), " aadhaar ", " aadhar ", " uid ")) {
			sc.add(m[0], m[1], "NATIONAL_ID")
		}
	}
	for _, m := range cpfRe().FindAllStringIndex(s, -1) {
		v := s[m[0]:m[1]]
		if cpf(digitsOf(v)) && (strings.Contains(v, ".") || containsAny(wordsBefore(sc.lower, m[0], 30), " cpf ")) {
			sc.add(m[0], m[1], "NATIONAL_ID")
		}
	}
	matchAll(sc, dniRe(), "NATIONAL_ID", dni)
	matchAll(sc, fiscaleRe(), "NATIONAL_ID", nil)
	matchAll(sc, curpRe(), "NATIONAL_ID", nil)
	matchAll(sc, chinaIDRe(), "NATIONAL_ID", chinaID)
	matchAll(sc, nirRe(), "NATIONAL_ID", nir)
	rs.phones.find(sc)
}

// findCards finds card numbers: in each run of digit groups (digits joined by single
// spaces or dashes), the longest runs of whole groups that pass the card check, so that
// a card beside other numbers ("order 12 4111 1111 1111 1111") is found too.
func findCards(sc *scan) {
	s := sc.s
	for i := 0; i < len(s); {
		if !isDigit(s[i]) || (i > 0 && isAlnum(s[i-1])) {
			i++
			continue
		}
		var groups [][2]int
		j := i
		for {
			k := j
			for k < len(s) && isDigit(s[k]) {
				k++
			}
			groups = append(groups, [2]int{j, k})
			if k+1 < len(s) && (s[k] == ' ' || s[k] == '-') && isDigit(s[k+1]) {
				j = k + 1
				continue
			}
			j = k
			break
		}
		if j < len(s) && isLetter(s[j]) {
			groups = groups[:len(groups)-1] // the last group starts a word (0A)
		}
		cardWindows(sc, groups)
		i = j
	}
}

// cardWindows tries, from each group on, the runs of groups holding 13 to 19 digits,
// the longest first: at most 19 runs a group, however long the text.
func cardWindows(sc *scan, groups [][2]int) {
	for a := 0; a < len(groups); {
		last, n := -1, 0
		for b := a; b < len(groups) && n <= 19; b++ {
			if n += groups[b][1] - groups[b][0]; n >= 13 && n <= 19 && card(sc.s[groups[a][0]:groups[b][1]]) {
				last = b
			}
		}
		if last < 0 {
			a++
			continue
		}
		sc.add(groups[a][0], groups[last][1], "CARD")
		a = last + 1
	}
}

// matchAll adds every match of re that check (when set) accepts.
func matchAll(sc *scan, re *regexp.Regexp, kind string, check func(string) bool) {
	for _, m := range re.FindAllStringSubmatchIndex(sc.s, -1) {
		start, end := m[0], m[1]
		if len(m) > 2 && m[2] >= 0 {
			start, end = m[2], m[3]
		}
		if check == nil || check(sc.s[start:end]) {
			sc.add(start, end, kind)
		}
	}
}

// before returns up to n bytes of lower before at, on the same line.
func before(lower string, at, n int) string {
	b := lower[max(0, at-n):at]
	if i := strings.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return b
}

// wordsBefore returns the words of up to n bytes before at on its line, each between
// spaces (" social security number "), for tests of whole words.
func wordsBefore(lower string, at, n int) string {
	b := []byte(" " + before(lower, at, n) + " ")
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = ' '
		}
	}
	return string(b)
}

func containsAny(s string, words ...string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

func countDigits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			n++
		}
	}
	return n
}

func digitsOf(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			b = append(b, s[i])
		}
	}
	return string(b)
}

var badNINOPrefix = map[string]bool{"BG": true, "GB": true, "NK": true, "KN": true, "TN": true, "NT": true, "ZZ": true}

// card accepts numbers of 13 to 19 digits that pass Luhn's check and start as the card
// networks' numbers do (2 to 6).
func card(s string) bool {
	d := digitsOf(s)
	return len(d) >= 13 && len(d) <= 19 && d[0] >= '2' && d[0] <= '6' && luhn(d)
}

func luhn(s string) bool {
	sum, n, double := 0, 0, false
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c < '0' || c > '9' {
			continue
		}
		d := int(c - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
		n++
	}
	return n >= 9 && sum%10 == 0 && sum > 0
}

// validSSN accepts the numbers the US Social Security Administration issues: no area
// 000, 666 or 900–999, no group 00, no serial 0000.
func validSSN(s string) bool {
	d := digitsOf(s)
	if len(d) != 9 {
		return false
	}
	area, group, serial := d[0:3], d[3:5], d[5:9]
	return area != "000" && area != "666" && area[0] != '9' && group != "00" && serial != "0000"
}

// elevenProof is the Dutch BSN's check.
func elevenProof(s string) bool {
	d := digitsOf(s)
	if len(d) != 9 {
		return false
	}
	sum := 0
	for i := 0; i < 8; i++ {
		sum += int(d[i]-'0') * (9 - i)
	}
	sum -= int(d[8] - '0')
	return sum%11 == 0 && sum != 0
}

var verhoeffD = [10][10]int{
	{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 0, 6, 7, 8, 9, 5}, {2, 3, 4, 0, 1, 7, 8, 9, 5, 6},
	{3, 4, 0, 1, 2, 8, 9, 5, 6, 7}, {4, 0, 1, 2, 3, 9, 5, 6, 7, 8}, {5, 9, 8, 7, 6, 0, 4, 3, 2, 1},
	{6, 5, 9, 8, 7, 1, 0, 4, 3, 2}, {7, 6, 5, 9, 8, 2, 1, 0, 4, 3}, {8, 7, 6, 5, 9, 3, 2, 1, 0, 4},
	{9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
}

var verhoeffP = [8][10]int{
	{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 5, 7, 6, 2, 8, 3, 0, 9, 4}, {5, 8, 0, 3, 7, 9, 6, 1, 4, 2},
	{8, 9, 1, 6, 0, 4, 3, 5, 2, 7}, {9, 4, 5, 3, 1, 2, 6, 8, 7, 0}, {4, 2, 8, 6, 5, 7, 3, 9, 0, 1},
	{2, 7, 9, 3, 8, 0, 6, 4, 1, 5}, {7, 0, 4, 6, 9, 1, 3, 2, 5, 8},
}

// verhoeff is the check of India's Aadhaar numbers.
func verhoeff(d string) bool {
	if len(d) != 12 {
		return false
	}
	c := 0
	for i := 0; i < len(d); i++ {
		c = verhoeffD[c][verhoeffP[i%8][int(d[len(d)-1-i]-'0')]]
	}
	return c == 0
}

// cpf checks a Brazilian CPF's two check digits.
func cpf(d string) bool {
	if len(d) != 11 || strings.Count(d, d[:1]) == 11 {
		return false
	}
	check := func(n int) int {
		sum := 0
		for i := 0; i < n; i++ {
			sum += int(d[i]-'0') * (n + 1 - i)
		}
		r := sum * 10 % 11
		if r == 10 {
			r = 0
		}
		return r
	}
	return check(9) == int(d[9]-'0') && check(10) == int(d[10]-'0')
}

// dni checks the letter of a Spanish DNI (8 digits) or NIE (X, Y or Z and 7 digits).
func dni(s string) bool {
	s = strings.ToUpper(strings.ReplaceAll(s, "-", ""))
	const letters = "TRWAGMYFPDXBNJZSQVHLCKE"
	num := s[:len(s)-1]
	switch num[0] {
	case 'X':
		num = "0" + num[1:]
	case 'Y':
		num = "1" + num[1:]
	case 'Z':
		num = "2" + num[1:]
	}
	if len(num) != 8 {
		return false
	}
	n := 0
	for i := 0; i < len(num); i++ {
		if num[i] < '0' || num[i] > '9' {
			return false
		}
		n = n*10 + int(num[i]-'0')
	}
	return letters[n%23] == s[len(s)-1]
}

// chinaID checks the ISO 7064 MOD 11-2 digit of a Chinese resident identity number.
func chinaID(s string) bool {
	weights := [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i := 0; i < 17; i++ {
		sum += int(s[i]-'0') * weights[i]
	}
	return "10X98765432"[sum%11] == strings.ToUpper(s[17:])[0]
}

// nir checks the key of a French NIR: 97 − (the 13 digits mod 97), Corsica's 2A and 2B
// counted as 19 and 18.
func nir(s string) bool {
	s = strings.ToUpper(strings.ReplaceAll(s, " ", ""))
	if len(s) != 15 {
		return false
	}
	body := s[:13]
	adjust := 0
	if strings.Contains(body, "2A") {
		body, adjust = strings.Replace(body, "2A", "19", 1), 1000000
	} else if strings.Contains(body, "2B") {
		body, adjust = strings.Replace(body, "2B", "18", 1), 2000000
	}
	n := 0
	for i := 0; i < len(body); i++ {
		if body[i] < '0' || body[i] > '9' {
			return false
		}
		n = n*10 + int(body[i]-'0')
	}
	n -= adjust
	key := int(s[13]-'0')*10 + int(s[14]-'0')
	return 97-n%97 == key
}

// ibanLengths are the lengths of each country's IBANs.
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
	"BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
	"ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
	"HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
	"LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
	"MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
	"RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

// findIBANs finds IBANs in any case, written whole or in groups separated by single
// spaces, by the length of the country's IBANs and their mod-97 check.
func findIBANs(sc *scan) {
	s := sc.s
	for i := 0; i+15 <= len(s); i++ {
		if !isLetter(s[i]) || !isLetter(s[i+1]) || !isDigit(s[i+2]) || !isDigit(s[i+3]) || (i > 0 && isAlnum(s[i-1])) {
			continue
		}
		n, ok := ibanLengths[strings.ToUpper(s[i:i+2])]
		if !ok {
			continue
		}
		chars := make([]byte, 0, n)
		j := i
		for j < len(s) && len(chars) < n {
			switch {
			case isAlnum(s[j]):
				chars = append(chars, upper(s[j]))
				j++
			case s[j] == ' ' && j+1 < len(s) && isAlnum(s[j+1]) && j > i:
				j++
			default:
				j = len(s) + 1 // stop
			}
		}
		if len(chars) != n || j > len(s) || (j < len(s) && isAlnum(s[j])) {
			continue
		}
		if mod97(string(chars)) {
			sc.add(i, j, "IBAN")
			i = j - 1
		}
	}
}

func mod97(iban string) bool {
	s := iban[4:] + iban[:4]
	rem := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			rem = (rem*10 + int(c-'0')) % 97
		case c >= 'A' && c <= 'Z':
			rem = (rem*100 + int(c-'A'+10)) % 97
		default:
			return false
		}
	}
	return rem == 1
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isAlnum(c byte) bool  { return isLetter(c) || isDigit(c) }
func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// phoneRegions are the numbering plans national numbers (those without +) are checked
// against: the countries whose formats troy recognizes.
type phoneRegions []string

func newPhoneRegions() phoneRegions {
	return phoneRegions{"US", "GB", "FR", "DE", "IN", "BR", "JP", "AU", "ES", "IT", "NL", "MX", "CN", "ZA", "IE", "SE"}
}

// maxPhoneChecks bounds the numbering-plan checks spent on one text; past it, candidates
// that look like phone numbers are taken as phone numbers without a check, so a text of
// many numbers costs little and leaks nothing.
const maxPhoneChecks = 64

// find finds phone numbers: international ones (+ or 00) valid in their country, and
// national ones valid in one of the regions, unless the words before say the number is an
// order, a ticket, a version or another id.
func (pr phoneRegions) find(sc *scan) {
	budget := maxPhoneChecks
	s := sc.s
	for _, m := range phoneRe().FindAllStringIndex(s, -1) {
		start, end := m[0], m[1]
		// A first or last chunk that belongs to a word or a longer number is left out.
		for !freeStart(s, start) {
			i := strings.IndexByte(s[start:end], ' ')
			if i < 0 {
				break
			}
			start += i + 1
		}
		for !freeEnd(s, end) {
			i := strings.LastIndexByte(s[start:end], ' ')
			if i < 0 {
				break
			}
			end = start + i
		}
		if !standalone(s, start, end) {
			continue
		}
		// Runs of space-separated chunks, the longest first, from left to right: a run may
		// hold two numbers, or a number and the next one's prefix.
		chunks := splitChunks(s, start, end)
		for a := 0; a < len(chunks); {
			found := false
			for n := len(chunks) - a; n >= 1; n-- {
				lo, hi := chunks[a][0], chunks[a+n-1][1]
				if pr.phone(sc, lo, hi, &budget) {
					sc.add(lo, hi, "PHONE")
					a, found = a+n, true
					break
				}
			}
			if !found {
				a++
			}
		}
	}
}

// splitChunks splits s[start:end] at spaces into chunks of digits and -.() separators.
func splitChunks(s string, start, end int) [][2]int {
	var out [][2]int
	i := start
	for i < end {
		for i < end && s[i] == ' ' {
			i++
		}
		j := i
		for j < end && s[j] != ' ' {
			j++
		}
		if j > i {
			out = append(out, [2]int{i, j})
		}
		i = j
	}
	return out
}

// standalone reports whether s[start:end] is not part of a longer token or number.
func standalone(s string, start, end int) bool { return freeStart(s, start) && freeEnd(s, end) }

// freeStart reports whether what starts at s[start] does not continue a word or a number
// before it (ORD-2024-000123, v1.2.3456789, 12,345,678).
func freeStart(s string, start int) bool {
	if start == 0 {
		return true
	}
	c := s[start-1]
	joined := start >= 2 && isAlnum(s[start-2])
	return !(isAlnum(c) || c == '_' || (strings.IndexByte(".-/_", c) >= 0 && joined) || (strings.IndexByte(":,", c) >= 0 && start >= 2 && isDigit(s[start-2])))
}

// freeEnd reports whether what ends at s[end] does not go on into a word or a number.
func freeEnd(s string, end int) bool {
	if end >= len(s) {
		return true
	}
	c := s[end]
	return !(isAlnum(c) || c == '_' || (strings.IndexByte(".-/:,", c) >= 0 && end+1 < len(s) && isDigit(s[end+1])))
}

var (
	ipRe      = lazyRegexp(`^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$`)
	dotsPhone = lazyRegexp(`^\(?\d{3}\)?\.\d{3}\.\d{4}$|^\d{2}(?:\.\d{2}){4}$|^\+?\d{1,3}(?:\.\d{2,4}){2,5}$`)
)

// phone decides whether s[start:end] is a phone number.
func (pr phoneRegions) phone(sc *scan, start, end int, budget *int) bool {
	t := strings.Trim(sc.s[start:end], " -.")
	if strings.Count(t, "(") != strings.Count(t, ")") {
		t = strings.Trim(t, "()") // "(2023-12-25" of a bracketed remark
	}
	d := digitsOf(t)
	if len(d) < 7 || len(d) > 15 {
		return false
	}
	international := strings.HasPrefix(t, "+") || (strings.HasPrefix(t, "00") && len(d) >= 10)
	separated := strings.ContainsAny(t, " -.()")
	if !international {
		if isDate(t) || ipRe().MatchString(t) {
			return false
		}
		if strings.ContainsRune(t, '.') && !strings.ContainsAny(t, " -()") && !dotsPhone().MatchString(t) {
			return false // a version or a decimal number
		}
	}
	ctx := phoneContext(sc.lower, start)
	if ctx < 0 && !international {
		return false // an order, a ticket, an amount …
	}
	if *budget <= 0 {
		return separated || international
	}
	*budget--
	if international {
		num := "+" + strings.TrimPrefix(d, "00")
		if strings.HasPrefix(t, "+") {
			num = "+" + d
		}
		n, err := phonenumbers.Parse(num, "")
		return err == nil && phonenumbers.IsValidNumber(n)
	}
	switch {
	case !international && shortGroups(t) && d[0] != '0':
		return false // 98 76 54 32 10, 1 2 3 4 5: groups of two need a trunk prefix
	case !separated && ctx == 0:
		// Bare digits are phone numbers only in the strict North American plan, or when
		// written with a national trunk prefix 0.
		if len(d) == 10 || (len(d) == 11 && d[0] == '1') {
			return validIn(d, "US")
		}
		if d[0] == '0' && len(d) >= 10 && len(d) <= 11 {
			return pr.validInAny(d)
		}
		return false
	default:
		return pr.validInAny(t)
	}
}

func validIn(num, region string) bool {
	n, err := phonenumbers.Parse(num, region)
	return err == nil && phonenumbers.IsValidNumberForRegion(n, region)
}

func (pr phoneRegions) validInAny(num string) bool {
	for _, r := range pr {
		if validIn(num, r) {
			return true
		}
	}
	return false
}

// shortGroups reports whether t has groups of digits of at most two, or a group of one
// after the first.
func shortGroups(t string) bool {
	groups := strings.FieldsFunc(t, func(r rune) bool { return r < '0' || r > '9' })
	if len(groups) < 2 {
		return false
	}
	all2 := true
	for i, g := range groups {
		if len(g) > 2 {
			all2 = false
		}
		if i > 0 && len(g) == 1 {
			return true
		}
	}
	return all2
}

// isDate reports whether t starts with a date: three groups of digits joined by one of
// - . /, the year first or last, followed by nothing or a time.
func isDate(t string) bool {
	if i := strings.IndexAny(t, " T"); i >= 0 {
		t = t[:i]
	}
	for _, sep := range []string{"-", ".", "/"} {
		g := strings.Split(t, sep)
		if len(g) != 3 || countDigits(t) != len(t)-2 {
			continue
		}
		var day, month int
		switch {
		case len(g[0]) == 4 && len(g[1]) <= 2 && len(g[2]) <= 2: // 2024-01-15
			month, day = atoi(g[1]), atoi(g[2])
		case len(g[2]) == 4 && len(g[0]) <= 2 && len(g[1]) <= 2: // 15/01/2024, 01-15-2024
			month, day = atoi(g[1]), atoi(g[0])
			if month > 12 {
				month, day = day, month
			}
		case len(g[2]) == 2 && len(g[0]) <= 2 && len(g[1]) <= 2 && sep != "-": // 15.01.24
			month, day = atoi(g[1]), atoi(g[0])
		default:
			continue
		}
		if month >= 1 && month <= 12 && day >= 1 && day <= 31 {
			return true
		}
	}
	return false
}

func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// phoneContext reads the words before a number: 1 when they speak of phones, -1 when
// they say it is some other number, 0 otherwise. The nearest word decides.
func phoneContext(lower string, at int) int {
	b := before(lower, at, 32)
	words := strings.FieldsFunc(b, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '#' || r == '$' || r == '€' || r == '£')
	})
	for i := len(words) - 1; i >= 0; i-- {
		w := strings.TrimRight(words[i], "0123456789")
		switch {
		case phoneWords[w] || phoneContextWords[w]:
			return 1
		case otherNumberWords[w] || strings.ContainsAny(w, "#$€£"):
			return -1
		}
	}
	return 0
}

var (
	phoneContextWords = map[string]bool{"call": true, "sms": true, "dial": true, "text": true, "reach": true,
		"contact": true, "ring": true, "phones": true, "tel": true, "mob": true}
	otherNumberWords = map[string]bool{"order": true, "orders": true, "invoice": true, "ticket": true, "tracking": true,
		"ref": true, "reference": true, "id": true, "ids": true, "no": true, "sku": true, "isbn": true, "issn": true,
		"build": true, "version": true, "v": true, "pid": true, "port": true, "commit": true, "issue": true, "case": true,
		"txn": true, "transaction": true, "confirmation": true, "batch": true, "serial": true, "lot": true, "part": true,
		"item": true, "zip": true, "postal": true, "employee": true, "customer": true, "account": true, "acct": true,
		"cve": true, "ean": true, "upc": true, "gtin": true, "asin": true, "booking": true, "reservation": true,
		"claim": true, "record": true, "row": true, "rows": true, "job": true, "run": true, "request": true,
		"trace": true, "span": true, "error": true, "code": true, "amount": true, "total": true, "usd": true,
		"eur": true, "jpy": true, "price": true, "bytes": true, "size": true, "checksum": true, "seed": true,
		"timestamp": true, "epoch": true, "offset": true, "count": true, "uid": true, "gid": true, "inode": true,
		"sequence": true, "seq": true, "pr": true, "iban": true, "bic": true, "swift": true, "card": true,
		"loyalty": true, "member": true, "membership": true, "gift": true, "voucher": true, "coupon": true,
		"shipment": true, "parcel": true, "rma": true, "po": true, "number": false}
)
