package explainer

import (
	"encoding/base64"
	"math"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// troy's own detectors of credentials, for the shapes gitleaks' rules leave alone because
// they cannot tell a secret from its entropy: a password is whatever is assigned to a key
// named like one, wherever it is written (key=value, JSON, YAML, headers, flags, URLs).
var (
	privateKeyRe = lazyRegexp(`(?i)-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----|\z)`)
	// scheme://user:password@host, whatever the host; the password runs to the last @
	// before the path, since people paste passwords with an unescaped @.
	urlPasswordRe = lazyRegexp(`(?i)\b[a-z][a-z0-9+.\-]{1,30}://[^\s:/?#@"'<>\\]*:([^\s/"'<>\\]+)@`)
	// key = value, key: value, "key": "value", \"key\": \"value\", key => value.
	assignmentRe = lazyRegexp(`(?:^|--|[^A-Za-z0-9_.\-])\\?["']?([A-Za-z_][A-Za-z0-9_.\-]{0,63})\\?["']?[ \t]*(=>|:=|=|:)([ \t]*)("(?:[^"\\\n]|\\.)*"|\\"(?:[^"\\\n]|\\[^"\n])*\\"|'[^'\n]*'|[^\s"'&,;\\]+)`)
	// "the password is hunter2", "PIN was 4821"
	sentenceRe     = lazyRegexp(`(?i)\b(?:password|passcode|passphrase|passwort|pin(?: code)?|pwd)\s+(?:is|was|to)\s*:?\s*["'“]?([^\s"'”,;]+)`)
	authHeaderRe   = lazyRegexp(`(?i)\b(?:proxy-)?authori[sz]ation\\?["']?[ \t]*[:=][ \t]*\\?["']?(?:(?:basic|bearer|token|digest|negotiate|ntlm|apikey|api-key|sso-key|aws4-hmac-sha256)[ \t]+)?([^\r\n"'\\]+)`)
	cookieHeaderRe = lazyRegexp(`(?i)\b(?:set-)?cookie\\?["']?[ \t]*[:=][ \t]*\\?["']?([^\r\n"'\\]+)`)
	bearerRe       = lazyRegexp(`(?i)\bbearer[ \t]+([A-Za-z0-9\-._~+/]{8,}=*)`)
	basicRe        = lazyRegexp(`(?i)\bbasic[ \t]+([A-Za-z0-9+/]{8,}={0,2})`)
	// Command lines: curl -u user:pw, --password pw, mysql -ppw, sshpass -p pw, redis-cli -a pw.
	flagRe = lazyRegexp(`(?:^|\s)(?:-u|--user|--proxy-user)(?:[ \t]+|=)["']?[^\s"':]*:([^\s"']+)` +
		`|(?:^|\s)--(?:password|passwd|pass|pw|token|secret|api-key|apikey|auth-token|access-token|client-secret|private-key)[ \t]+["']?([^\s"'-][^\s"']*)` +
		`|(?i:\b(?:mysql|mysqldump|mysqladmin|mariadb)\b[^\n]*?\s-p["']?([^\s"']+))` +
		`|\bsshpass\s+-p\s*["']?([^\s"']+)` +
		`|\bredis-cli\b[^\n]*?\s-a\s+["']?([^\s"']+)` +
		`|\bdocker\s+login\b[^\n]*?\s(?:-p|--password)\s+["']?([^\s"']+)` +
		`|(?i:\blogin\s+\S+\s+password\s+(\S+))`) // .netrc
	// Keys and tokens of the common providers, kept beside gitleaks' rules because those
	// demand a delimiter after the key that text written by agents does not always have.
	providerKeyRe = lazyRegexp(`\b(?:` +
		`sk-(?:proj-|ant-(?:api\d\d-|admin\d\d-)?|live-|test-|svcacct-|admin-)?[A-Za-z0-9_-]{16,}` +
		`|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}` +
		`|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}` +
		`|glpat-[A-Za-z0-9_-]{20,}` +
		`|xox[abeoprs]-[A-Za-z0-9-]{10,}` +
		`|(?:AKIA|ASIA)[0-9A-Z]{16}` +
		`|AIza[0-9A-Za-z_-]{35}` +
		`|hf_[A-Za-z0-9]{30,}|npm_[A-Za-z0-9]{36}|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}` +
		`)`)
	jwtRe = lazyRegexp(`\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)
)

// ownKeywords are the words troy's detectors wait for before they run.
var ownKeywords = []string{"--", "-a", "-p", "-u", "aiza", "akia", "asia", "authori", "basic", "bearer", "cookie",
	"gho_", "ghp_", "ghr_", "ghs_", "ghu_", "github_pat_", "glpat-", "hf_", "login", "npm_", "pass", "pin", "pk_",
	"pwd", "rk_", "sg.", "sk-", "sk_", "xox"}

// credentials runs troy's detectors of credentials on the text.
func (rs *rules) credentials(sc *scan) {
	s, lower := sc.s, sc.lower
	if strings.Contains(lower, "-----begin") {
		for _, m := range privateKeyRe().FindAllStringIndex(s, -1) {
			sc.add(m[0], m[1], "PRIVATE_KEY")
		}
	}
	if strings.Contains(s, "://") && strings.Contains(s, "@") {
		groups(sc, urlPasswordRe(), "PASSWORD")
	}
	if strings.ContainsAny(s, "=:") {
		assignments(sc)
	}
	if sc.has("pass", "pin", "pwd") {
		for _, m := range sentenceRe().FindAllStringSubmatchIndex(s, -1) {
			if v := s[m[2]:m[3]]; !isPlaceholder(v) && !sentenceWords[strings.ToLower(strings.TrimRight(v, ".!?:)"))] {
				sc.add(m[2], m[3], "PASSWORD")
			}
		}
	}
	if sc.has("authori") {
		longGroups(sc, authHeaderRe(), "TOKEN")
	}
	if sc.has("cookie") {
		cookies(sc)
	}
	if sc.has("bearer") {
		groups(sc, bearerRe(), "TOKEN")
	}
	if sc.has("basic") {
		for _, m := range basicRe().FindAllStringSubmatchIndex(s, -1) {
			if userPassword(s[m[2]:m[3]]) {
				sc.add(m[2], m[3], "PASSWORD")
			}
		}
	}
	if sc.has("-u", "--", "-p", "-a", "login") {
		groups(sc, flagRe(), "PASSWORD")
	}
	if sc.has("sk-", "sk_", "pk_", "rk_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xox", "akia", "asia", "aiza", "hf_", "npm_", "sg.") {
		for _, m := range providerKeyRe().FindAllStringIndex(s, -1) {
			sc.add(m[0], m[1], "API_KEY")
		}
	}
	if strings.Contains(s, "eyJ") {
		for _, m := range jwtRe().FindAllStringIndex(s, -1) {
			sc.add(m[0], m[1], "TOKEN")
		}
	}
	if len(s) >= 32 {
		runs(s, &hexChars, 32, func(start, end int) {
			if end-start <= 128 && !wordChar(s, start-1) && !wordChar(s, end) && keyContext(lower, start) {
				sc.add(start, end, "SECRET")
			}
		})
		runs(s, &tokenChars, 32, func(start, end int) {
			// Base64 of text is judged by what it says (see encoded), not by its entropy.
			if _, isText := decodeBase64(s[start:end]); !isText && randomToken(s[start:end]) && !digestContext(lower, start) {
				sc.add(start, end, "SECRET")
			}
		})
	}
}

// Byte classes of runs: hexadecimal digits, and the characters of tokens and base64.
var hexChars, tokenChars = byteClass("0123456789abcdefABCDEF"), byteClass("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")

func byteClass(chars string) (c [256]bool) {
	for i := 0; i < len(chars); i++ {
		c[chars[i]] = true
	}
	return c
}

// runs calls fn for each maximal run of class bytes at least min long, with up to two =
// of base64 padding after it. A loop over bytes costs a fraction of a regular expression.
func runs(s string, class *[256]bool, min int, fn func(start, end int)) {
	for i := 0; i < len(s); {
		if !class[s[i]] {
			i++
			continue
		}
		j := i
		for j < len(s) && class[s[j]] {
			j++
		}
		if j-i >= min {
			end := j
			for end < len(s) && end-j < 2 && s[end] == '=' {
				end++
			}
			fn(i, end)
		}
		i = j
	}
}

func wordChar(s string, i int) bool {
	return i >= 0 && i < len(s) && (isAlnum(s[i]) || s[i] == '_')
}

// groups adds, for each match of re, its first non-empty submatch.
func groups(sc *scan, re *regexp.Regexp, kind string) {
	for _, m := range re.FindAllStringSubmatchIndex(sc.s, -1) {
		for g := 1; 2*g+1 < len(m); g++ {
			if m[2*g] >= 0 && m[2*g+1] > m[2*g] {
				if !isPlaceholder(sc.s[m[2*g]:m[2*g+1]]) {
					sc.add(m[2*g], m[2*g+1], kind)
				}
				break
			}
		}
	}
}

// longGroups is groups for values of six characters or more: a header value shorter than
// that is code (f"Bearer {token}") or a placeholder, not a credential.
func longGroups(sc *scan, re *regexp.Regexp, kind string) {
	for _, m := range re.FindAllStringSubmatchIndex(sc.s, -1) {
		if m[3]-m[2] >= 6 && !isPlaceholder(sc.s[m[2]:m[3]]) {
			sc.add(m[2], m[3], kind)
		}
	}
}

// cookies finds the values of a Cookie or Set-Cookie header that are credentials: those of
// cookies named like one (session, auth, token …) or that look random.
func cookies(sc *scan) {
	for _, m := range cookieHeaderRe().FindAllStringSubmatchIndex(sc.s, -1) {
		for at := m[2]; at < m[3]; {
			end := strings.IndexByte(sc.s[at:m[3]], ';')
			if end < 0 {
				end = m[3] - at
			}
			pair := sc.s[at : at+end]
			if eq := strings.IndexByte(pair, '='); eq > 0 {
				name, value := strings.TrimSpace(pair[:eq]), pair[eq+1:]
				lname := strings.ToLower(name)
				if kind, _ := secretName(name); (kind != "" || looksRandom(value) || strings.Contains(lname, "sess") || lname == "sid") && !isPlaceholder(value) {
					sc.add(at+eq+1, at+end, "TOKEN")
				}
			}
			at += end + 1
		}
	}
}

// maxNestedNames bounds how many names are looked for inside one value, each look reading
// the rest of the value again.
const maxNestedNames = 8

// assignments finds values assigned to names of secrets: password=…, "api_key": "…",
// X-Api-Key: …, DB_PASSWORD=…. After an ordinary name the search goes on inside its
// value, which may hold assignments of its own (note: password=…, body="{\"pw\": …}").
func assignments(sc *scan) {
	s := sc.s
	bareEnd := 0 // the end of the unquoted value being looked into
	nested := 0  // how many names were found in it: a:b:c:… is looked into a few times only
	for pos := 0; pos < len(s); {
		m := assignmentRe().FindStringSubmatchIndex(s[pos:])
		if m == nil {
			return
		}
		for i := range m {
			m[i] += pos
		}
		name, sep, space := s[m[2]:m[3]], s[m[4]:m[5]], m[7] > m[6]
		start, end := m[8], m[9]
		quoted := true
		switch v := s[start:end]; {
		case strings.HasPrefix(v, `\"`) && len(v) >= 4:
			start, end = start+2, end-2
		case v[0] == '"' || v[0] == '\'':
			start, end = start+1, end-1
		default:
			quoted = false
		}
		kind, need := secretName(name)
		lname := strings.ToLower(name)
		switch {
		case kind == "" || start >= end || (m[0] < bareEnd && sep == ":" && !space && !quoted):
			// An ordinary name, or name:value inside an unquoted value (an ARN, a URL):
			// look on from the start of the value.
			if m[0] >= bareEnd {
				nested = 0
			}
			if nested++; nested > maxNestedNames {
				pos = max(m[9], bareEnd)
				continue
			}
			if !quoted {
				bareEnd = max(bareEnd, m[9])
			}
			pos = max(m[8], m[3]+1)
			continue
		case strings.Contains(lname, "authori") || strings.Contains(lname, "cookie"):
			// headers with a scheme before the secret have detectors of their own
		default:
			if v := s[start:end]; !isPlaceholder(v) && need(v) {
				sc.add(start, end, kind)
			}
		}
		pos = m[9]
	}
}

