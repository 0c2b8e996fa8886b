package dashboard

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
)

// chartLine is one line of a chart: its CSS class, its name in the
// legend, its points (a negative point is a gap).
type chartLine struct {
	Class, Name string
	Points      []float64
}

// chartSVG draws lines over [from, to) as an inline SVG, server-side: no
// script, no external resource, colours from the stylesheet's classes.
func chartSVG(title string, from, to time.Time, lines ...chartLine) template.HTML {
	const w, h, left, bottom, top = 360.0, 120.0, 34.0, 16.0, 6.0
	peak := 0.0
	for _, l := range lines {
		for _, v := range l.Points {
			peak = max(peak, v)
		}
	}
	scale := niceMax(peak)
	var b strings.Builder
	esc := template.HTMLEscapeString
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="%s" data-peak="%s">`, w, h, esc(title), strconv.FormatFloat(peak, 'f', -1, 64))
	fmt.Fprintf(&b, `<title>%s</title>`, esc(title))
	plotW, plotH := w-left-4, h-bottom-top
	for _, f := range []float64{0, 0.5, 1} {
		y := top + plotH*(1-f)
		fmt.Fprintf(&b, `<line class="grid" x1="%g" y1="%.1f" x2="%g" y2="%.1f"/>`, left, y, w-4, y)
		fmt.Fprintf(&b, `<text class="axis" x="%g" y="%.1f" text-anchor="end">%s</text>`, left-3, y+3, esc(short(scale*f)))
	}
	fmt.Fprintf(&b, `<text class="axis" x="%g" y="%g">%s</text>`, left, h-3, esc(from.Local().Format("15:04")))
	fmt.Fprintf(&b, `<text class="axis" x="%g" y="%g" text-anchor="end">%s</text>`, w-4, h-3, esc(to.Local().Format("15:04")))
	for _, l := range lines {
		n := len(l.Points)
		if n == 0 {
			continue
		}
		step := plotW / float64(max(n-1, 1))
		var path strings.Builder
		pen := false
		for i, v := range l.Points {
			if v < 0 {
				pen = false
				continue
			}
			x, y := left+step*float64(i), top+plotH*(1-v/scale)
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%.1f %.1f", cmd, x, y)
			pen = true
		}
		if path.Len() > 0 {
			fmt.Fprintf(&b, `<path class="line %s" d="%s"><title>%s</title></path>`, esc(l.Class), path.String(), esc(l.Name))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceMax is the top of a chart's axis: 1, 2 or 5 times a power of ten
// at or above v (1 for nothing).
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// short writes an axis value: 1.5k, 20, 0.25.
func short(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
