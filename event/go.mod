module github.com/troy-audit/troy/event

go 1.26.8

require (
	github.com/goccy/go-json v0.12.0
	github.com/troy-audit/troy/schemas v0.0.0-00010101000000-000000000000
)

replace github.com/troy-audit/troy/schemas => ../schemas