// keyContext reports whether the hexadecimal run at lower[at:] follows a word that makes
// it a key (key, token, secret …) rather than a digest (commit, sha, hash …): the nearest
// such word within 40 bytes on its line decides.
func keyContext(lower string, at int) bool { return nearestWord(lower, at) > 0 }

// digestContext reports whether the nearest such word makes the run at lower[at:] a digest.
func digestContext(lower string, at int) bool { return nearestWord(lower, at) < 0 }

// nearestWord is 1 when the nearest word before at names a key, -1 a digest, 0 neither.
func nearestWord(lower string, at int) int {
	lo := max(0, at-40)
	before := lower[lo:at]
	if i := strings.LastIndexByte(before, '\n'); i >= 0 {
		before = before[i+1:]
	}
	best, word := -1, 0
	for _, w := range keyWords {
		if i := strings.LastIndex(before, w); i > best {
			best, word = i, 1
		}
	}
	for _, w := range digestWords {
		if i := strings.LastIndex(before, w); i > best {
			best, word = i, -1
		}
	}
	return word
}

var (
	keyWords    = []string{"key", "token", "secret", "auth", "credential", "password", "passwd", "api", "signature", "bearer", "webhook", "hooks"}
	digestWords = []string{"commit", "sha", "hash", "digest", "checksum", "revision", "rev ", "etag", "md5", "blob", "tree", "merge", "parent", "object", "build", "image", "layer", "uuid", "trace", "span", "request", "fingerprint", "cid", "ipfs", "integrity"}
)

