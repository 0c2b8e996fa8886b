package main

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/reelq/reelq/internal/config"
	"github.com/reelq/reelq/internal/providers"
	"github.com/reelq/reelq/internal/providers/all"
)

// configurationDoc renders docs/configuration.md from config.Describe.
func configurationDoc() []byte {
	var b bytes.Buffer
	b.WriteString("# Worker configuration\n\n")
	b.WriteString("Every variable the worker reads (`bin/worker --help` prints the same list).\n")
	b.WriteString("This file is generated from the configuration's struct tags and the providers'\n")
	b.WriteString("Specs by `go generate ./...`; a test fails when it is out of date.\n\n")
	fmt.Fprintf(&b, "`P_` stands for each provider's prefix: %s.\n\n", strings.Join(config.ProviderPrefixes(), ", "))
	b.WriteString("| Variable | Default | Meaning |\n|---|---|---|\n")
	esc := strings.NewReplacer("|", `\|`)
	for _, v := range config.Describe() {
		d := v.Default
		if d != "" {
			d = "`" + d + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, esc.Replace(d), esc.Replace(v.Help))
	}
	return b.Bytes()
}

// providersSummary is the table of docs/providers.md: what each Spec
// declares.
func providersSummary() string {
	var b strings.Builder
	b.WriteString("| Provider | Prefix | Cost unit | Rate, burst, cap | Polls (first, max, give up) | Recovery | Pay once | Default for an unknown outcome | Cancel | Credits reported on | Output links |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range all.Specs {
		l, t := s.Limits, s.Timings
		amb := "resubmit (the same submission)"
		if s.Recovery == providers.RecoveryNone {
			amb = fmt.Sprintf("hold above %s, else resubmit", cost(s.HoldAbove.Amount, s.HoldAbove.Unit))
		}
		credits := "the submit"
		if s.CreditsOnPoll {
			credits = "the poll"
		}
		links := fmt.Sprintf("answer %d when expired", s.LinkExpiry.Status)
		if s.LinkExpiry.After > 0 {
			links = "expire after " + dur(s.LinkExpiry.After) + "; " + links
		}
		fmt.Fprintf(&b, "| %s (`%s`) | `%s` | %s | %s/s, %d, %d | %s, %s, %s | `%s` | %s | %s | %s | %s | %s |\n",
			s.Kind.Title, s.Name(), s.Kind.Prefix(), s.Kind.Unit, num(l.Rate), l.Burst, l.MaxInflight,
			dur(t.PollInterval), dur(t.MaxPollInterval), dur(t.JobTimeout), s.Recovery, strings.ReplaceAll(s.Recovery.PayOnce(), "_", " "),
			amb, yesNo(s.Kind.Cancelable), credits, links)
	}
	return b.String()
}

// providersSections is every Spec's doc, in the order of the list.
func providersSections() string {
	var b strings.Builder
	for i, s := range all.Specs {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(strings.TrimSpace(s.Doc) + "\n")
	}
	return b.String()
}

var providerEnum = regexp.MustCompile(`("provider": \{[^{}]*?"enum": )\[[^\]]*\]`)

// schemaEnums rewrites the provider enums of a JSON Schema.
func schemaEnums(old []byte) ([]byte, error) {
	if !providerEnum.Match(old) {
		return nil, fmt.Errorf("no provider enum")
	}
	var names []string
	for _, n := range all.Names() {
		names = append(names, strconv.Quote(n))
	}
	return providerEnum.ReplaceAll(old, []byte("${1}["+strings.Join(names, ", ")+"]")), nil
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', 3, 64) }

// floor2 is f rounded down to two decimals, for a limit written in a
// deploy file (never above the Spec's).
func floor2(f float64) string { return strconv.FormatFloat(math.Floor(f*100)/100, 'f', -1, 64) }

func cost(a float64, unit string) string { return strconv.FormatFloat(a, 'f', -1, 64) + unit }

func dur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// readmeProviders is the README's short table of the providers.
func readmeProviders() string {
	var b strings.Builder
	b.WriteString("| Provider | `provider` | Cost unit | Recovery | Pay once | Cancel |\n|---|---|---|---|---|---|\n")
	for _, s := range all.Specs {
		fmt.Fprintf(&b, "| %s | `%s` | %s | `%s` | %s | %s |\n", s.Kind.Title, s.Name(), s.Kind.Unit, s.Recovery,
			strings.ReplaceAll(s.Recovery.PayOnce(), "_", " "), yesNo(s.Kind.Cancelable))
	}
	return b.String()
}

// typedInputs is docs/client.md's table of the typed inputs: each Go
// field with its JSON name.
func typedInputs() string {
	var b strings.Builder
	b.WriteString("| Go type | Provider | Fields (JSON name) |\n|---|---|---|\n")
	for _, s := range all.Specs {
		var fields []string
		for f := range s.Kind.Input.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "" && name != "-" {
				fields = append(fields, fmt.Sprintf("`%s` (%s)", f.Name, name))
			} else {
				fields = append(fields, fmt.Sprintf("`%s`", f.Name))
			}
		}
		fmt.Fprintf(&b, "| `%sInput` | %s | %s |\n", goName(s.Name()), s.Name(), strings.Join(fields, ", "))
	}
	return b.String()
}
