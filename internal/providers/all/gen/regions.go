package main

import (
	"bytes"
	"fmt"
	"regexp"
)

// regionFile is a hand-written file with generated regions.
type regionFile struct {
	path string
	// comment starts a line comment in the file's language: "#" or "<!--".
	comment string
	// regions are each region's content by name.
	regions map[string]string
}

// fill replaces the content of every region of old named in regions: the
// lines between "<comment> BEGIN generated: NAME" and "<comment> END
// generated: NAME" (the marker lines keep their indentation). A region in
// regions that old lacks is an error, so a marker deleted by hand is
// noticed.
func fill(old []byte, comment string, regions map[string]string) ([]byte, error) {
	out := old
	for name, content := range regions {
		begin := regexp.MustCompile(`(?m)^[ \t]*` + regexp.QuoteMeta(comment) + ` BEGIN generated: ` + regexp.QuoteMeta(name) + `\b.*\n`)
		end := regexp.MustCompile(`(?m)^[ \t]*` + regexp.QuoteMeta(comment) + ` END generated: ` + regexp.QuoteMeta(name) + `\b`)
		b := begin.FindIndex(out)
		if b == nil {
			return nil, fmt.Errorf("no %q line", comment+" BEGIN generated: "+name)
		}
		e := end.FindIndex(out[b[1]:])
		if e == nil {
			return nil, fmt.Errorf("no %q line after its BEGIN", comment+" END generated: "+name)
		}
		var buf bytes.Buffer
		buf.Write(out[:b[1]])
		buf.WriteString(content)
		buf.Write(out[b[1]+e[0]:])
		out = buf.Bytes()
	}
	return out, nil
}