// randomToken accepts long strings that mix letters and digits and look random: keys and
// tokens of providers not listed, session secrets. Words, paths and hex digests stay.
// A run split by slashes (a path) must have a random part of its own.
func randomToken(s string) bool {
	if strings.Contains(s, "/") {
		for _, part := range strings.Split(s, "/") {
			if len(part) >= 20 && randomToken(part) {
				return true
			}
		}
		return false
	}
	var letters, digits bool
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits = true
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letters = true
		}
	}
	if !letters || !digits {
		return false
	}
	// The most a string of n bytes can reach is log2(n) bits per byte; random keys come
	// close, words and identifiers do not.
	return shannon(s) >= math.Min(4.2, 0.85*math.Log2(float64(len(s))))
}

// userPassword reports whether b64 decodes to "user:password", the credentials of HTTP
// basic authentication.
func userPassword(b64 string) bool {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(b64, "="))
	}
	return err == nil && printable(string(raw)) && strings.Contains(string(raw), ":")
}

// printable reports whether s is text: valid UTF-8 with no control characters other than
// white space.
func printable(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' {
			return false
		}
	}
	return true
}

// Words that follow "password is" in ordinary sentences, not passwords.
var sentenceWords = map[string]bool{
	"is": true, "was": true, "to": true, "the": true, "a": true, "an": true, "required": true, "incorrect": true,
	"invalid": true, "wrong": true, "correct": true, "missing": true, "empty": true, "expired": true, "changed": true,
	"reset": true, "set": true, "not": true, "too": true, "being": true, "been": true, "for": true, "of": true,
	"in": true, "on": true, "and": true, "or": true, "with": true, "from": true, "that": true, "this": true,
	"be": true, "now": true, "still": true, "valid": true, "strong": true, "weak": true, "hashed": true,
	"stored": true, "needed": true, "optional": true, "protected": true, "shown": true, "hidden": true,
	"rotated": true, "updated": true, "sent": true, "no": true, "never": true, "also": true, "only": true,
	"your": true, "their": true, "his": true, "her": true, "our": true, "my": true, "continue": true, "proceed": true,
	"unlock": true, "access": true, "confirm": true, "login": true, "log": true, "sign": true, "verify": true,
	"enter": true, "use": true, "change": true, "show": true, "see": true, "get": true,
}

