package pipeline

import (
	"log/slog"

	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/explainer"
)

// Explain says whether and how a model explains traces.
type Explain struct {
	// Model configures the model; nil explains nothing, and Note says why.
	Model *explainer.Config
	Note  string
	// NoCache asks the model even when an identical question was answered before.
	NoCache bool
}

// NewExplainer builds the explainer e asks for, keeping the model's replies in the bus's
// explanation cache unless e.NoCache; log receives its warnings. It returns nil when e
// explains nothing.
func NewExplainer(b *bus.Bus, e Explain, log *slog.Logger) *explainer.Explainer {
	if e.Model == nil {
		return nil
	}
	cfg := *e.Model
	if !e.NoCache {
		// A deployment without the bucket explains without a cache.
		if cache := b.ExplanationCache(); cache != nil {
			cfg.Cache = cache
		}
	}
	cfg.Logger = log
	return explainer.New(cfg)
}
