package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/reporter"
)

// Set at build time, for example:
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=$(git rev-parse HEAD) -X main.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" ./cmd/troyctl
//
// Unset, they come from the build's VCS settings (go build in a git checkout).
var (
	version   = ""
	commit    = ""
	buildDate = ""
)

// buildInfo is what `troyctl version --json` prints.
type buildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildDate string `json:"build_date"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

func newVersionCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the troyctl version (--json: version, commit, build date, Go version)",
		Long: `Print the troyctl version. --json prints version, commit, build_date, go_version and
platform as one JSON object. The build sets them with -ldflags -X main.version=…,
main.commit=… and main.buildDate=…; without them they come from the VCS settings Go
records when it builds in a git checkout.`,
		Example: "  troyctl version\n  troyctl version --json\n  troyctl --version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			bi := readBuildInfo()
			if asJSON {
				return reporter.EncodeJSON(a.stdout, bi)
			}
			fmt.Fprintf(a.stdout, "troyctl %s\n", versionLine(bi))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print version, commit, build_date, go_version and platform as JSON")
	return cmd
}

// readBuildInfo resolves the build's identity: what -ldflags set, else the VCS settings
// of runtime/debug, else "unknown".
func readBuildInfo() buildInfo {
	var vcs map[string]string
	mainVersion := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		vcs = make(map[string]string, len(info.Settings))
		for _, s := range info.Settings {
			vcs[s.Key] = s.Value
		}
		mainVersion = info.Main.Version
	}
	return resolveBuildInfo(version, commit, buildDate, mainVersion, vcs)
}

// resolveBuildInfo chooses each field: the value set at build time first, then what Go
// recorded (the module version, vcs.revision with "-dirty" for vcs.modified, vcs.time).
func resolveBuildInfo(ver, rev, date, mainVersion string, vcs map[string]string) buildInfo {
	bi := buildInfo{Version: ver, Commit: rev, BuildDate: date,
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi.Commit == "" {
		bi.Commit = vcs["vcs.revision"]
		if bi.Commit != "" && vcs["vcs.modified"] == "true" {
			bi.Commit += "-dirty"
		}
	}
	if bi.BuildDate == "" {
		bi.BuildDate = vcs["vcs.time"]
	}
	if bi.Version == "" && mainVersion != "" && mainVersion != "(devel)" {
		bi.Version = mainVersion
	}
	if bi.Version == "" {
		bi.Version = "dev"
		if r := vcs["vcs.revision"]; len(r) >= 12 {
			bi.Version = "dev-" + r[:12]
		}
	}
	for _, s := range []*string{&bi.Commit, &bi.BuildDate} {
		if *s == "" {
			*s = "unknown"
		}
	}
	return bi
}

// buildVersion is the version that reports are signed with.
func buildVersion() string { return readBuildInfo().Version }

// versionLine is the version as `troyctl version` and `troyctl --version` print it.
func versionLine(bi buildInfo) string {
	return fmt.Sprintf("%s (%s, %s)", bi.Version, bi.GoVersion, bi.Platform)
}
