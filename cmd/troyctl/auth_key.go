package main

import (
	"crypto/ed25519"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/signing"
	"github.com/troy-audit/troy/reporter"
)

// signFlags choose the key that signs a one-shot command's reports: --signing-key, else
// TROY_SIGNING_KEY, else the user's config directory (created on first use).
type signFlags struct {
	path string
}

func (f *signFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.path, "signing-key", "", "Ed25519 key file that signs the reports (default troy/signing.key in the user config directory, created on first use)")
}

// keyPath says which key file the flags name, and whether the user named it.
func (f *signFlags) keyPath() (path string, explicit bool, err error) {
	if f.path != "" {
		return f.path, true, nil
	}
	p, err := signing.UserKey()
	return p, false, err
}

// signer loads (or creates) the key. A key the user named must work; the default one may
// be impossible (no home directory): the reports are then written unsigned, with a notice.
func (f *signFlags) signer(stderr io.Writer) (*reporter.Signer, error) {
	path, explicit, err := f.keyPath()
	var key ed25519.PrivateKey
	if err == nil {
		key, _, err = signing.LoadOrCreate(path)
	}
	if err != nil {
		if explicit {
			return nil, err
		}
		fmt.Fprintf(stderr, "troyctl: reports are not signed: %v\n", err)
		return nil, nil
	}
	return &reporter.Signer{Key: key, Version: buildVersion()}, nil
}

// localKey is the key of this machine that verify and public-key use: the data
// directory's when one is given (serve's), else the one-shot commands'. create makes the
// one-shot key when there is none yet.
func localKey(dataDir string, sf *signFlags, create bool) (ed25519.PrivateKey, string, error) {
	if dataDir != "" {
		path := signing.DataDirKey(dataDir)
		key, err := signing.Load(path)
		if err != nil {
			return nil, path, fmt.Errorf("%w (troyctl serve --data-dir %s creates it on first start)", err, dataDir)
		}
		return key, path, nil
	}
	path, _, err := sf.keyPath()
	if err != nil {
		return nil, "", err
	}
	if create {
		key, _, err := signing.LoadOrCreate(path)
		return key, path, err
	}
	key, err := signing.Load(path)
	if err != nil {
		return nil, path, fmt.Errorf("%w (troyctl audit creates it on first use; or give --public-key)", err)
	}
	return key, path, nil
}

func newAuthPublicKeyCmd(a *app) *cobra.Command {
	var (
		dataDir string
		asJSON  bool
		sf      signFlags
	)
	cmd := &cobra.Command{
		Use:   "public-key",
		Short: "Print the public key that verifies the reports this machine signs",
		Long: `Print the Ed25519 public key of the key that signs reports: serve's, kept in
DATA-DIR/auth/signing.key, with --data-dir; otherwise the one one-shot commands (audit,
batch) use (--signing-key, $TROY_SIGNING_KEY, or troy/signing.key in the user config
directory, created here when there is none yet).

Give the printed key to whoever checks reports: troyctl verify --public-key KEY FILE.`,
		Example: `  troyctl auth public-key
  troyctl auth public-key --data-dir /var/lib/troy > troy.pub
  troyctl auth public-key --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			key, path, err := localKey(dataDir, &sf, dataDir == "")
			if err != nil {
				return err
			}
			pub := key.Public().(ed25519.PublicKey)
			if asJSON {
				return reporter.EncodeJSON(a.stdout, map[string]string{
					"algorithm": "ed25519", "public_key": signing.FormatPublic(pub), "key_id": reporter.KeyID(pub), "key_file": path,
				})
			}
			fmt.Fprintln(a.stdout, signing.FormatPublic(pub))
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "serve's data directory: print the key of its reports")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the key, its id and its file as JSON")
	sf.register(cmd)
	return cmd
}
