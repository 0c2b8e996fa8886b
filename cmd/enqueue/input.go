package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/reelq/reelq"
)

// maxLine is the longest JSONL line read (a job is at most
// reelq.MaxJobBytes; a longer line is reported, not read into memory).
const maxLine = 16 << 20

// lineJob is a job read from input, with the line it starts on.
type lineJob struct {
	Line int
	Job  reelq.Job
}

// lineError is a rejected line, worded for the person who wrote it.
type lineError struct {
	Line int
	Msg  string
	// Whole says Msg names the line itself ("line 7 is longer ...").
	Whole bool
}

func (e lineError) String() string {
	if e.Whole {
		return e.Msg
	}
	if e.Line == 0 {
		return "job: " + e.Msg
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// errNotJobs is a file in none of the formats.
type errNotJobs struct{ name, why string }

func (e *errNotJobs) Error() string {
	s := e.name + " is not JSONL, JSON or CSV"
	if e.why != "" {
		s += " (" + e.why + ")"
	}
	return s + "; give --format jsonl|json|csv to read it as one of them"
}

// readJobs reads jobs from r in format ("" detects it from name's
// extension and the content). Lines that cannot be jobs are returned as
// lineErrors; the error is for input that cannot be read at all.
func readJobs(r io.Reader, name, format string) ([]lineJob, []lineError, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if format == "" {
		f, err := detectFormat(br, name)
		if err != nil {
			return nil, nil, err
		}
		format = f
	}
	switch format {
	case "jsonl", "ndjson":
		return readJSONL(br)
	case "json":
		return readJSON(br)
	case "csv":
		return readCSV(br)
	}
	return nil, nil, exitf(exitUsage, "--format %q: want jsonl, json or csv", format)
}

const bom = "\xef\xbb\xbf"

// detectFormat picks the format from the extension, else from the first
// bytes: '[' JSON, '{' JSONL (or one JSON object over several lines), '#'
// a JSONL comment, a header with a provider column CSV. Binary data is
// none of them.
func detectFormat(br *bufio.Reader, name string) (string, error) {
	if name == "-" {
		name = "stdin"
	}
	head, err := br.Peek(64 << 10)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return "", err
	}
	if binary(head) {
		return "", &errNotJobs{name: name, why: "it holds binary data"}
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jsonl", ".ndjson":
		return "jsonl", nil
	case ".json":
		return "json", nil
	case ".csv":
		return "csv", nil
	}
	text := bytes.TrimLeft(bytes.TrimPrefix(head, []byte(bom)), " \t\r\n")
	if len(text) == 0 {
		return "jsonl", nil // empty: "no jobs"
	}
	switch text[0] {
	case '[':
		return "json", nil
	case '#':
		return "jsonl", nil
	case '{':
		first, _, _ := bytes.Cut(text, []byte("\n"))
		if json.Valid(bytes.TrimSpace(first)) {
			return "jsonl", nil
		}
		return "json", nil
	}
	first, _, _ := bytes.Cut(text, []byte("\n"))
	if rec, err := csv.NewReader(bytes.NewReader(first)).Read(); err == nil {
		for _, h := range rec {
			if strings.TrimSpace(h) == "provider" {
				return "csv", nil
			}
		}
	}
	return "", &errNotJobs{name: name}
}

// binary reports data that is no text: NUL bytes, or more than one byte
// in a hundred that is not UTF-8 (a rune cut at the end of the peeked
// prefix does not count). A few bad bytes in a text file are named by
// line and field when the jobs are validated.
func binary(b []byte) bool {
	if bytes.IndexByte(b, 0) >= 0 {
		return true
	}
	size, bad := len(b), 0
	for len(b) >= utf8.UTFMax {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			bad++
		}
		b = b[n:]
	}
	return bad*100 > size
}

