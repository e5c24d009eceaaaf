package event

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// replies answers a report request from a list of replies, one per call.
func replies(t *testing.T, reps ...ReportReply) func(context.Context, string, []byte) ([]byte, error) {
	i := 0
	return func(_ context.Context, subject string, _ []byte) ([]byte, error) {
		if subject != ReportSubject("bot") {
			t.Fatalf("asked on %s", subject)
		}
		if i >= len(reps) {
			return nil, errors.New("no more answers")
		}
		i++
		return json.Marshal(reps[i-1])
	}
}

// A report comes whole from its parts; answers that do not fit together, or that announce
// a file past the limit, are refused before anything is kept for them.
func TestFetchReport(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reps    []ReportReply
		want    string // the file, or the error's text
		wantErr bool
	}{
		{"one part", []ReportReply{{Run: "r1", Size: 3, Data: []byte("abc")}}, "abc", false},
		{"two parts", []ReportReply{{Run: "r1", Size: 5, Data: []byte("abc")}, {Run: "r1", Size: 5, Data: []byte("de")}}, "abcde", false},
		{"another run meanwhile", []ReportReply{{Run: "r1", Size: 5, Data: []byte("abc")}, {Run: "r2", Size: 5, Data: []byte("de")}}, "out of step", true},
		{"the size changes", []ReportReply{{Run: "r1", Size: 5, Data: []byte("abc")}, {Run: "r1", Size: 6, Data: []byte("de")}}, "out of step", true},
		{"more data than the size", []ReportReply{{Run: "r1", Size: 2, Data: []byte("abc")}}, "out of step", true},
		{"no data before the end", []ReportReply{{Run: "r1", Size: 2}}, "out of step", true},
		{"a negative size", []ReportReply{{Run: "r1", Size: -1}}, "out of step", true},
		{"over the limit", []ReportReply{{Run: "r1", Size: MaxReportSize + 1, Data: []byte("a")}}, "over the", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, run, err := FetchReport(context.Background(), replies(t, tc.reps...), ReportRequest{Agent: "bot", Trace: "t", File: ReportJSON})
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil || string(got) != tc.want || run != "r1" {
				t.Fatalf("%q run %q, %v; want %q", got, run, err, tc.want)
			}
		})
	}
}

// Whatever a responder answers, FetchReport returns or fails; it keeps no more than the
// data it received.
func FuzzFetchReport(f *testing.F) {
	f.Add([]byte(`{"run":"r","size":3,"data":"YWJj"}`))
	f.Add([]byte(`{"run":"r","size":1073741824,"data":"YQ=="}`))
	f.Add([]byte(`{"size":-5}`))
	f.Fuzz(func(t *testing.T, answer []byte) {
		calls := 0
		request := func(context.Context, string, []byte) ([]byte, error) {
			if calls++; calls > 64 {
				return nil, errors.New("enough")
			}
			return answer, nil
		}
		got, _, err := FetchReport(context.Background(), request, ReportRequest{Agent: "bot", Trace: "t", File: ReportJSON})
		if err == nil && len(got) > 64*len(answer) {
			t.Fatalf("%d bytes from %d answers of %d bytes", len(got), calls, len(answer))
		}
	})
}
