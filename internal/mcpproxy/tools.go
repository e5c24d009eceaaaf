package mcpproxy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/troy-audit/troy/reporter"
)

// toolPrints remembers each tool's fingerprint (its description and input schema) for one
// server: those of the last session, read from the data directory, and those seen in this
// one. A tool whose fingerprint differs from the one seen before is "changed": the
// description a user approved is not the one the model now reads.
type toolPrints struct {
	mu     sync.Mutex        // the sessions of an HTTP proxy share a server's prints
	path   string            // the server's file under DATA-DIR/mcp/
	loaded bool              // path has been read
	prints map[string]string // tool name -> fingerprint, the latest known
}

// toolFile is what a server's file holds.
type toolFile struct {
	Server string            `json:"server"`
	Tools  map[string]string `json:"tools"`
}

func newToolPrints(dataDir, server string) *toolPrints {
	return &toolPrints{path: filepath.Join(dataDir, "mcp", reporter.PathToken(server)+".json"), prints: map[string]string{}}
}

// fingerprint is a tool's description and input schema, hashed (map keys sorted by
// encoding/json, so equal schemas hash alike).
func fingerprint(tool map[string]any) string {
	b, _ := json.Marshal([]any{tool["description"], tool["inputSchema"]})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// observe compares a tools/list answer with what was known and remembers it, returning the
// names of the tools that changed, in the answer's order. The file is rewritten; an error
// reading or writing it is returned beside the comparison made without it.
func (t *toolPrints) observe(server string, tools []any) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var loadErr error
	if !t.loaded {
		t.loaded = true
		loadErr = t.load()
	}
	var changed []string
	for _, v := range tools {
		tool, _ := v.(map[string]any)
		name, _ := tool["name"].(string)
		fp := fingerprint(tool)
		if prev, ok := t.prints[name]; ok && prev != fp && !slices.Contains(changed, name) {
			changed = append(changed, name)
		}
		t.prints[name] = fp
	}
	return changed, errors.Join(loadErr, t.save(server))
}

func (t *toolPrints) load() error {
	b, err := os.ReadFile(t.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the tools seen before: %w", err)
	}
	var f toolFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%s: expected {\"server\":..., \"tools\":{name: fingerprint}}: %w", t.path, err)
	}
	for k, v := range f.Tools {
		t.prints[k] = v
	}
	return nil
}

// save writes the file whole, through a temporary file, so that a crash leaves the old one.
func (t *toolPrints) save(server string) error {
	b, err := json.MarshalIndent(toolFile{Server: server, Tools: t.prints}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(t.path), 0o755); err != nil {
		return fmt.Errorf("remember the server's tools: %w", err)
	}
	tmp := t.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("remember the server's tools: %w", err)
	}
	if err := os.Rename(tmp, t.path); err != nil {
		return fmt.Errorf("remember the server's tools: %w", err)
	}
	return nil
}