// readJSONL reads one job per line; blank lines and lines starting with
// '#' are skipped.
func readJSONL(br *bufio.Reader) ([]lineJob, []lineError, error) {
	var (
		jobs []lineJob
		bad  []lineError
		buf  []byte
	)
	for line := 1; ; line++ {
		buf = buf[:0]
		tooLong := false
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			if !tooLong {
				if len(buf)+len(chunk) > maxLine {
					tooLong, buf = true, buf[:0]
				} else {
					buf = append(buf, chunk...)
				}
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("line %d: %w", line, err)
		}
		switch {
		case tooLong:
			bad = append(bad, lineError{Line: line, Msg: fmt.Sprintf("line %d is longer than the %d MiB line limit (a job is at most %d KiB)", line, maxLine>>20, reelq.MaxJobBytes>>10), Whole: true})
		default:
			text := bytes.TrimSpace(buf)
			if line == 1 {
				text = bytes.TrimPrefix(text, []byte(bom))
			}
			if len(text) > 0 && text[0] != '#' {
				j, msg := decodeJob(text)
				if msg != "" {
					bad = append(bad, lineError{Line: line, Msg: msg})
				} else {
					jobs = append(jobs, lineJob{line, j})
				}
			}
		}
		if err != nil { // io.EOF
			return jobs, bad, nil
		}
	}
}

// decodeJob decodes one job object; the message says what is wrong.
func decodeJob(text []byte) (reelq.Job, string) {
	switch text[0] {
	case '{':
	case '[':
		return reelq.Job{}, "a JSON array, not a job object (a JSONL file has one job object per line; a JSON array of jobs goes in a .json file)"
	default:
		if json.Valid(text) {
			return reelq.Job{}, "not a job: a job is a JSON object with provider and input"
		}
		return reelq.Job{}, "not valid JSON (a job is a JSON object with provider and input)"
	}
	j, err := reelq.DecodeJob(text)
	if err != nil {
		return j, reason(err)
	}
	return j, ""
}

// reason is an error's text without the "reelq: invalid job: " every
// validation error starts with.
func reason(err error) string {
	return strings.TrimPrefix(err.Error(), reelq.ErrInvalidJob.Error()+": ")
}

// readJSON reads one job object, an array of them, or a sequence of
// objects; line numbers are where each one starts.
func readJSON(br *bufio.Reader) ([]lineJob, []lineError, error) {
	data, err := io.ReadAll(br)
	if err != nil {
		return nil, nil, err
	}
	data = bytes.TrimPrefix(data, []byte(bom))
	lineAt := lineCounter(data)
	dec := json.NewDecoder(bytes.NewReader(data))
	var (
		jobs []lineJob
		bad  []lineError
	)
	start := func() int {
		off := int(dec.InputOffset())
		for off < len(data) && strings.IndexByte(" \t\r\n,", data[off]) >= 0 {
			off++
		}
		return off
	}
	inArray := false
	if text := bytes.TrimLeft(data, " \t\r\n"); len(text) > 0 && text[0] == '[' {
		if _, err := dec.Token(); err != nil {
			return nil, nil, exitf(exitUsage, "not valid JSON: %v", err)
		}
		inArray = true
	}
	for {
		if inArray && !dec.More() {
			break
		}
		at := start()
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) && !inArray {
			break
		}
		if err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return jobs, append(bad, lineError{Line: lineAt(int(se.Offset)), Msg: "not valid JSON: " + strings.TrimPrefix(se.Error(), "invalid character ")}), nil
			}
			return jobs, append(bad, lineError{Line: lineAt(at), Msg: "not valid JSON: the input is cut short"}), nil
		}
		line := lineAt(at)
		j, msg := decodeJob(bytes.TrimSpace(raw))
		if msg != "" {
			bad = append(bad, lineError{Line: line, Msg: msg})
			continue
		}
		jobs = append(jobs, lineJob{line, j})
	}
	return jobs, bad, nil
}

// lineCounter returns a function from byte offsets (non-decreasing) to
// 1-based line numbers.
func lineCounter(data []byte) func(off int) int {
	line, pos := 1, 0
	return func(off int) int {
		off = min(off, len(data))
		if off < pos {
			return 1 + bytes.Count(data[:off], []byte("\n"))
		}
		line += bytes.Count(data[pos:off], []byte("\n"))
		pos = off
		return line
	}
}

var csvColumns = []string{"provider", "id", "batch", "priority", "fairness_key", "input", "metadata"}

