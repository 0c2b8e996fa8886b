package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/spf13/cobra"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
)

func (a *app) resultsCommand() *cobra.Command {
	var (
		batch, provider, dir string
		follow               bool
		o                    output
	)
	cmd := &cobra.Command{
		Use:   "results [--batch B] [--provider P] [--follow] | --download DIR [--batch B]",
		Short: "Print result events as JSON lines, or download archived outputs",
		Long: `Print the result events kept in RESULTS (one per job run) as JSON lines, oldest
first; --follow keeps printing new ones until interrupted.

--download DIR writes every archived output (the copy a worker made before
publishing the result) as DIR/<job_id>-<n>.<ext>, verifying its size and
SHA-256; files already complete are skipped, so running it again resumes.
Outputs without an archived copy are listed (with the worker's archive_error),
and the command exits 1 if any output could not be downloaded. Copies in an S3
archive need REELQ_ARCHIVE_S3_ENDPOINT (empty: AWS), REELQ_ARCHIVE_S3_REGION,
REELQ_ARCHIVE_S3_PATH_STYLE, REELQ_ARCHIVE_S3_DISABLE_TLS and AWS credentials as
AWS tools take them (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE...).`,
		Example: `  enqueue results --batch demo > demo-results.jsonl
  enqueue results --follow --provider samsar
  enqueue results --download ./outputs --batch demo`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if provider != "" {
				if err := checkProvider(provider); err != nil {
					return err
				}
			}
			if dir != "" && follow {
				return exitf(exitUsage, "--download and --follow do not go together")
			}
			c, err := a.connect(ctx)
			if err != nil {
				return err
			}
			if dir != "" {
				return a.download(ctx, c, dir, batch, provider, o)
			}
			enc := json.NewEncoder(a.stdout)
			for d, err := range c.Results(ctx, reelq.ResultsOptions{Provider: provider, Follow: follow}) {
				if err != nil {
					if ctx.Err() != nil && follow {
						return silent(exitInterrupted) // Ctrl-C ends --follow: 130, as for every command
					}
					return err
				}
				r := d.Result
				if batch != "" && r.Batch != batch {
					continue
				}
				if err := enc.Encode(r); err != nil {
					return err
				}
			}
			if follow && ctx.Err() != nil {
				return silent(exitInterrupted)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&batch, "batch", "", "only this batch's results")
	cmd.Flags().StringVar(&provider, "provider", "", "only this provider's results")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new results until interrupted")
	cmd.Flags().StringVar(&dir, "download", "", "download the archived outputs into this directory")
	_ = cmd.MarkFlagDirname("download")
	outputFlag(cmd, &o)
	providerFlagCompletion(cmd)
	return cmd
}

// downloadItem is one output to download.
type downloadItem struct {
	id   string
	n    int
	out  reelq.Output
	path string
}

type downloadReport struct {
	Dir        string           `json:"dir"`
	Outputs    int              `json:"outputs"`
	Downloaded int              `json:"downloaded"`
	Skipped    int              `json:"skipped"`
	Bytes      int64            `json:"bytes"`
	Failed     []downloadFailed `json:"failed,omitempty"`
	// NotArchived are outputs without an archived copy.
	NotArchived []downloadFailed `json:"not_archived,omitempty"`
}

type downloadFailed struct {
	ID    string `json:"id"`
	N     int    `json:"n"`
	URL   string `json:"url,omitempty"`
	Error string `json:"error"`
}

func (a *app) download(ctx context.Context, c *reelq.Client, dir, batch, provider string, o output) error {
	// The last run of each job that has outputs.
	latest := map[string]*reelq.Result{}
	var order []string
	for d, err := range c.Results(ctx, reelq.ResultsOptions{Provider: provider}) {
		if err != nil {
			return err
		}
		r := d.Result
		if batch != "" && r.Batch != batch {
			continue
		}
		if len(r.Outputs) == 0 {
			continue
		}
		prev, ok := latest[r.ID]
		if !ok {
			order = append(order, r.ID)
		}
		if !ok || r.Run >= prev.Run {
			latest[r.ID] = r
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return exitf(exitUsage, "--download: %v", err)
	}
	rep := downloadReport{Dir: dir}
	var items []downloadItem
	for _, id := range order {
		r := latest[id]
		for i, out := range r.Outputs {
			rep.Outputs++
			if out.Archive == nil {
				why := out.ArchiveError
				if why == "" {
					why = "no archived copy (archiving was off in the worker)"
				}
				rep.NotArchived = append(rep.NotArchived, downloadFailed{ID: id, N: i + 1, URL: out.URL, Error: why})
				continue
			}
			ct := out.Archive.ContentType
			if ct == "" {
				ct = out.ContentType
			}
			items = append(items, downloadItem{id: id, n: i + 1, out: out, path: filepath.Join(dir, inspect.OutputFile(id, i+1, ct))})
		}
	}
	s3 := a.s3Options()
	pb := newBar(a.stderr, a.errTTY)
	pb.phase("downloading", "files", len(items))
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		work = make(chan downloadItem)
	)
	for range min(4, max(1, len(items))) {
		wg.Go(func() {
			for it := range work {
				skipped, err := a.ins.DownloadOutput(ctx, *it.out.Archive, it.path, s3)
				mu.Lock()
				switch {
				case err != nil:
					rep.Failed = append(rep.Failed, downloadFailed{ID: it.id, N: it.n, Error: err.Error()})
				case skipped:
					rep.Skipped++
				default:
					rep.Downloaded++
					rep.Bytes += it.out.Archive.Size
				}
				mu.Unlock()
				pb.add(1)
			}
		})
	}
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		work <- it
	}
	close(work)
	wg.Wait()
	pb.clear()
	if ctx.Err() != nil {
		fmt.Fprintf(a.stderr, "interrupted: %d downloaded, %d already complete; running the same command again resumes\n", rep.Downloaded, rep.Skipped)
		return silent(exitInterrupted)
	}
	if o.json() {
		if err := a.writeJSON(rep); err != nil {
			return err
		}
	} else {
		for _, f := range rep.NotArchived {
			fmt.Fprintf(a.stderr, "%s output %d: not archived: %s\n", f.ID, f.N, f.Error)
		}
		for _, f := range rep.Failed {
			fmt.Fprintf(a.stderr, "%s output %d: %s\n", f.ID, f.N, f.Error)
		}
		fmt.Fprintf(a.stdout, "%s into %s: %s downloaded (%s), %s already complete", plural(rep.Outputs, "output", "outputs"), dir,
			commas(rep.Downloaded), byteSize(rep.Bytes), commas(rep.Skipped))
		if n := len(rep.NotArchived); n > 0 {
			fmt.Fprintf(a.stdout, ", %s without an archived copy", commas(n))
		}
		if n := len(rep.Failed); n > 0 {
			fmt.Fprintf(a.stdout, ", %s failed", commas(n))
		}
		fmt.Fprintln(a.stdout)
	}
	if n := len(rep.Failed) + len(rep.NotArchived); n > 0 {
		return exitf(exitFailure, "%s could not be downloaded", plural(n, "output", "outputs"))
	}
	return nil
}

// s3Options reads the S3 archive settings the worker takes, or nil when
// none is set (copies in S3 then need REELQ_ARCHIVE_S3_ENDPOINT or AWS).
func (a *app) s3Options() *inspect.S3Options {
	o := &inspect.S3Options{Endpoint: a.env["REELQ_ARCHIVE_S3_ENDPOINT"], Region: a.env["REELQ_ARCHIVE_S3_REGION"]}
	o.PathStyle, _ = strconv.ParseBool(a.env["REELQ_ARCHIVE_S3_PATH_STYLE"])
	o.DisableTLS, _ = strconv.ParseBool(a.env["REELQ_ARCHIVE_S3_DISABLE_TLS"])
	return o
}

func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
