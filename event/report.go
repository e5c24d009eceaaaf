package event

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/troy-audit/troy/schemas"
)

// ReportPrefix is the subject of the report service (a NATS micro service named
// troy-reports, run by the reporter): followed by the agent's subject token, so that NATS
// permissions can let an agent read its own reports only.
const ReportPrefix = "troy.report"

// ReportSubject is where the reports of agent's traces are asked for.
func ReportSubject(agent string) string { return ReportPrefix + "." + schemas.Token(agent) }

// The files of a trace's report.
const (
	ReportMarkdown = "report.md"
	ReportJSON     = "audit.json"
)

// ReportRequest asks for a part of one file of the report of a finished run of a trace:
// the latest run when Run is empty. A report may be larger than a message, so it comes in
// parts, each asked for from its offset.
type ReportRequest struct {
	Agent  string `json:"agent_name"`
	Trace  string `json:"trace_id"`
	Run    string `json:"run,omitempty"`
	File   string `json:"file"` // ReportMarkdown or ReportJSON
	Offset int    `json:"offset,omitempty"`
}

// ReportReply is a part of a report file: Data from the request's offset, of a file of
// Size bytes, of run Run.
type ReportReply struct {
	Run  string `json:"run"`
	Size int    `json:"size"`
	Data []byte `json:"data"`
}

// MaxReportSize bounds the size of a report file an answer may announce: a larger one is
// refused before anything is kept for it.
const MaxReportSize = 1 << 30

// FetchReport asks for every part of one report file with request (a request-reply over
// NATS to ReportSubject(req.Agent)) and returns the file and the run it is of. The run is
// fixed by the first answer, so that a later run finishing meanwhile cannot mix two.
func FetchReport(ctx context.Context, request func(ctx context.Context, subject string, data []byte) ([]byte, error), req ReportRequest) ([]byte, string, error) {
	var out []byte
	size := -1
	for req.Offset = 0; ; {
		data, err := json.Marshal(req)
		if err != nil {
			return nil, "", err
		}
		raw, err := request(ctx, ReportSubject(req.Agent), data)
		if err != nil {
			return nil, "", err
		}
		var rep ReportReply
		if err := json.Unmarshal(raw, &rep); err != nil {
			return nil, "", fmt.Errorf("report of trace %q: %w", req.Trace, err)
		}
		if rep.Size > MaxReportSize {
			return nil, "", fmt.Errorf("report of trace %q: %d bytes, over the %d-byte limit", req.Trace, rep.Size, MaxReportSize)
		}
		if req.Run != "" && rep.Run != req.Run || size >= 0 && rep.Size != size ||
			rep.Size < req.Offset+len(rep.Data) || len(rep.Data) == 0 && req.Offset < rep.Size {
			return nil, "", fmt.Errorf("report of trace %q: an answer out of step (run %q, %d bytes at %d of %d)", req.Trace, rep.Run, len(rep.Data), req.Offset, rep.Size)
		}
		if size < 0 {
			// Parts are appended as they come: what is kept grows with the data received,
			// not with the size announced.
			size, out = rep.Size, make([]byte, 0, min(rep.Size, 8<<20))
		}
		out = append(out, rep.Data...)
		req.Run, req.Offset = rep.Run, req.Offset+len(rep.Data)
		if req.Offset >= rep.Size {
			return out, rep.Run, nil
		}
	}
}
