// Package category infers what a tool does from what a trace says of it: the tool's name,
// its description when the trace has one, and the names of its arguments. No metadata is
// needed, so that a policy can ask "does this step move money?" of any agent's tools.
//
// Inference is by tables of words: names are split into words (snake_case, camelCase,
// kebab-case, dotted and slashed paths), and verbs and nouns map to categories. It is
// linear in the text and reads a bounded prefix of each part, so a long description costs
// no more than a short one. It imports only the standard library: the policy format
// validates category names with it, and the engine infers with it.
package category

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The categories, as conditions name them.
const (
	Outbound    = "outbound"    // sends something out: a message, an email, a post, an upload
	Money       = "money"       // moves money: a payment, a transfer, a refund, a purchase
	Credential  = "credential"  // changes a credential, a permission or an account
	Destructive = "destructive" // deletes or destroys
	FileWrite   = "file_write"  // writes, creates, edits or moves files
	CodeExec    = "code_exec"   // runs code or commands
	Read        = "read"        // reads, searches, lists, fetches
)

// Set is a set of categories.
type Set uint8

const (
	bOutbound Set = 1 << iota
	bMoney
	bCredential
	bDestructive
	bFileWrite
	bCodeExec
	bRead
)

// names is in the order of the bits: the order Names lists a set in.
var names = [...]string{Outbound, Money, Credential, Destructive, FileWrite, CodeExec, Read}

// All lists every category name, in the order sets are listed.
func All() []string { return append([]string(nil), names[:]...) }

// Parse returns the set of one category name; ok is false for a name that is not one.
func Parse(name string) (Set, bool) {
	for i, n := range names {
		if n == name {
			return 1 << i, true
		}
	}
	return 0, false
}

