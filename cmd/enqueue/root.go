package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/buildinfo"
)

const rootLong = `enqueue publishes reelq jobs, follows their results and operates the queue.

  enqueue [publish] [flags] [FILE|-]    publish jobs from FILE (JSONL, JSON or CSV), stdin, or flags
  enqueue status JOB... | --batch B     where jobs are: phase, run, attempts, provider task, note
  enqueue results [--batch B] [--follow] [--download DIR]
  enqueue cancel JOB... | --batch B     cancel queued or running jobs
  enqueue retry JOB... | --batch B      a new run of finished jobs that did not succeed
  enqueue resolve JOB --task ID | --resubmit
  enqueue pause PROVIDER | resume PROVIDER
  enqueue stats [--watch 2s]            queues, running vs cap, pauses, batches, spend vs budget
  enqueue budget set|list               spending limits per batch or per provider
  enqueue dlq list|redrive              dead letters
  enqueue hooks list|redrive            result webhooks never delivered (docs/webhooks.md)
  enqueue providers                     the providers: prefix, enabled, limits, recovery

Jobs without an id get one from their content (provider, input, metadata), so
publishing a file again, or an edited copy, never pays twice and never drops a
job. See docs/cli.md.

Exit codes:
  0    success
  1    the command could not do all of its work (a job not published, a cancel
       or download that failed, an unknown job id)
  2    bad usage or bad input; nothing was done (invalid lines, an id already
       known with other content, an estimate over --max-cost)
  3    with --wait: a job failed or was cancelled
  4    --timeout reached before every result arrived
  5    NATS could not be reached, or the reelq streams are missing (no worker
       has started)
  130  interrupted (Ctrl-C); re-running the same command is safe

Environment:
  NATS_URL (default: the nats context's, else nats://127.0.0.1:4222),
  NATS_CREDS, NATS_NKEY, NATS_USER, NATS_PASSWORD, NATS_TOKEN, NATS_CA,
  NATS_CERT, NATS_KEY, NATS_TIMEOUT, NATS_INBOX_PREFIX: as the nats CLI names
  them, and winning over the context's settings.
  NATS_CONTEXT (or --context): the nats CLI context to connect with (default:
  the one 'nats context select' chose).
  REELQ_CONSUMER_PREFIX: the start of the names of the consumers enqueue
  creates (default reelq_client).
  Provider options the input rules and prices depend on (SAMSAR_VIDEO_MODELS,
  SEGMIND_PRICE_PER_RUN, ...) are read as the workers read them.
  REELQ_ARCHIVE_S3_ENDPOINT, REELQ_ARCHIVE_S3_REGION, REELQ_ARCHIVE_S3_PATH_STYLE,
  REELQ_ARCHIVE_S3_DISABLE_TLS and the AWS credentials: for results --download
  from an S3 archive.
  NO_COLOR: no colour (colour is used only on a terminal anyway).`

func (a *app) rootCommand() *cobra.Command {
	po := &publishOpts{}
	root := &cobra.Command{
		Use:           "enqueue [flags] [FILE|-]",
		Short:         "Publish reelq jobs and operate the queue",
		Long:          rootLong,
		Version:       buildinfo.Version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return []cobra.Completion{"jsonl", "ndjson", "json", "csv"}, cobra.ShellCompDirectiveFilterFileExt
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !po.fromFlags(cmd) {
				return cmd.Help()
			}
			if err := a.unknownCommand(cmd, args); err != nil {
				return err
			}
			return a.publish(cmd, po, args)
		},
	}
	root.SuggestionsMinimumDistance = 2
	// Before InitDefaultCompletionCmd, which captures the output writer.
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetVersionTemplate("enqueue {{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: fmt.Errorf("%w\nrun '%s --help' for usage", err, cmd.CommandPath())}
	})
	root.PersistentFlags().StringVarP(&a.server, "server", "s", "", "NATS server list (default: NATS_URL, else the nats context's, else nats://127.0.0.1:4222)")
	root.PersistentFlags().StringVar(&a.context, "context", "", "nats CLI context to connect with (default: NATS_CONTEXT, else the one `nats context select` chose)")
	addPublishFlags(root, po)

	root.AddCommand(a.publishCommand(), a.statusCommand(), a.resultsCommand(), a.cancelCommand(), a.retryCommand(),
		a.resolveCommand(), a.pauseCommand(), a.resumeCommand(), a.statsCommand(), a.budgetCommand(), a.dlqCommand(),
		a.hooksCommand(), a.providersCommand(), versionCommand())
	root.InitDefaultCompletionCmd()
	// Every command's usage errors exit 2.
	for _, c := range root.Commands() {
		wrapArgs(c)
	}
	return root
}

// versionCommand prints what --version prints.
func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version (as --version does)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			buildinfo.Print(cmd.OutOrStdout(), "enqueue")
			return nil
		},
	}
}

// wrapArgs makes argument-count errors usage errors (exit 2), in c and
// its subcommands.
func wrapArgs(c *cobra.Command) {
	if c.Args != nil {
		check := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("%s: %w\nrun '%s --help' for usage", cmd.CommandPath(), err, cmd.CommandPath())}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
}

var commandLike = regexp.MustCompile(`^[a-z][a-z-]*$`)

// unknownCommand reports a positional FILE that is no file but looks like
// a command ("statsx") as an unknown command, with suggestions.
func (a *app) unknownCommand(root *cobra.Command, args []string) error {
	if len(args) == 0 || args[0] == "-" || !commandLike.MatchString(args[0]) {
		return nil
	}
	if _, err := os.Stat(args[0]); err == nil || !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], root.CommandPath())
	if s := root.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	msg += fmt.Sprintf("\n\nrun '%s --help' for the commands (a job file must exist: %s does not)", root.CommandPath(), args[0])
	return &exitError{code: exitUsage, err: errors.New(msg)}
}

// completeProviders completes provider names.
func completeProviders(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return reelq.Providers, cobra.ShellCompDirectiveNoFileComp
}

func providerFlagCompletion(cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("provider", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return reelq.Providers, cobra.ShellCompDirectiveNoFileComp
	})
}

func outputFlag(cmd *cobra.Command, o *output) {
	*o = "table"
	cmd.Flags().VarP(o, "output", "o", "output format: table or json")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]cobra.Completion{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
}

// checkProvider refuses an unknown provider name (exit 2).
func checkProvider(p string) error {
	if !reelq.KnownProvider(p) {
		return exitf(exitUsage, "unknown provider %q (one of %s)", p, strings.Join(reelq.Providers, ", "))
	}
	return nil
}

// defaultBatch is the batch label of a file's jobs: its base name without
// the extension, sanitised to [A-Za-z0-9_-] ("" for stdin).
func defaultBatch(path string) string {
	if path == "" || path == "-" {
		return ""
	}
	base := filepath.Base(path)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	var b strings.Builder
	for _, r := range base {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.Trim(b.String(), "_")
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}
