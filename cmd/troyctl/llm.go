package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/joho/godotenv"
	openai "github.com/sashabaranov/go-openai"
	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/explainer"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/schemas"
)

// explainFlags configure the model that explains traces: flags first, then the
// environment (TROY_MODEL, OPENAI_BASE_URL, OPENAI_API_KEY), then a .env file in the
// working directory.
type explainFlags struct {
	cfg       explainer.Config
	noExplain bool
	noCache   bool
	dataDir   string
	cmd       *cobra.Command
	// endpoint is the model API that config resolved, named when every call fails.
	endpoint string
}

func (f *explainFlags) register(cmd *cobra.Command, withDataDir bool) {
	f.cmd = cmd
	fl := cmd.Flags()
	fl.BoolVar(&f.noExplain, "no-explain", false, "skip LLM explanations (policy evaluation and scoring only; no API key needed)")
	fl.StringVarP(&f.cfg.Model, "model", "m", explainer.DefaultModel, "model that explains steps (env TROY_MODEL)")
	fl.StringVar(&f.cfg.BaseURL, "base-url", "", "OpenAI-compatible API base URL, such as http://127.0.0.1:8080/v1 (env OPENAI_BASE_URL)")
	fl.StringVar(&f.cfg.APIKey, "api-key", "", "API key (env OPENAI_API_KEY)")
	fl.IntVar(&f.cfg.Concurrency, "llm-concurrency", 5, "model requests in flight at once, shared by every trace")
	fl.DurationVar(&f.cfg.Timeout, "llm-timeout", 60*time.Second, "time limit of one model request")
	fl.IntVar(&f.cfg.Retries, "llm-retries", 4, "retries of a request after a rate limit, a server error or a timeout")
	fl.IntVar(&f.cfg.MaxRequests, "llm-max-requests", 0, "model requests allowed in this run; further steps go unexplained (0: no limit)")
	fl.IntVar(&f.cfg.MaxTokens, "llm-max-tokens", 0, "tokens allowed in this run, prompts and replies (0: no limit)")
	fl.IntVar(&f.cfg.ContextChars, "llm-context", 16_000, "largest prompt in characters; longer step data is cut with a marker")
	fl.BoolVar(&f.noCache, "no-cache", false, "ask the model even when an identical question was answered before")
	fl.BoolVar(&f.cfg.NoRedact, "no-redact", false, "send step data to the model as it is, without replacing e-mails, card numbers, keys …")
	if withDataDir {
		fl.StringVar(&f.dataDir, "data-dir", ".troy", "directory that keeps the cache of model replies")
	}
}

// config resolves the model settings. It explains nothing, with the reason, when traces
// are not to be explained: --no-explain, or neither an API key nor a base URL anywhere.
func (f *explainFlags) config() (pipeline.Explain, error) {
	cfg := f.cfg
	if f.noExplain {
		return pipeline.Explain{Note: "--no-explain"}, nil
	}
	dotenv, err := godotenv.Read(".env")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return pipeline.Explain{}, fmt.Errorf(".env: %w", err)
	}
	pick := func(flag string, value *string, env string) {
		if f.cmd != nil && f.cmd.Flags().Changed(flag) {
			return
		}
		if v := os.Getenv(env); v != "" {
			*value = v
		} else if v := dotenv[env]; v != "" {
			*value = v
		}
	}
	pick("model", &cfg.Model, "TROY_MODEL")
	pick("base-url", &cfg.BaseURL, "OPENAI_BASE_URL")
	pick("api-key", &cfg.APIKey, "OPENAI_API_KEY")
	if cfg.APIKey == "" && cfg.BaseURL == "" {
		return pipeline.Explain{Note: "no API key: set OPENAI_API_KEY or --api-key, or --base-url for a local model"}, nil
	}
	if cfg.Retries == 0 {
		cfg.Retries = -1 // explicitly none; the explainer's zero means its default
	}
	f.endpoint = cfg.BaseURL
	if f.endpoint == "" {
		f.endpoint = openai.DefaultConfig("").BaseURL
	}
	return pipeline.Explain{Model: &cfg, NoCache: f.noCache}, nil
}

// modelFlagsSet says whether any model setting was given on the command line.
func (f *explainFlags) modelFlagsSet() bool {
	for _, name := range []string{"model", "base-url", "api-key", "llm-concurrency", "llm-max-requests", "llm-max-tokens"} {
		if f.cmd != nil && f.cmd.Flags().Changed(name) {
			return true
		}
	}
	return false
}

// explanationsLine says in one line whether and how the trace was explained.
func explanationsLine(info *schemas.AuditInfo) string {
	if info == nil || info.Explanations != schemas.ExplanationsOn || info.LLM == nil {
		note := ""
		if info != nil {
			note = info.ExplanationsNote
		}
		return fmt.Sprintf("Explanations: off (%s).", note)
	}
	u := info.LLM
	line := fmt.Sprintf("Explanations: on (%s: %d calls, %d from the cache, %d tokens)", u.Model, u.Calls, u.Cached, u.PromptTokens+u.CompletionTokens)
	if info.ExplanationsNote != "" {
		line += "; " + info.ExplanationsNote
	}
	return line + "."
}

// modelFailures tallies the model calls of a run's traces, so that a run whose
// explanations were asked for and all failed does not pass for a good one.
type modelFailures struct {
	answered, failed int
	note             string
}

func (m *modelFailures) add(info *schemas.AuditInfo) {
	if info == nil || info.Explanations != schemas.ExplanationsOn || info.LLM == nil {
		return
	}
	m.answered += info.LLM.Calls + info.LLM.Cached
	m.failed += info.LLM.Failed
	if info.LLM.Failed > 0 && m.note == "" {
		m.note = info.ExplanationsNote
	}
}

// err is the run's error when calls were made and none was answered: exit 4, naming the
// endpoint (the deployment's, with --nats).
func (m *modelFailures) err(f *explainFlags, nats bool) error {
	if m.failed == 0 || m.answered > 0 {
		return nil
	}
	endpoint := f.endpoint
	if nats {
		endpoint = "the deployment's model API"
	}
	return &exitCodeError{code: exitModelFailed, err: fmt.Errorf(
		"every model call to %s failed: %s; the reports were written without explanations (--no-explain audits without a model)",
		endpoint, m.note)}
}
