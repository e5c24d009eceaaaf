package main

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/signing"
	"github.com/troy-audit/troy/reporter"
)

// verifyOutput is one file's result, as --json prints it.
type verifyOutput struct {
	File   string              `json:"file"`
	Valid  bool                `json:"valid"`
	Error  string              `json:"error,omitempty"`
	Signed *reporter.Statement `json:"signed,omitempty"`
}

func newVerifyCmd(a *app) *cobra.Command {
	var (
		pubArg, dataDir string
		asJSON          bool
		sf              signFlags
	)
	cmd := &cobra.Command{
		Use:   "verify FILE...",
		Short: "Check that audit.json and report.md files are as troy signed them",
		Long: `Check the Ed25519 signature of audit.json and report.md files: that the file was
written by troy with the expected key and not changed since (a violation, the risk
score, a step, anything in it). It prints what was signed: the trace, the policy
revision, troy's version, the time and the key's id.

The expected key is --public-key (ed25519:BASE64 as 'troyctl auth public-key' prints
it, or a file holding it), else this machine's own: serve's with --data-dir, otherwise
the one audit and batch sign with (--signing-key, $TROY_SIGNING_KEY, or the user config
directory). An audit.json also checks the report.md beside it, when there is one.

Exit 0: every file is valid. Exit 3: a file was altered, carries no signature, or was
signed by another key (one line on stderr names the file and what failed). Exit 2: a
usage error or a file that cannot be read (3 wins when both happen).`,
		Example: `  troyctl verify logs/2026-11-23/audit.json
  troyctl verify .troy/reports/bot/run-42/audit.json .troy/reports/bot/run-42/report.md --data-dir .troy
  troyctl verify audit.json --public-key ed25519:9c1P0nJ0...=
  troyctl verify out/*/audit.json --public-key troy.pub --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &exitCodeError{code: exitUsage, err: errors.New("verify: expected at least one FILE (an audit.json or report.md)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, source, err := verifyKey(pubArg, dataDir, &sf)
			if err != nil {
				return &exitCodeError{code: exitUsage, err: err}
			}
			if !asJSON {
				fmt.Fprintf(a.stdout, "Key %s (id %s), %s.\n", signing.FormatPublic(pub), reporter.KeyID(pub), source)
			}
			var outs []verifyOutput
			code := exitOK
			for _, f := range args {
				out, fail := verifyFile(f, pub)
				outs = append(outs, out)
				switch {
				case fail == nil:
				case errors.As(fail, new(*reporter.VerifyError)):
					code = exitFound
				default:
					code = max(code, exitUsage) // an altered file (3) wins
				}
				if fail != nil {
					fmt.Fprintf(a.stderr, "troyctl: %s: %v\n", f, fail)
				}
				if !asJSON && out.Signed != nil && fail == nil {
					printStatement(a, f, out.Signed)
				}
			}
			if asJSON {
				if err := reporter.EncodeJSON(a.stdout, outs); err != nil {
					return err
				}
			}
			if code != exitOK {
				return &exitCodeError{code: code}
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitCodeError{code: exitUsage, err: fmt.Errorf("verify: %w (see troyctl verify --help)", err)}
	})
	cmd.Flags().StringVar(&pubArg, "public-key", "", "the expected signer: ed25519:BASE64, or a file holding it (default: this machine's key)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "serve's data directory: expect the key of its reports")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each file's result and what was signed as JSON")
	sf.register(cmd)
	return cmd
}

// verifyKey resolves the expected public key and says where it came from.
func verifyKey(pubArg, dataDir string, sf *signFlags) (ed25519.PublicKey, string, error) {
	if pubArg != "" {
		pub, err := signing.ParsePublic(pubArg)
		return pub, "given with --public-key", err
	}
	key, path, err := localKey(dataDir, sf, false)
	if err != nil {
		return nil, "", err
	}
	return key.Public().(ed25519.PublicKey), "the local key in " + path, nil
}

// verifyFile checks one file. A *reporter.VerifyError means it is not what was signed;
// another error, that it could not be read.
func verifyFile(path string, pub ed25519.PublicKey) (verifyOutput, error) {
	out := verifyOutput{File: path}
	data, err := os.ReadFile(path)
	if err != nil {
		out.Error = err.Error()
		return out, err
	}
	var st reporter.Statement
	if bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")) {
		st, err = reporter.VerifyAudit(data, pub)
		if err == nil && st.Report != "" {
			err = checkBeside(filepath.Join(filepath.Dir(path), "report.md"), st.Report)
		}
	} else {
		st, err = reporter.VerifyReport(data, pub)
	}
	if st.Format != "" {
		out.Signed = &st
	}
	if err != nil {
		out.Error = err.Error()
		return out, err
	}
	out.Valid = true
	return out, nil
}

// checkBeside checks the report.md next to an audit.json against the digest the audit
// signed, when there is such a file.
func checkBeside(md, digest string) error {
	data, err := os.ReadFile(md)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if got := reporter.ReportDigest(data); got != digest {
		return &reporter.VerifyError{Reason: fmt.Sprintf("the report.md beside it was altered: its SHA-256 is %s, signed %s", got, digest)}
	}
	return nil
}

func printStatement(a *app, file string, st *reporter.Statement) {
	policy := st.PolicyID
	if st.Policy != "" {
		policy = strings.TrimSpace(policy + " sha256 " + st.Policy)
	}
	fmt.Fprintf(a.stdout, "%s: valid %s\n", file, st.File)
	fmt.Fprintf(a.stdout, "  trace %s (agent %s), policy %s\n", st.TraceID, st.AgentName, policy)
	fmt.Fprintf(a.stdout, "  troy %s, signed %s, key %s\n", st.Version, st.SignedAt, st.KeyID)
	if st.RiskScore != nil {
		fmt.Fprintf(a.stdout, "  risk score %d, %d violation(s), steps sha256 %s\n", *st.RiskScore, *st.Violations, st.Steps)
	}
}
