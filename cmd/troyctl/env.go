package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/troy-audit/troy/internal/signing"
	"github.com/troy-audit/troy/internal/warehouse"
	"github.com/troy-audit/troy/sdk/agent"
)

// envDataDir stands for --data-dir; commands without the flag read it too.
const envDataDir = "TROY_DATA_DIR"

// envAnnotation marks a flag with the environment variables that stand for it, in order.
const envAnnotation = "troyctl_env"

// envBinding lets environment variables stand for a flag of every command that has it,
// except the commands in skip, where the flag means something else.
type envBinding struct {
	flag string
	vars []string
	skip []string // command paths, such as "troyctl replay"
}

// envBindings are the flags the environment may give: connection settings, which a
// deployment sets once for every command. The first variable set (not empty) wins; a
// flag on the command line beats them all.
func envBindings() []envBinding {
	return []envBinding{
		{flag: "nats", vars: []string{"TROY_NATS_URL", "NATS_URL"}},
		{flag: "data-dir", vars: []string{envDataDir}},
		// replay and diff re-evaluate with --policy when it is given: there it is a
		// choice per run, not a deployment's default.
		{flag: "policy", vars: []string{"TROY_POLICY"}, skip: []string{"troyctl replay", "troyctl diff"}},
		{flag: "creds", vars: []string{agent.EnvCreds}},
		{flag: "clickhouse", vars: []string{warehouse.EnvDSN}},
		{flag: "signing-key", vars: []string{signing.EnvKey}},
		{flag: "token", vars: []string{agent.EnvToken}},
	}
}

// bindEnv annotates the flags of cmd and its subcommands with their variables and names
// the variables in their help.
func bindEnv(cmd *cobra.Command, bindings []envBinding) {
	for _, b := range bindings {
		fl := cmd.Flags().Lookup(b.flag)
		if fl == nil || slices.Contains(b.skip, cmd.CommandPath()) {
			continue
		}
		if fl.Annotations == nil {
			fl.Annotations = map[string][]string{}
		}
		fl.Annotations[envAnnotation] = b.vars
		fl.Usage += " (env " + strings.Join(b.vars, ", then ") + ")"
	}
	for _, sub := range cmd.Commands() {
		bindEnv(sub, bindings)
	}
}

// applyEnv sets each annotated flag that the command line did not give from the first of
// its variables that is set. The flag then counts as given, as if it had been typed.
func applyEnv(cmd *cobra.Command, lookup func(string) (string, bool)) error {
	var err error
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if err != nil || fl.Changed {
			return
		}
		for _, name := range fl.Annotations[envAnnotation] {
			v, ok := lookup(name)
			if !ok || v == "" {
				continue
			}
			if setErr := cmd.Flags().Set(fl.Name, v); setErr != nil {
				err = fmt.Errorf("$%s (for --%s): %w", name, fl.Name, setErr)
			}
			return
		}
	})
	return err
}
