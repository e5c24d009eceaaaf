package main

import (
	"fmt"
	"os"

	tea "charm.land/bubbletea/v2"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/internal/replay"
)

func newReplayCmd(a *app) *cobra.Command {
	var (
		policy        string
		noInteractive bool
	)
	cmd := &cobra.Command{
		Use:   "replay AUDIT.json",
		Short: "Walk through a finished audit step by step, or re-evaluate it with another policy",
		Long: `Open an audit.json (written by troyctl audit, by troyctl serve, or by the Python tool)
in a terminal UI: each step with its input, output, metadata, explanation and
violations; the trace summary (s), all violations (v), a step's full detail (d);
→/n and ←/p to move, j/k to the next or previous violation, g/G first and last,
/ to search descriptions and inputs, ? for help, q to quit. A timeline shows every
step, marked by its worst violation.

--policy evaluates the trace again with another policy (no model is asked) and shows
the violations added and removed at each step and the old and new risk scores.
--no-interactive (or a stdout that is not a terminal) prints the whole replay as plain
text in a stable order, for pipes and CI.`,
		Example: `  troyctl replay logs/2026-11-24/audit.json
  troyctl replay audit.json --policy soc2
  troyctl replay audit.json --policy new-policy.json --no-interactive > replay.txt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			audit, err := ingest.LoadAudit(args[0])
			if err != nil {
				return err
			}
			s := replay.NewSession(audit, args[0])
			if policy != "" {
				c, err := loadPolicy(a, policy)
				if err != nil {
					return err
				}
				s.Reevaluate(c, policy)
			}
			out, isFile := a.stdout.(*os.File)
			interactive := !noInteractive && isFile && term.IsTerminal(int(out.Fd())) && isTerminal(a.stdin)
			if !interactive {
				return replay.Print(a.stdout, s)
			}
			w, h, err := term.GetSize(int(out.Fd()))
			if err != nil {
				w, h = 100, 30
			}
			p := tea.NewProgram(replay.NewModel(s, w, h), tea.WithContext(cmd.Context()), tea.WithInput(a.stdin), tea.WithOutput(a.stdout))
			if _, err := p.Run(); err != nil && cmd.Context().Err() == nil {
				return fmt.Errorf("replay: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&policy, "policy", "", "evaluate the trace again with this policy file or template, and show what changed")
	cmd.Flags().BoolVar(&noInteractive, "no-interactive", false, "print the whole replay to stdout instead of opening the UI")
	return cmd
}