// secretName tells whether a key or field name names a secret or personal data: the kind
// of placeholder for its values and a test that a value must pass (a key id must look
// random, a phone field must hold a number). An empty kind means an ordinary name.
func secretName(name string) (kind string, need func(string) bool) {
	words := nameWords(name)
	if len(words) == 0 {
		return "", nil
	}
	last := words[len(words)-1]
	if len(words) > 1 && nameExclusions[last] {
		return "", nil // password_policy, token_type, secret_name …
	}
	joined := strings.Join(words, "")
	for _, w := range words {
		if k, ok := personalWords[w]; ok {
			return k, anyValue
		}
	}
	for _, p := range personalJoined {
		if strings.Contains(joined, p.part) {
			return p.kind, anyValue
		}
	}
	for _, w := range words {
		if w == "pin" || w == "cvv" || w == "cvc" || w == "cvv2" || w == "otp" || w == "totp" {
			return "PASSWORD", hasDigits(3) // a PIN or a code is digits; "pin: left" is a layout
		}
		if secretWords[w] {
			return "PASSWORD", anyValue
		}
		if phoneWords[w] {
			return "PHONE", hasDigits(7)
		}
	}
	for _, p := range secretParts {
		if strings.Contains(joined, p) {
			return "PASSWORD", anyValue
		}
	}
	for _, w := range words {
		if w == "key" || w == "keyid" || w == "kid" {
			return "SECRET", looksRandom
		}
	}
	return "", nil
}