// readCSV reads a header row, then one job per row. Columns: provider,
// id, batch, priority, fairness_key, input (a JSON object), metadata (JSON)
// and input.<field> columns, whose cells become input fields: a cell that
// reads as a number, true/false or a JSON array or object becomes one;
// anything else is a string. Empty cells are left out.
func readCSV(br *bufio.Reader) ([]lineJob, []lineError, error) {
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, exitf(exitUsage, "CSV header: %v", err)
	}
	seen := map[string]bool{}
	for i := range header {
		h := strings.TrimSpace(strings.TrimPrefix(header[i], bom))
		header[i] = h
		known := strings.HasPrefix(h, "input.") && len(h) > len("input.")
		for _, c := range csvColumns {
			known = known || h == c
		}
		if !known {
			return nil, nil, exitf(exitUsage, "CSV header: unknown column %q (columns: %s, input.<field>)", h, strings.Join(csvColumns, ", "))
		}
		if seen[h] {
			return nil, nil, exitf(exitUsage, "CSV header: column %q appears twice", h)
		}
		seen[h] = true
	}
	if !seen["provider"] {
		return nil, nil, exitf(exitUsage, "CSV header: a provider column is required")
	}
	var (
		jobs []lineJob
		bad  []lineError
	)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return jobs, bad, nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				bad = append(bad, csvError(pe))
				continue
			}
			return nil, nil, err
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		j, msg := csvJob(header, rec)
		if msg != "" {
			bad = append(bad, lineError{Line: line, Msg: msg})
			continue
		}
		jobs = append(jobs, lineJob{line, j})
	}
}

// csvError words a CSV syntax error. A quote left open swallows the rows
// after it up to where the reader gave up (the next stray quote, or the
// end of the file): every line it took is named, so none is dropped
// unnoticed, with --skip-invalid too.
func csvError(pe *csv.ParseError) lineError {
	if pe.Line <= pe.StartLine || !errors.Is(pe.Err, csv.ErrQuote) {
		return lineError{Line: pe.StartLine, Msg: "CSV: " + pe.Err.Error()}
	}
	return lineError{Line: pe.StartLine, Whole: true, Msg: fmt.Sprintf("lines %d-%d: CSV: the quote of a cell in the row of line %d is never closed: "+
		"lines %d to %d were read as one row, invalid, and none of them is published; close the quote, or double a quote inside a cell (\"\")",
		pe.StartLine, pe.Line, pe.StartLine, pe.StartLine, pe.Line)}
}

func csvJob(header, rec []string) (reelq.Job, string) {
	var j reelq.Job
	if len(rec) != len(header) {
		return j, fmt.Sprintf("%d cells; the header has %d columns", len(rec), len(header))
	}
	fields := map[string]any{}
	for i, h := range header {
		v := rec[i]
		if !utf8.ValidString(v) {
			// Encoding the cell would replace the bytes silently, and a
			// provider would be paid for text nobody wrote.
			return j, fmt.Sprintf("column %s is not valid UTF-8 (byte %d of the cell)", h, invalidAt(v)+1)
		}
		t := strings.TrimSpace(v)
		switch h {
		case "provider":
			j.Provider = t
		case "id":
			j.ID = t
		case "batch":
			j.Batch = t
		case "priority":
			j.Priority = reelq.Priority(t)
		case "fairness_key":
			j.FairnessKey = t
		case "input":
			if t != "" {
				var in map[string]json.RawMessage
				if err := json.Unmarshal([]byte(t), &in); err != nil {
					return j, "the input column is not a JSON object"
				}
				for k, raw := range in {
					fields[k] = raw
				}
			}
		case "metadata":
			if t != "" {
				if !json.Valid([]byte(t)) {
					return j, "the metadata column is not valid JSON"
				}
				j.Metadata = json.RawMessage(t)
			}
		default:
			if v != "" {
				k := strings.TrimPrefix(h, "input.")
				fields[k] = cellValue(v)
			}
		}
	}
	in, err := json.Marshal(fields) // keys sorted: the digest is canonical anyway
	if err != nil {
		return j, err.Error()
	}
	j.Input = in
	return j, ""
}

// invalidAt is the offset of the first byte of s that is not UTF-8.
func invalidAt(s string) int {
	for i, r := range s {
		if r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD") {
			return i
		}
	}
	return len(s)
}

func cellValue(v string) any {
	t := strings.TrimSpace(v)
	if _, err := strconv.ParseFloat(t, 64); err == nil && json.Valid([]byte(t)) {
		return json.Number(t) // as written: the digest keeps numbers as written
	}
	switch t {
	case "true":
		return true
	case "false":
		return false
	}
	if (strings.HasPrefix(t, "[") || strings.HasPrefix(t, "{")) && json.Valid([]byte(t)) {
		return json.RawMessage(t)
	}
	return v
}
