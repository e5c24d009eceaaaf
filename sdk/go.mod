module github.com/troy-audit/troy/sdk

go 1.26.8

require (
	github.com/nats-io/nats.go v1.55.0
	github.com/troy-audit/troy/event v0.0.0-00010101000000-000000000000
	github.com/troy-audit/troy/schemas v0.0.0-00010101000000-000000000000
)

require (
	github.com/goccy/go-json v0.12.0 // indirect
	github.com/klauspost/compress v1.20.0 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	golang.org/x/crypto v0.57.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)

replace (
	github.com/troy-audit/troy/event => ../event
	github.com/troy-audit/troy/schemas => ../schemas
)
