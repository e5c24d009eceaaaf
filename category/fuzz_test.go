package category_test

import (
	"strings"
	"testing"

	"github.com/troy-audit/troy/category"
)

// FuzzInfer reads any name, description and argument names: nothing panics, words are
// bounded, lower-case and without separators, and the same tool always gets the same set.
//
//	go test ./category -run XXX -fuzz FuzzInfer -fuzztime 2m
func FuzzInfer(f *testing.F) {
	f.Add("send_payment", "Sends money to an IBAN. Then logs.", "iban,amount")
	f.Add("HTTPRequestV2", "", "url")
	f.Add("rm-rf.dir/Path", strings.Repeat("delete ", 200), "")
	f.Add("\xff\xfe", "é.ß", "ＡＢＣ")
	f.Fuzz(func(t *testing.T, name, description, args string) {
		tool := category.Tool{Name: name, Description: description, Args: strings.Split(args, ",")}
		if a, b := category.Infer(tool), category.Infer(tool); a != b {
			t.Fatalf("%q: %v then %v", name, a, b)
		}
		words := category.Words(name, category.MaxName, nil)
		total := 0
		for _, w := range words {
			total += len(w)
			if w == "" || w != strings.ToLower(w) || strings.ContainsAny(w, "_-./ \t") {
				t.Fatalf("%q: word %q", name, w)
			}
		}
		if total > category.MaxName {
			t.Fatalf("%q: %d bytes of words from a limit of %d", name, total, category.MaxName)
		}
	})
}