// nameWords splits a name at punctuation and at changes of case (apiKey, X-Api-Key,
// DB_PASSWORD, spring.datasource.password), in lower case.
func nameWords(name string) []string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	rs := []rune(name)
	for i, r := range rs {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
			continue
		case unicode.IsUpper(r) && len(cur) > 0 && (unicode.IsLower(cur[len(cur)-1]) || i+1 < len(rs) && unicode.IsLower(rs[i+1]) && unicode.IsUpper(cur[len(cur)-1])):
			flush()
		}
		cur = append(cur, r)
	}
	flush()
	return words
}

var (
	// Whole words that name a secret.
	secretWords = map[string]bool{
		"pw": true, "pwd": true, "pass": true, "passwd": true, "password": true, "passwords": true, "passphrase": true,
		"passcode": true, "passwort": true, "pin": true, "token": true, "auth": true, "sig": true, "signature": true,
		"otp": true, "totp": true, "cvv": true, "cvc": true, "cvv2": true, "sid": true, "secret": true, "secrets": true,
		"bearer": true, "jwt": true, "credential": true, "credentials": true, "creds": true, "cookie": true,
		"authorization": true, "apikey": true, "sessionid": true, "jsessionid": true, "phpsessid": true,
	}
	// Parts of names written without separators (PGPASSWORD, clientsecret, xapikey).
	secretParts = []string{"password", "passwd", "passphrase", "secret", "apikey", "accesskey", "privatekey",
		"signingkey", "encryptionkey", "masterkey", "accesstoken", "refreshtoken", "authtoken", "apitoken",
		"idtoken", "sessiontoken", "sessionkey", "sessionid", "credential", "privkey", "mysqlpwd"}
	// The last word of names about a secret rather than of one.
	nameExclusions = map[string]bool{
		"type": true, "types": true, "method": true, "mode": true, "scheme": true, "provider": true, "url": true,
		"uri": true, "endpoint": true, "enabled": true, "required": true, "policy": true, "length": true, "len": true,
		"size": true, "count": true, "limit": true, "ttl": true, "expiry": true, "expires": true, "expiration": true,
		"expired": true, "name": true, "names": true, "file": true, "path": true, "hint": true, "format": true,
		"field": true, "label": true, "header": true, "description": true, "rotation": true, "rotated": true,
		"updated": true, "changed": true, "created": true, "reset": true, "strength": true, "prompt": true,
		"min": true, "max": true, "at": true, "arn": true, "ref": true, "version": true, "algorithm": true,
		"alg": true, "usage": true, "tokens": true, "manager": true, "store": true, "vault": true, "hash": true,
		"days": true, "hours": true, "minutes": true, "seconds": true, "ms": true, "timeout": true, "interval": true,
	}
	// Words that name personal data held whole in a value.
	personalWords = map[string]string{
		"ssn": "SSN", "iban": "IBAN", "nino": "NATIONAL_ID", "aadhaar": "NATIONAL_ID", "aadhar": "NATIONAL_ID",
		"cpf": "NATIONAL_ID", "dni": "NATIONAL_ID", "nif": "NATIONAL_ID", "nie": "NATIONAL_ID", "bsn": "NATIONAL_ID",
		"curp": "NATIONAL_ID", "passport": "NATIONAL_ID", "tin": "NATIONAL_ID", "insee": "NATIONAL_ID",
	}
	personalJoined = []struct{ part, kind string }{
		{"socialsecurity", "SSN"}, {"socialinsurance", "NATIONAL_ID"}, {"nationalid", "NATIONAL_ID"},
		{"nationalidentity", "NATIONAL_ID"}, {"taxid", "NATIONAL_ID"}, {"taxpayer", "NATIONAL_ID"},
		{"driverlicense", "NATIONAL_ID"}, {"driverslicense", "NATIONAL_ID"}, {"licensenumber", "NATIONAL_ID"},
		{"idnumber", "NATIONAL_ID"}, {"idcard", "NATIONAL_ID"}, {"steuerid", "NATIONAL_ID"},
		{"cardnumber", "CARD"}, {"ccnumber", "CARD"}, {"creditcard", "CARD"}, {"pannumber", "NATIONAL_ID"},
		{"accountnumber", "ACCOUNT"}, {"routingnumber", "ACCOUNT"}, {"sortcode", "ACCOUNT"},
	}
	phoneWords = map[string]bool{"phone": true, "mobile": true, "tel": true, "telephone": true, "fax": true,
		"cell": true, "msisdn": true, "whatsapp": true, "phonenumber": true}
)