// Names lists the categories of the set, in the order of All.
func (s Set) Names() []string {
	var out []string
	for i, n := range names {
		if s&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// Has reports whether s holds every category of t.
func (s Set) Has(t Set) bool { return s&t == t }

// Bounds of what inference reads, so that its cost does not grow with the input.
const (
	MaxName        = 256 // bytes of a tool's name
	MaxDescription = 512 // bytes of a tool's description, of which only the first sentence
	MaxArg         = 64  // bytes of one argument name
	maxWords       = 64  // words of one part
)

// Tool is what inference reads of a tool call.
type Tool struct {
	Name        string   // the tool's name: a tool_call step's description
	Description string   // the tool's own description, when the trace gives it
	Args        []string // the names of its arguments
}

// Infer returns the categories of a tool. The name decides most; the first sentence of
// the description adds what it says the tool does; argument names add what only they can
// show (an amount and an IBAN, a command), and, when neither says anything, the weaker
// signs (a recipient, content to write).
func Infer(t Tool) Set {
	var buf [maxWords]string
	s := phrase(Words(t.Name, MaxName, buf[:0]))
	if d := firstSentence(t.Description); d != "" {
		s |= phrase(Words(d, MaxDescription, buf[:0]))
	}
	var weak Set
	for _, a := range t.Args {
		strong, w := argument(a)
		s |= strong
		weak |= w
	}
	if s == 0 {
		s = weak
	}
	return s
}

// firstSentence cuts a description at its first sentence: later ones tend to say what
// the tool does not do, or how to call it.
func firstSentence(d string) string {
	if len(d) > MaxDescription {
		d = d[:MaxDescription]
	}
	for i := 0; i < len(d); i++ {
		switch d[i] {
		case '\n':
			return d[:i]
		case '.', '!', '?', ';':
			if i+1 == len(d) || d[i+1] == ' ' || d[i+1] == '\n' {
				return d[:i]
			}
		}
	}
	return d
}

// Words splits text into lower-case words: at every character that is neither a letter
// nor a digit, between a lower-case letter or digit and an upper-case one (sendEmail), and
// before the last capital of a run followed by a lower-case letter (HTTPRequest). It reads
// at most max bytes and appends at most cap(dst) words (64 when dst has no capacity).
func Words(text string, max int, dst []string) []string {
	if len(text) > max {
		text = text[:max]
	}
	limit := cap(dst)
	if limit == 0 {
		limit = maxWords
	}
	start := -1
	var prev rune
	flush := func(end int) {
		if start >= 0 && len(dst) < limit {
			dst = append(dst, strings.ToLower(text[start:end]))
		}
		start = -1
	}
	for i, r := range text {
		word := unicode.IsLetter(r) || unicode.IsDigit(r)
		switch {
		case !word:
			flush(i)
		case start < 0:
			start = i
		case unicode.IsUpper(r) && (unicode.IsLower(prev) || unicode.IsDigit(prev)):
			flush(i)
			start = i
		case unicode.IsLower(r) && unicode.IsUpper(prev) && i-utf8.RuneLen(prev) > start:
			// HTTPRequest: the R starts the next word.
			flush(i - utf8.RuneLen(prev))
			start = i - utf8.RuneLen(prev)
		}
		if !word {
			prev = 0
		} else {
			prev = r
		}
		if len(dst) == limit {
			return dst
		}
	}
	flush(len(text))
	return dst
}

// Word classes. A word may be in several.
const (
	wRead    = 1 << iota // a verb of reading: get, list, search
	wSend                // a verb of sending: send, post, reply
	wPay                 // a verb that moves money by itself: pay, refund, transfer
	wGrant               // a verb that changes access by itself: grant, revoke
	wChange              // a verb of change, which says what it changes by its object
	wDestroy             // a verb of destruction: delete, drop, wipe
	wWrite               // a verb that writes files by itself: write, save, mkdir
	wMake                // a verb of making or changing something, file or not
	wRun                 // a verb of running: exec, run, eval
	nMessage             // a thing sent: email, message, sms
	nMoney               // a thing of money: payment, invoice, funds
	nSecret              // a credential, a permission or an account: password, role
	nFile                // a file or a folder
	nCode                // a program or a place programs run: shell, python, command
	nKeyQual             // a word that makes "key" a credential: api, ssh, access
	nKey                 // key
)

var words = map[string]int{
	// reading
	"get": wRead, "read": wRead, "search": wRead, "list": wRead, "fetch": wRead, "query": wRead,
	"find": wRead, "lookup": wRead, "look": wRead, "view": wRead, "open": wRead, "show": wRead,
	"describe": wRead, "retrieve": wRead, "download": wRead, "browse": wRead, "scan": wRead,
	"inspect": wRead, "load": wRead, "cat": wRead, "ls": wRead, "head": wRead, "tail": wRead, "info": 0,
	"grep": wRead, "stat": wRead, "scrape": wRead, "crawl": wRead, "navigate": wRead,
	"explore": wRead, "preview": wRead, "check": wRead, "count": wRead,
	"tree": wRead, "glob": wRead, "select": wRead, "summarize": wRead, "extract": wRead,
	"analyze": wRead, "analyse": wRead, "returns": wRead, "retrieves": wRead, "gets": wRead,
	"lists": wRead, "searches": wRead, "reads": wRead, "fetches": wRead, "finds": wRead,
	"watch": wRead, "visit": wRead, "poll": wRead, "peek": wRead, "snapshot": wRead,
	// sending
	"send": wSend, "post": wSend, "notify": wSend, "share": wSend, "upload": wSend, "forward": wSend,
	"reply": wSend | nMessage, "respond": wSend, "publish": wSend, "tweet": wSend | nMessage,
	"broadcast": wSend, "invite": wSend | wChange, "mail": wSend | nMessage, "dm": wSend | nMessage,
	"sends": wSend, "posts": wSend, "publishes": wSend, "uploads": wSend, "forwards": wSend,
	"submit": wSend, "push": wSend, "text": 0, "call": 0, "page": 0, "ping": wSend,
	"announce": wSend, "mention": wSend, "emails": nMessage, "messages": nMessage,
	// money
	"pay": wPay, "transfer": wPay, "refund": wPay | nMoney, "purchase": wPay, "buy": wPay,
	"wire": wPay, "withdraw": wPay, "deposit": wPay, "payout": wPay | nMoney, "checkout": wPay,
	"donate": wPay, "tip": wPay, "sell": wPay, "trade": wPay, "spend": wPay, "remit": wPay,
	"pays": wPay, "transfers": wPay | nMoney, "charge": wPay | nMoney, "charges": nMoney,
	"payment": nMoney, "payments": nMoney, "money": nMoney, "funds": nMoney, "fund": nMoney,
	"iban": nMoney, "invoice": nMoney, "invoices": nMoney, "transaction": nMoney,
	"transactions": nMoney, "payouts": nMoney, "refunds": nMoney, "remittance": nMoney,
	"crypto": nMoney, "bitcoin": nMoney, "usdc": nMoney, "venmo": nMoney, "paypal": nMoney,
	"zelle": nMoney, "sepa": nMoney, "ach": nMoney, "swift": nMoney, "order": 0,
	// credentials, permissions, accounts
	"grant": wGrant, "revoke": wGrant, "rotate": wGrant, "elevate": wGrant, "impersonate": wGrant,
	"sudo": wGrant, "chmod": wGrant | wWrite, "chown": wGrant | wWrite, "authorize": wGrant,
	"deauthorize": wGrant, "promote": wGrant, "demote": wGrant, "escalate": wGrant,
	"password": nSecret, "passwords": nSecret, "passwd": nSecret, "passphrase": nSecret,
	"credential": nSecret, "credentials": nSecret, "token": nSecret, "tokens": nSecret,
	"secret": nSecret, "secrets": nSecret, "permission": nSecret, "permissions": nSecret,
	"role": nSecret, "roles": nSecret, "2fa": nSecret, "mfa": nSecret, "otp": nSecret,
	"totp": nSecret, "privilege": nSecret, "privileges": nSecret, "access": nSecret | nKeyQual,
	"auth": nSecret, "apikey": nSecret, "user": nSecret, "users": nSecret, "account": nSecret,
	"accounts": nSecret, "member": nSecret, "members": nSecret, "collaborator": nSecret,
	"collaborators": nSecret, "admin": nSecret, "acl": nSecret, "policy": nSecret, "iam": nSecret,
	"login": nSecret, "oauth": nSecret, "pin": nSecret, "passkey": nSecret, "sshkey": nSecret,
	"api": nKeyQual, "ssh": nKeyQual, "private": nKeyQual, "signing": nKeyQual, "gpg": nKeyQual,
	"deploy": 0, "key": nKey, "keys": nKey,
	// change verbs
	"set": wChange, "change": wChange, "update": wChange | wMake, "reset": wChange,
	"create": wChange | wMake, "add": wChange, "assign": wChange, "generate": wChange,
	"regenerate": wChange, "modify": wChange | wMake, "enable": wChange, "disable": wChange,
	"issue": 0, "new": wChange | wMake, "register": wChange, "unlock": wChange,
	"lock": wChange, "suspend": wChange, "ban": wChange, "verify": 0, "make": wMake,
	"edit": wMake, "patch": wMake, "move": wMake, "mv": wMake, "rename": wMake, "copy": wMake,
	"cp": wMake, "replace": wMake, "insert": wMake, "put": wMake, "apply": wMake,
	"initiate": 0, "process": 0, "schedule": 0, "execute": wRun, "complete": 0,
	// destruction
	"delete": wDestroy | wChange, "remove": wDestroy | wChange, "drop": wDestroy,
	"truncate": wDestroy, "destroy": wDestroy, "wipe": wDestroy, "rm": wDestroy, "rmdir": wDestroy,
	"purge": wDestroy, "terminate": wDestroy, "kill": wDestroy, "erase": wDestroy, "shred": wDestroy,
	"unlink": wDestroy, "uninstall": wDestroy, "deletes": wDestroy, "removes": wDestroy,
	"discard": wDestroy, "flush": wDestroy, "evict": wDestroy, "deprovision": wDestroy,
	"trash": wDestroy, "prune": wDestroy, "clear": wDestroy, "format": 0, "revert": 0,
	"del": wDestroy, "destroys": wDestroy, "obliterate": wDestroy, "nuke": wDestroy,
	// writing files
	"write": wWrite, "save": wWrite, "append": wWrite, "mkdir": wWrite, "overwrite": wWrite,
	"touch": wWrite, "writes": wWrite, "saves": wWrite, "makedirs": wWrite,
	"file": nFile, "files": nFile, "dir": nFile, "directory": nFile, "directories": nFile,
	"folder": nFile, "folders": nFile, "path": nFile, "document": nFile, "documents": nFile,
	"doc": nFile, "docs": nFile, "editor": nFile, "notebook": nFile, "disk": nFile, "fs": nFile,
	"filesystem": nFile, "spreadsheet": nFile, "sheet": nFile, "csv": nFile, "blob": nFile,
	// running code
	"exec": wRun, "run": wRun, "eval": wRun, "evaluate": 0, "spawn": wRun, "runs": wRun,
	"executes": wRun, "invoke": 0, "interpret": wRun,
	"shell": nCode, "bash": nCode, "sh": nCode, "zsh": nCode, "python": nCode, "python3": nCode,
	"terminal": nCode, "command": nCode, "commands": nCode, "cmd": nCode, "powershell": nCode,
	"interpreter": nCode, "repl": nCode, "subprocess": nCode, "script": nCode, "code": nCode,
	"javascript": nCode, "js": nCode, "sql": nCode, "jupyter": nCode, "console": nCode,
	"cli": nCode, "program": nCode, "ruby": nCode, "node": 0, "docker": 0,
	// things sent
	"email": nMessage, "message": nMessage, "sms": nMessage, "notification": nMessage,
	"webhook": nMessage, "comment": nMessage, "chat": nMessage, "letter": nMessage,
	"whatsapp": nMessage, "telegram": nMessage, "fax": nMessage, "gmail": nMessage,
}

// phrase is the categories one part says by its words.
func phrase(ws []string) Set {
	var all int
	for i, w := range ws {
		c := words[w]
		if c&nKey != 0 && i > 0 && words[ws[i-1]]&nKeyQual != 0 {
			c |= nSecret // api_key, ssh key, access key
		}
		all |= c
	}
	var s Set
	if all&wRead != 0 {
		s |= bRead
	}
	if all&wSend != 0 {
		s |= bOutbound
	}
	// A thing sent, with no verb of reading: "email_user", "slack_message", "create_comment".
	if all&nMessage != 0 && all&wRead == 0 && all&(wDestroy|wRun) == 0 {
		s |= bOutbound
	}
	if all&wPay != 0 || all&nMoney != 0 && all&(wSend|wChange|wMake|wRun) != 0 {
		s |= bMoney
	}
	if all&wGrant != 0 || all&nSecret != 0 && all&wChange != 0 {
		s |= bCredential
	}
	if all&wDestroy != 0 {
		s |= bDestructive
	}
	if all&wWrite != 0 || all&nFile != 0 && all&wMake != 0 {
		s |= bFileWrite
	}
	// Running, unless it runs a payment or another thing of its own kind ("execute_payment").
	if all&wRun != 0 && (all&nCode != 0 || all&(nMoney|nMessage|nSecret) == 0) {
		s |= bCodeExec
	}
	// A place code runs, named with no verb of reading: "bash", "python_repl".
	if all&nCode != 0 && all&wRead == 0 && all&(wMake|wWrite|wDestroy) == 0 {
		s |= bCodeExec
	}
	return s
}

// Argument names, as snake_case. Strong ones say a category whatever the name says;
// weak ones only when the name and description say nothing.
var strongArgs = map[string]Set{
	"iban": bMoney, "amount": bMoney, "recipient_account": bMoney, "account_number": bMoney,
	"routing_number": bMoney, "card_number": bMoney, "bic": bMoney, "swift": bMoney,
	"payment_method": bMoney, "amount_cents": bMoney, "destination_account": bMoney,
	"to_account": bMoney, "from_account": bMoney,
	"command": bCodeExec, "cmd": bCodeExec, "code": bCodeExec, "script": bCodeExec,
	"shell_command": bCodeExec, "bash_command": bCodeExec, "python_code": bCodeExec,
	"password": bCredential, "new_password": bCredential, "api_key": bCredential,
	"otp": bCredential, "mfa_code": bCredential, "permission": bCredential,
	"permissions": bCredential, "new_role": bCredential,
}

var weakArgs = map[string]Set{
	"to": bOutbound, "recipient": bOutbound, "recipients": bOutbound, "cc": bOutbound,
	"bcc": bOutbound, "channel": bOutbound, "channel_id": bOutbound, "chat_id": bOutbound,
	"webhook_url": bOutbound, "phone_number": bOutbound, "to_email": bOutbound,
	"email_address": bOutbound, "thread_ts": bOutbound,
	"content": bFileWrite, "file_text": bFileWrite, "new_content": bFileWrite,
	"old_str": bFileWrite, "new_str": bFileWrite, "contents": bFileWrite,
	"sql": bCodeExec,
}

// argument returns the categories an argument name says, strongly and weakly.
func argument(name string) (strong, weak Set) {
	var buf [8]string
	ws := Words(name, MaxArg, buf[:0])
	key := strings.Join(ws, "_")
	return strongArgs[key], weakArgs[key]
}
