package category

import (
	"slices"
	"strings"
	"testing"
)

func TestWords(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"send_email", "send email"},
		{"sendEmail", "send email"},
		{"SendEmail", "send email"},
		{"HTTPRequest", "http request"},
		{"getHTTPResponseCode", "get http response code"},
		{"fs.write-file", "fs write file"},
		{"github/create_pull_request", "github create pull request"},
		{"enable2FA", "enable2 fa"},
		{"enable_2fa", "enable 2fa"},
		{"  __x__  ", "x"},
		{"Überweisung_senden", "überweisung senden"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := strings.Join(Words(tt.in, MaxName, nil), " "); got != tt.want {
			t.Errorf("Words(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWordsIsBounded(t *testing.T) {
	long := strings.Repeat("send_", 10_000)
	if n := len(Words(long, 1<<20, nil)); n != maxWords {
		t.Errorf("%d words, want at most %d", n, maxWords)
	}
	if got := Words("abcdef", 3, nil); !slices.Equal(got, []string{"abc"}) {
		t.Errorf("Words cut at 3 bytes = %q", got)
	}
}

func TestParse(t *testing.T) {
	for _, n := range All() {
		s, ok := Parse(n)
		if !ok || !slices.Equal(s.Names(), []string{n}) {
			t.Errorf("Parse(%q) = %v, %v", n, s, ok)
		}
	}
	if _, ok := Parse("payments"); ok {
		t.Error("Parse accepted an unknown name")
	}
}

// tool is a case: a tool as agents name it, and the categories a reader would give it.
type tool struct {
	name string
	desc string
	args string // argument names, space-separated
	want string // categories, space-separated, in the order of All
}

// tuning are the names the tables were written and adjusted against: tools of the MCP
// reference servers (GitHub, Slack, filesystem), Gmail, Stripe's agent toolkit, banking
// and workspace demos of agent benchmarks, LangChain's tools, shells and clouds.
var tuning = []tool{
	// GitHub
	{name: "create_or_update_file", want: "file_write"},
	{name: "push_files", want: "outbound file_write"},
	{name: "search_repositories", want: "read"},
	{name: "get_file_contents", want: "read"},
	{name: "list_commits", want: "read"},
	{name: "add_issue_comment", want: "outbound"},
	{name: "create_issue", want: ""},
	{name: "fork_repository", want: ""},
	{name: "add_collaborator", want: "credential"},
	{name: "delete_file", want: "destructive"},
	// Slack
	{name: "slack_list_channels", want: "read"},
	{name: "slack_post_message", want: "outbound"},
	{name: "slack_reply_to_thread", want: "outbound"},
	{name: "slack_get_channel_history", want: "read"},
	{name: "slack_get_users", want: "read"},
	{name: "send_direct_message", want: "outbound"},
	{name: "invite_user_to_slack", want: "outbound credential"},
	{name: "remove_user_from_slack", want: "credential destructive"},
	// filesystem
	{name: "read_file", want: "read"},
	{name: "read_multiple_files", want: "read"},
	{name: "write_file", want: "file_write"},
	{name: "edit_file", want: "file_write"},
	{name: "create_directory", want: "file_write"},
	{name: "list_directory", want: "read"},
	{name: "directory_tree", want: "read"},
	{name: "move_file", want: "file_write"},
	{name: "search_files", want: "read"},
	{name: "get_file_info", want: "read"},
	{name: "append_to_file", want: "file_write"},
	// Gmail
	{name: "send_email", want: "outbound"},
	{name: "GmailSendMessage", want: "outbound"},
	{name: "search_emails", want: "read"},
	{name: "read_email", want: "read"},
	{name: "delete_email", want: "destructive"},
	// Stripe
	{name: "create_payment_link", want: "money"},
	{name: "create_refund", want: "money"},
	{name: "list_customers", want: "read"},
	{name: "retrieve_balance", want: "read"},
	{name: "list_payment_intents", want: "read"},
	{name: "create_invoice", want: "money"},
	// banking
	{name: "send_money", want: "outbound money"},
	{name: "send_payment", want: "outbound money"},
	{name: "transfer_funds", want: "money"},
	{name: "get_balance", want: "read"},
	{name: "get_most_recent_transactions", want: "read"},
	{name: "update_password", want: "credential"},
	{name: "update_user_info", want: "credential"},
	{name: "pay_invoice", want: "money"},
	// shells and code
	{name: "bash", want: "code_exec"},
	{name: "terminal", want: "code_exec"},
	{name: "execute_command", want: "code_exec"},
	{name: "run_shell_command", want: "code_exec"},
	{name: "python_repl", want: "code_exec"},
	{name: "code_interpreter", want: "code_exec"},
	{name: "run_terminal_cmd", want: "code_exec"},
	// LangChain and the web
	{name: "requests_get", want: "read"},
	{name: "requests_post", want: "outbound"},
	{name: "tavily_search_results_json", want: "read"},
	{name: "sql_db_list_tables", want: "read"},
	{name: "browser_navigate", want: "read"},
	{name: "get_webpage", want: "read"},
	// clouds, databases, accounts
	{name: "drop_table", want: "destructive"},
	{name: "terminate_instances", want: "destructive"},
	{name: "kubectl_delete", want: "destructive"},
	{name: "create_access_key", want: "credential"},
	{name: "rotate_api_key", want: "credential"},
	{name: "reset_password", want: "credential"},
	{name: "grant_role", want: "credential"},
	{name: "delete_user", want: "credential destructive"},
	{name: "git_push", want: "outbound"},
	// names that say nothing: the description and the arguments do
	{name: "tool_7", desc: "Sends an SMS message to a phone number. Costs one credit.", want: "outbound"},
	{name: "acme_action", desc: "Transfer money between two accounts.", want: "money"},
	{name: "helper", args: "command timeout", want: "code_exec"},
	{name: "do_it", args: "to subject body", want: "outbound"},
	{name: "process", args: "iban amount", want: "money"},
	{name: "list_messages", args: "channel limit", want: "read"},
}

// heldOut were written with the tuning cases and never used to adjust the tables: their
// accuracy is the honest measure.
var heldOut = []tool{
	{name: "create_pull_request", want: ""},
	{name: "merge_pull_request", want: ""},
	{name: "list_issues", want: "read"},
	{name: "slack_add_reaction", want: ""},
	{name: "slack_get_user_profile", want: "read"},
	{name: "list_allowed_directories", want: "read"},
	{name: "draft_email", want: ""},
	{name: "GmailSearch", want: "read"},
	{name: "GmailGetMessage", want: "read"},
	{name: "create_customer", want: ""},
	{name: "finalize_invoice", want: "money"},
	{name: "schedule_transaction", want: "money"},
	{name: "get_iban", want: "read"},
	{name: "share_file", want: "outbound"},
	{name: "create_file", want: "file_write"},
	{name: "search_files_by_filename", want: "read"},
	{name: "send_channel_message", want: "outbound"},
	{name: "post_webpage", want: "outbound"},
	{name: "shell", want: "code_exec"},
	{name: "exec_python", want: "code_exec"},
	{name: "file_delete", want: "destructive"},
	{name: "copy_file", want: "file_write"},
	{name: "truncate_table", want: "destructive"},
	{name: "revoke_token", want: "credential"},
	{name: "buy_stock", want: "money"},
	{name: "issue_refund", want: "money"},
	{name: "wire_transfer", want: "money"},
	{name: "wikipedia", want: ""},
	{name: "duckduckgo_search", want: "read"},
	{name: "fetch", want: "read"},
	{name: "purge_cache", want: "destructive"},
	{name: "changeUserRole", want: "credential"},
	{name: "uploadDocument", want: "outbound"},
	{name: "notify_customer", want: "outbound"},
	{name: "run_python_code", want: "code_exec"},
	{name: "wipe_device", want: "destructive"},
	{name: "mkdir", want: "file_write"},
	{name: "enable_2fa", want: "credential"},
	{name: "helper2", desc: "Execute arbitrary shell commands on the host.", want: "code_exec"},
	{name: "svc", desc: "Deletes every record in the given table", want: "destructive"},
}

func (c tool) infer() []string {
	return Infer(Tool{Name: c.name, Description: c.desc, Args: strings.Fields(c.args)}).Names()
}

// accuracy runs the cases and returns the share whose categories are exactly right.
func accuracy(t *testing.T, cases []tool) float64 {
	t.Helper()
	right := 0
	for _, c := range cases {
		got := strings.Join(c.infer(), " ")
		if got == c.want {
			right++
		} else {
			t.Logf("%s: got [%s], want [%s]", c.name, got, c.want)
		}
	}
	return float64(right) / float64(len(cases))
}

func TestInferAccuracy(t *testing.T) {
	tune := accuracy(t, tuning)
	held := accuracy(t, heldOut)
	t.Logf("exact categories: %.0f%% of %d tuning names, %.0f%% of %d held-out names", 100*tune, len(tuning), 100*held, len(heldOut))
	if tune < 0.95 {
		t.Errorf("tuning accuracy %.2f, want at least 0.95", tune)
	}
	if held < 0.80 {
		t.Errorf("held-out accuracy %.2f, want at least 0.80", held)
	}
}

func BenchmarkInfer(b *testing.B) {
	t := Tool{Name: "github.create_or_update_file", Description: "Create or update a single file in a GitHub repository. Requires push access.", Args: []string{"owner", "repo", "path", "content", "message", "branch"}}
	b.ReportAllocs()
	for b.Loop() {
		if Infer(t) == 0 {
			b.Fatal("no categories")
		}
	}
}