func anyValue(v string) bool {
	t := strings.ToLower(strings.TrimRight(strings.TrimSpace(v), "}])"))
	return !trivialValues[t] && strings.Trim(v, "*x•. ") != "" && !envReference(v) && !callRe.MatchString(v)
}

// callRe matches code that computes a value where the value would be: getpass(),
// vault.read(x), $(vault kv get …).
var callRe = regexp.MustCompile(`^(?:[A-Za-z_][\w.]*\(|\$\()`)

// Values of secret fields that are no secret.
var trivialValues = map[string]bool{"": true, "null": true, "none": true, "nil": true, "true": true, "false": true,
	"undefined": true, "required": true, "optional": true, "redacted": true, "<redacted>": true, "hidden": true,
	"masked": true, "string": true,
	// code that computes the value
	"await": true, "new": true, "function": true, "lambda": true, "async": true, "return": true, "self": true, "this": true,
	// types of the value
	"str": true, "int": true, "bool": true, "float": true, "bytes": true, "any": true, "secretstr": true,
}

// envReference reports whether v names a variable instead of holding a value: $VAR,
// ${VAR}, {{ var }}, %VAR%.
func envReference(v string) bool {
	return envRefRe.MatchString(v)
}

var envRefRe = regexp.MustCompile(`^(?:\$\{?[A-Za-z_][A-Za-z0-9_.]*\}?|\{\{[ \t]*[\w .|()]+[ \t]*\}\}|%[A-Za-z_]+%)$` +
	`|^(?:\$\{\{|process\.env\b|os\.environ\b|os\.getenv\b|import\.meta\.env\b|System\.getenv\b|ENV\[|env\()`)

func hasDigits(n int) func(string) bool {
	return func(v string) bool {
		d := 0
		for i := 0; i < len(v); i++ {
			if v[i] >= '0' && v[i] <= '9' {
				d++
			}
		}
		return d >= n
	}
}

// looksRandom accepts what a key id or key looks like: 16 or more characters without
// spaces, mixing letters and digits.
func looksRandom(v string) bool {
	if len(v) < 16 || strings.ContainsAny(v, " \t\n") {
		return false
	}
	var letters, digits bool
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9':
			digits = true
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letters = true
		}
	}
	return letters && digits
}
