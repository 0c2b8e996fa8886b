package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/reelq/reelq/internal/queue"
)

// lineJob is a job read from input, with where it came from.
type lineJob struct {
	Line int
	Job  queue.Job
}

// lineError is a rejected input line.
type lineError struct {
	Line int
	Err  error
}

func (e lineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// readJobs reads jobs in format "jsonl", "json" or "csv" ("" guesses from
// the first non-blank byte: '[' JSON array, '{' JSONL or a single JSON
// object, anything else CSV). Lines that do not parse are returned as
// lineErrors; nothing is dropped silently.
func readJobs(r io.Reader, format string) ([]lineJob, []lineError, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	if format == "" {
		format = sniff(br)
	}
	switch format {
	case "jsonl":
		return readJSONL(br)
	case "json":
		return readJSON(br)
	case "csv":
		return readCSV(br)
	}
	return nil, nil, fmt.Errorf("unknown format %q (want jsonl, json or csv)", format)
}

func sniff(br *bufio.Reader) string {
	for i := 1; ; i++ {
		b, err := br.Peek(i)
		if err != nil || len(b) < i {
			return "jsonl"
		}
		switch c := b[i-1]; c {
		case ' ', '\t', '\r', '\n', 0xEF, 0xBB, 0xBF:
			continue
		case '[':
			return "json"
		case '{':
			return "jsonl"
		default:
			return "csv"
		}
	}
}

func readJSONL(br *bufio.Reader) ([]lineJob, []lineError, error) {
	var (
		jobs []lineJob
		bad  []lineError
	)
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if line == 1 {
			text = bytes.TrimPrefix(text, []byte("\xef\xbb\xbf"))
		}
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		j, err := queue.DecodeJob(text)
		if err != nil {
			bad = append(bad, lineError{line, err})
			continue
		}
		jobs = append(jobs, lineJob{line, j})
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	return jobs, bad, nil
}

// readJSON reads one job object or an array of them; "line" numbers are
// 1-based array positions.
func readJSON(br *bufio.Reader) ([]lineJob, []lineError, error) {
	data, err := io.ReadAll(br)
	if err != nil {
		return nil, nil, err
	}
	data = bytes.TrimSpace(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
	if len(data) > 0 && data[0] == '{' {
		j, err := queue.DecodeJob(data)
		if err != nil {
			return nil, []lineError{{1, err}}, nil
		}
		return []lineJob{{1, j}}, nil, nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, nil, fmt.Errorf("not a JSON array of jobs: %w", err)
	}
	var (
		jobs []lineJob
		bad  []lineError
	)
	for i, raw := range raws {
		j, err := queue.DecodeJob(raw)
		if err != nil {
			bad = append(bad, lineError{i + 1, err})
			continue
		}
		jobs = append(jobs, lineJob{i + 1, j})
	}
	return jobs, bad, nil
}

// readCSV reads a header row, then one job per row. Columns: provider
// (required), id, batch, input (a JSON object), metadata (a JSON object),
// and any number of input.<field> columns, whose cells become input fields
// (numbers and booleans as such, everything else as strings).
func readCSV(br *bufio.Reader) ([]lineJob, []lineError, error) {
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("csv header: %w", err)
	}
	for i := range header {
		header[i] = strings.TrimSpace(strings.TrimPrefix(header[i], "\xef\xbb\xbf"))
	}
	known := map[string]bool{"provider": true, "id": true, "batch": true, "input": true, "metadata": true}
	hasProvider := false
	for _, h := range header {
		if h == "provider" {
			hasProvider = true
		}
		if !known[h] && !strings.HasPrefix(h, "input.") {
			return nil, nil, fmt.Errorf("csv header: unknown column %q (want provider, id, batch, input, metadata or input.<field>)", h)
		}
	}
	if !hasProvider {
		return nil, nil, errors.New("csv header: a provider column is required")
	}
	var (
		jobs []lineJob
		bad  []lineError
	)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				bad = append(bad, lineError{pe.Line, err})
				continue
			}
			return nil, nil, err
		}
		j, err := csvJob(header, rec)
		if err != nil {
			bad = append(bad, lineError{line, err})
			continue
		}
		jobs = append(jobs, lineJob{line, j})
	}
	return jobs, bad, nil
}

func csvJob(header, rec []string) (queue.Job, error) {
	if len(rec) != len(header) {
		return queue.Job{}, fmt.Errorf("%d cells, header has %d", len(rec), len(header))
	}
	var j queue.Job
	fields := map[string]any{}
	for i, h := range header {
		v := rec[i]
		switch {
		case h == "provider":
			j.Provider = strings.TrimSpace(v)
		case h == "id":
			j.ID = strings.TrimSpace(v)
		case h == "batch":
			j.Batch = strings.TrimSpace(v)
		case h == "input":
			if strings.TrimSpace(v) != "" {
				if err := json.Unmarshal([]byte(v), &fields); err != nil {
					return j, fmt.Errorf("input column is not a JSON object: %v", err)
				}
			}
		case h == "metadata":
			if strings.TrimSpace(v) != "" {
				if !json.Valid([]byte(v)) {
					return j, errors.New("metadata column is not valid JSON")
				}
				j.Metadata = json.RawMessage(v)
			}
		default:
			if v != "" {
				fields[strings.TrimPrefix(h, "input.")] = cell(v)
			}
		}
	}
	in, err := json.Marshal(fields)
	if err != nil {
		return j, err
	}
	j.Input = in
	return j, nil
}

func cell(v string) any {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return f
	}
	if b, err := strconv.ParseBool(v); err == nil && (v == "true" || v == "false") {
		return b
	}
	if (strings.HasPrefix(v, "[") || strings.HasPrefix(v, "{")) && json.Valid([]byte(v)) {
		return json.RawMessage(v)
	}
	return v
}
