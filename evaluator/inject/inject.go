// Package inject scores a text for instructions addressed to a model hidden inside data: a
// tool's output, a web page, an e-mail that an agent reads. It looks for the marks such
// instructions leave (a model addressed in the second person, claims of authority, fake
// role tags, requests to send data somewhere, messages framed as the user's, conditions
// put on finishing the task, secrecy) and combines them into a score in [0, 1].
//
// The work is linear in the text: it is lowered once, split into words once, and each
// word is looked up in a table of the phrases that start with it. Texts over MaxBytes are
// cut at a word boundary: their beginning and their end are scored, the middle is not.
package inject

import (
	"math"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Threshold is the score from which a text counts as injected. A single strong mark (a
// fake system tag, "ignore your previous instructions") reaches it alone; weak marks (an
// imperative, "urgent", "send ... to") need each other.
const Threshold = 0.5

// MaxBytes bounds the text scored: the first and last MaxBytes/2 bytes of a longer text.
const MaxBytes = 64 << 10

// Feature names, as Analyze reports them.
const (
	Override     = "override"     // ignore/disregard previous instructions, "you are now"
	Addressed    = "addressed"    // the assistant, AI, agent or model addressed
	Imperative   = "imperative"   // second-person commands: you must, you need to
	Authority    = "authority"    // admin, security team, IMPORTANT, system notice
	TaskRef      = "task"         // your task, your instructions, the user
	RoleTag      = "role_tag"     // <system>, [INST], ### Instruction, Assistant:, "role": "system"
	Exfiltration = "exfiltration" // send/forward/transfer ... to a destination, call a tool
	UserFramed   = "user_framed"  // the user says/wants/asked you to
	Prerequisite = "prerequisite" // before you can complete, in order to finish
	Secrecy      = "secrecy"      // do not tell the user, silently, without mentioning
	Discussion   = "discussion"   // text about prompt injection rather than one (lowers the score)
	// Secrets is a request to send secrets somewhere: a sending verb, something secret
	// (keys, passwords, tokens, the conversation, the inbox) and a destination, in that
	// order within a few words.
	Secrets = "secrets"
)

// weights of the features; a feature counts once, however often it is seen.
var weights = map[string]float64{
	Override:     1.4,
	Addressed:    0.7,
	Imperative:   0.3,
	Authority:    0.25,
	TaskRef:      0.35,
	RoleTag:      1.0,
	Exfiltration: 0.35,
	UserFramed:   0.6,
	Prerequisite: 0.3,
	Secrecy:      0.55,
	Discussion:   -0.9,
	Secrets:      0.75,
}

// pairs are features that, seen together, say more than each alone: a request to send
// data is ordinary in an e-mail, not when it is addressed to the model.
var pairs = []struct {
	a, b string
	w    float64
}{
	{Addressed, Imperative, 0.35},
	{Addressed, Exfiltration, 0.4},
	{Exfiltration, Secrecy, 0.4},
	{Authority, Imperative, 0.2},
	{TaskRef, Imperative, 0.2},
}

// Result is a score and the features that made it.
type Result struct {
	Score    float64
	Features []string // in the order of the constants above
	Cut      bool     // the text was longer than MaxBytes
}

// Injected reports whether the result reaches the threshold.
func (r Result) Injected() bool { return r.Score >= Threshold }

// Score is Analyze(text).Score, without listing the features.
func Score(text string) float64 { return analyze(text, false).Score }

// Analyze scores a text.
func Analyze(text string) Result { return analyze(text, true) }

func analyze(text string, list bool) Result {
	var r Result
	if len(text) > MaxBytes {
		text = cut(text)
		r.Cut = true
	}
	low := unescapeSpace(strings.ToLower(text))
	var seen [numFeatures]bool
	scanMarks(low, &seen)
	ws := words(low)
	scanPhrases(ws, &seen)
	scanSending(ws, &seen)
	z := 0.0
	for i, on := range seen {
		if on {
			z += weights[featureNames[i]]
			if list {
				r.Features = append(r.Features, featureNames[i])
			}
		}
	}
	for _, p := range pairs {
		if seen[featureIndex[p.a]] && seen[featureIndex[p.b]] {
			z += p.w
		}
	}
	if z > 0 {
		r.Score = 1 - math.Exp(-z)
	}
	return r
}

var featureNames = [...]string{Override, Addressed, Imperative, Authority, TaskRef, RoleTag, Exfiltration, UserFramed, Prerequisite, Secrecy, Discussion, Secrets}

const numFeatures = len(featureNames)

var featureIndex = func() map[string]int {
	m := map[string]int{}
	for i, n := range featureNames {
		m[n] = i
	}
	return m
}()

// cut keeps the first and last MaxBytes/2 bytes of text, each ending at white space
// when there is some near the cut, else at a character boundary.
func cut(text string) string {
	half := MaxBytes / 2
	head := text[:half]
	if i := strings.LastIndexAny(head[half-256:], " \n\t"); i >= 0 {
		head = head[:half-256+i]
	}
	for len(head) > 0 && !utf8.RuneStart(text[len(head)]) {
		head = head[:len(head)-1]
	}
	start := len(text) - half
	if i := strings.IndexAny(text[start:start+256], " \n\t"); i >= 0 {
		start += i + 1
	}
	for start < len(text) && !utf8.RuneStart(text[start]) {
		start++
	}
	return head + "\n" + text[start:]
}

// spaceEscapes turn the escapes of white space that Python's repr and JSON write (a
// condition scores an object as its repr) back into white space: without it a paragraph
// after "\n\n" would start with the word "nignore", and no line would start anywhere.
var spaceEscapes = strings.NewReplacer(`\n`, "\n", `\r`, "\r", `\t`, "\t")

func unescapeSpace(low string) string {
	if !strings.Contains(low, `\`) {
		return low
	}
	return spaceEscapes.Replace(low)
}

// marks are substrings that are marks wherever they appear in the lowered text.
var marks = []struct {
	s string
	f string
}{
	{"<system>", RoleTag}, {"</system>", RoleTag}, {"<|system|>", RoleTag}, {"<|im_start|>", RoleTag},
	{"[inst]", RoleTag}, {"[/inst]", RoleTag}, {"<<sys>>", RoleTag}, {"[system]", RoleTag},
	{"### instruction", RoleTag}, {"### system", RoleTag}, {"## system prompt", RoleTag},
	{`"role": "system"`, RoleTag}, {`"role":"system"`, RoleTag}, {`'role': 'system'`, RoleTag},
	{"<!--", ""}, // only a mark together with words inside: see scanMarks
}

// lineStarts are marks at the start of a line (after white space and quote signs).
var lineStarts = []struct {
	s string
	f string
}{
	{"system:", RoleTag}, {"assistant:", RoleTag}, {"system message:", RoleTag}, {"system notice:", Authority},
	{"ai:", Addressed}, {"human:", RoleTag}, {"important:", Authority}, {"urgent:", Authority},
	{"note to ai", Addressed}, {"note to the ai", Addressed}, {"note to assistant", Addressed},
}

func scanMarks(low string, seen *[numFeatures]bool) {
	if strings.Contains(low, `\"`) { // JSON inside a JSON string
		low = strings.ReplaceAll(low, `\"`, `"`)
	}
	for _, m := range marks {
		if m.f != "" && strings.Contains(low, m.s) {
			seen[featureIndex[m.f]] = true
		}
	}
	for line := range strings.Lines(low) {
		line = strings.TrimLeft(line, " \t>*-#\"'")
		for _, m := range lineStarts {
			if strings.HasPrefix(line, m.s) {
				seen[featureIndex[m.f]] = true
			}
		}
	}
}

// words splits lowered text into words of letters and digits; an e-mail address, a URL
// or a domain becomes the word "<dest>", which phrases can ask for.
func words(low string) []string {
	var out []string
	i := 0
	for i < len(low) {
		r, n := utf8.DecodeRuneInString(low[i:])
		if !isWord(r) {
			if endsSentence(low, i) && len(out) > 0 && out[len(out)-1] != stop {
				out = append(out, stop)
			}
			i += n
			continue
		}
		j := i
		for j < len(low) {
			r, n := utf8.DecodeRuneInString(low[j:])
			if isWord(r) || ((r == '\'' || r == '’') && j+n < len(low) && isWordByte(low[j+n])) {
				j += n
				continue
			}
			break
		}
		// A run with @, :// or a dot inside, between words, is an address.
		k := j
		for k < len(low) && isAddrByte(low[k]) {
			k++
		}
		w := low[i:j]
		if k > j {
			tail := low[j:k]
			if strings.Contains(tail, "@") || strings.HasPrefix(tail, "://") || (strings.Contains(tail, ".") && len(strings.TrimRight(tail, ".,")) > 2 && !strings.HasSuffix(tail, ".")) {
				w = dest
				j = k
			}
		}
		out = append(out, w)
		i = j
	}
	return out
}

// stop stands between two sentences in the words of a text: an instruction is one
// sentence, so phrases and a sending verb's destination are not looked for across it.
const stop = "<stop>"

// endsSentence reports whether the mark at low[i] ends a sentence: a line break, ! or ?,
// or a full stop or colon that white space or the end follows (not 1.5 or a.b).
func endsSentence(low string, i int) bool {
	switch low[i] {
	case '\n', '!', '?':
		return true
	case '.', ';':
		return i+1 == len(low) || low[i+1] == ' ' || low[i+1] == '\n' || low[i+1] == '\t' || low[i+1] == '\r'
	}
	return false
}

const dest = "<dest>"

func isWord(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' }
func isWordByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b >= 0x80
}
func isAddrByte(b byte) bool {
	return isWordByte(b) || b == '@' || b == '.' || b == '/' || b == ':' || b == '-' || b == '_' || b == '?' || b == '=' || b == '&' || b == '%'
}

// sendVerbs and secretWords make Secrets; sendWindow is how many words may follow the
// verb before the destination.
var (
	sendVerbs = set("send", "forward", "call", "invoke", "transfer", "email", "mail", "upload", "post", "copy", "share", "paste",
		"leak", "exfiltrate", "sende", "senden", "schicke", "envoie", "envoyez", "envía", "envia", "invia")
	secretWords = set("password", "passwords", "passwort", "passe", "contraseña", "key", "keys", "token", "tokens",
		"credentials", "secret", "secrets", "ssh", "id_rsa", "env", "history", "conversation", "historique",
		"inbox", "cookie", "cookies", "session", "records", "database", "iban", "clients", "mails", "emails", "messages", "thread", "chat", "kundendaten", "customer")
)

const sendWindow = 14

func set(ws ...string) map[string]bool {
	m := map[string]bool{}
	for _, w := range ws {
		m[w] = true
	}
	return m
}

// scanSending looks for a sending verb followed, within sendWindow words, by a
// destination, with a secret between them. Each verb looks at most sendWindow words on.
func scanSending(ws []string, seen *[numFeatures]bool) {
	for i, w := range ws {
		if !sendVerbs[w] {
			continue
		}
		secret := false
		for j := i + 1; j < len(ws) && j <= i+sendWindow && ws[j] != stop; j++ {
			if ws[j] == dest || ws[j] == "iban" { // an account number is a destination too
				seen[featureIndex[Exfiltration]] = true
				if secret || ws[j] == "iban" {
					seen[featureIndex[Secrets]] = true
					return
				}
				break
			}
			secret = secret || secretWords[ws[j]] && ws[j-1] != "public"
		}
	}
}

// A phrase is words in order; "*" stands for any one word, and up to maxGap other words
// may come between two of its words.
type phrase struct {
	words []string
	f     string
}

const maxGap = 2

func scanPhrases(ws []string, seen *[numFeatures]bool) {
	for i, w := range ws {
		for _, p := range phraseIndex[w] {
			if seen[featureIndex[p.f]] {
				continue
			}
			if matchAt(ws, i, p.words) {
				seen[featureIndex[p.f]] = true
			}
		}
	}
}

// matchAt matches the rest of a phrase greedily: each word at the first place it
// appears within the gap. Bounded by len(words) × (maxGap+1) comparisons.
func matchAt(ws []string, i int, words []string) bool {
	pos := i
	for _, want := range words[1:] {
		found := false
		for j := pos + 1; j <= pos+1+maxGap && j < len(ws) && ws[j] != stop; j++ {
			if want == "*" || ws[j] == want || want == aiNoun && aiNouns[ws[j]] {
				pos, found = j, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// aiNoun in a phrase is any word that names a model or a bot (aiNouns): the words that
// address one vary more than the phrases around them.
const aiNoun = "<ai>"

var aiNouns = set("ai", "bot", "bots", "chatbot", "llm", "llms", "chatgpt", "gpt", "claude", "gemini", "copilot", "llama", "ki", "ia")

var phraseIndex = func() map[string][]phrase {
	m := map[string][]phrase{}
	for f, list := range phraseTable {
		for _, s := range list {
			ws := strings.Fields(s)
			m[ws[0]] = append(m[ws[0]], phrase{words: ws, f: f})
		}
	}
	return m
}()
