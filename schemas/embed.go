package schemas

import _ "embed"

// TraceSchema is the JSON Schema (draft 2020-12) of a trace file.
//
//go:embed trace.schema.json
var TraceSchema string

// PolicySchema is the JSON Schema (draft 2020-12) of a policy file.
//
//go:embed policy.schema.json
var PolicySchema string
