package main

import (
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// logFlags are --log-format and --log-level, which every long-running command takes, and
// the one way their logger is made.
type logFlags struct {
	format, level string
	cmd           *cobra.Command
}

var logLevels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

// register adds the flags, with the command's default level.
func (l *logFlags) register(cmd *cobra.Command, level string) {
	l.cmd = cmd
	f := cmd.Flags()
	f.StringVar(&l.format, "log-format", "text", "log lines as text (key=value) or json (one object a line, for log collectors)")
	f.StringVar(&l.level, "log-level", level, "least severe log lines written: debug, info, warn or error")
}

// logger builds the command's logger on w. verbose, when the command's own verbose flag
// is set, lowers the level to it unless --log-level was given.
func (l *logFlags) logger(w io.Writer, verbose *slog.Level) (*slog.Logger, error) {
	level, ok := logLevels[l.level]
	if !ok {
		return nil, fmt.Errorf("--log-level %q: expected debug, info, warn or error", l.level)
	}
	if verbose != nil && (l.cmd == nil || !l.cmd.Flags().Changed("log-level")) {
		level = min(level, *verbose)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: expected text or json", l.format)
}

// buildCommit is the VCS commit the binary was built from, as troy_build_info shows it.
func buildCommit() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}
