package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mattn/go-runewidth"
)

// ANSI colours, used only on a terminal without NO_COLOR.
const (
	red    = "31"
	green  = "32"
	yellow = "33"
	bold   = "1"
	dim    = "2"
)

func colorize(code, s string) string { return "\033[" + code + "m" + s + "\033[0m" }

// printable makes text that came from elsewhere (a provider's error, a
// held reason, an output URL) safe to print on a terminal: line breaks
// and tabs become spaces; other control characters (escape sequences),
// Unicode bidirectional overrides and invalid UTF-8 are shown as escapes
// (\x1b, \u202e) instead of acting on the terminal.
func printable(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && strings.HasPrefix(s[i:], "\xef\xbf\xbd"):
			b.WriteRune(r) // a real U+FFFD
		case r == utf8.RuneError:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&b, "\\x%02x", r)
		case (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// cell is one table cell with an optional colour.
type cell struct {
	text  string
	color string
}

// table prints aligned columns; widths are measured in terminal cells on
// the plain text (a CJK character or an emoji takes two, a combining mark
// none), so neither colours nor wide prompts misalign them.
type table struct {
	header []string
	rows   [][]cell
}

func (t *table) add(cells ...cell) {
	for i := range cells {
		cells[i].text = printable(cells[i].text)
	}
	t.rows = append(t.rows, cells)
}

// addText adds a row of uncoloured cells.
func (t *table) addText(cells ...string) {
	row := make([]cell, len(cells))
	for i, c := range cells {
		row[i] = cell{text: c}
	}
	t.add(row...)
}

func (t *table) write(w io.Writer, color bool) {
	widths := make([]int, len(t.header))
	for i, h := range t.header {
		widths[i] = runewidth.StringWidth(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			if i < len(widths) {
				widths[i] = max(widths[i], runewidth.StringWidth(c.text))
			}
		}
	}
	var b strings.Builder
	line := func(cells []cell) {
		b.Reset()
		for i, c := range cells {
			text := c.text
			if i < len(cells)-1 {
				text += strings.Repeat(" ", widths[i]-runewidth.StringWidth(c.text)+2)
			}
			if color && c.color != "" {
				// Colour the text, not the padding.
				text = colorize(c.color, c.text) + text[len(c.text):]
			}
			b.WriteString(text)
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	hdr := make([]cell, len(t.header))
	for i, h := range t.header {
		hdr[i] = cell{text: h}
		if color {
			hdr[i].color = bold
		}
	}
	line(hdr)
	for _, r := range t.rows {
		line(r)
	}
}

// bar is a progress line on stderr, drawn only on a terminal. Its rate is
// the phase's count over the phase's elapsed time, shown once a second has
// passed, so a first burst (a window of acknowledgements arriving
// together) never reads as a million jobs per second.
type bar struct {
	w       io.Writer
	on      bool
	mu      sync.Mutex
	label   string
	unit    string
	total   int // 0: unknown
	n       int
	start   time.Time
	drawn   time.Time
	visible bool
	stop    chan struct{} // ends the ticker that keeps the clock moving
}

func newBar(w io.Writer, on bool) *bar { return &bar{w: w, on: on} }

// phase starts a new phase (publishing, then waiting) with its total.
func (b *bar) phase(label, unit string, total int) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.label, b.unit, b.total, b.n, b.start = label, unit, total, 0, time.Now()
	b.drawLocked(true)
	if b.on && b.stop == nil {
		// Redraw every second, so elapsed time and rate move while no
		// item completes.
		b.stop = make(chan struct{})
		go func(stop <-chan struct{}) {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					b.mu.Lock()
					if b.visible {
						b.drawLocked(true)
					}
					b.mu.Unlock()
				}
			}
		}(b.stop)
	}
}

// add counts k more done.
func (b *bar) add(k int) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += k
	b.drawLocked(b.total > 0 && b.n >= b.total)
}

// clear removes the line (before a summary is printed).
func (b *bar) clear() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stop != nil {
		close(b.stop)
		b.stop = nil
	}
	if b.on && b.visible {
		fmt.Fprint(b.w, "\r\033[K")
		b.visible = false
	}
}

func (b *bar) drawLocked(force bool) {
	if !b.on {
		return
	}
	now := time.Now()
	if !force && now.Sub(b.drawn) < 100*time.Millisecond {
		return
	}
	b.drawn = now
	fmt.Fprint(b.w, "\r\033[K"+b.render(now))
	b.visible = true
}

// render is the bar's text at now.
func (b *bar) render(now time.Time) string {
	var s strings.Builder
	s.WriteString(b.label)
	elapsed := now.Sub(b.start)
	if b.total > 0 {
		const width = 30
		fill := min(width, b.n*width/b.total)
		fmt.Fprintf(&s, " [%s%s] %s/%s %3d%%", strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
			commas(b.n), commas(b.total), b.n*100/b.total)
	} else {
		fmt.Fprintf(&s, " %s %s", commas(b.n), b.unit)
	}
	if elapsed >= time.Second && b.n > 0 {
		rate := float64(b.n) / elapsed.Seconds()
		fmt.Fprintf(&s, "  %s %s/s", rateText(rate), b.unit)
		if b.total > 0 && b.n < b.total {
			eta := time.Duration(float64(b.total-b.n) / rate * float64(time.Second))
			fmt.Fprintf(&s, "  ETA %s", eta.Round(time.Second))
		}
	}
	fmt.Fprintf(&s, "  %s", elapsed.Round(time.Second))
	return s.String()
}

func rateText(r float64) string {
	if r >= 100 {
		return commas(int(r + 0.5))
	}
	return fmt.Sprintf("%.1f", r)
}
