package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// defaultHealthURL is /healthz at serve's --metrics address as deploy/Dockerfile and
// docker-compose.yml set it.
const defaultHealthURL = "http://127.0.0.1:9464/healthz"

func newHealthCmd(a *app) *cobra.Command {
	var (
		url     string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check that a troyctl serve is healthy (for container health checks and probes)",
		Long: `health asks a troyctl serve's /healthz (served on its --metrics address) whether it is
healthy: NATS connected, a default policy loaded and every component running. It prints one
line and exits 0 when healthy, 1 when not (the line says why: every problem /healthz names,
or why it could not be asked).

troy's container image has no shell and no HTTP client, so this is the command for
docker-compose.yml's health checks and Kubernetes exec probes.`,
		Example: `  troyctl health
  troyctl health --url http://127.0.0.1:9464/healthz --timeout 2s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return fmt.Errorf("--timeout %s: expected a duration above 0, such as 3s", timeout)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			line, err := checkHealth(ctx, url)
			if err != nil {
				return fmt.Errorf("not healthy: %w", err)
			}
			fmt.Fprintln(a.stdout, line)
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", defaultHealthURL, "the /healthz URL of a troyctl serve (its --metrics address)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up and report not healthy after this long")
	return cmd
}

// checkHealth asks url and returns the line to print when healthy; an error says, in one
// line, why not.
func checkHealth(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("--url %q: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return "", fmt.Errorf("%s: no answer within the timeout", url)
		}
		return "", fmt.Errorf("%s: %w", url, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	// /healthz answers a small JSON object; more than this is not troy's.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("%s: reading the answer: %w", url, err)
	}
	var status struct {
		Status   string   `json:"status"`
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal(body, &status); err != nil {
		return "", fmt.Errorf("%s: HTTP %d, not troy's /healthz (expected a JSON object with a status)", url, resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK || status.Status != "ok" {
		why := strings.Join(status.Problems, "; ")
		if why == "" {
			why = "status " + status.Status
		}
		return "", fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, why)
	}
	return "healthy: " + url, nil
}
