package config

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/webhooks.md's variable table from DescribeForwarder")

// docs/webhooks.md lists exactly the variables DescribeForwarder (and
// forwarder --help) does, between its markers.
func TestForwarderDoc(t *testing.T) {
	const path, begin, end = "../../docs/webhooks.md", "<!-- forwarder-variables -->\n", "<!-- /forwarder-variables -->"
	var table bytes.Buffer
	table.WriteString("| Variable | Default | Meaning |\n|---|---|---|\n")
	esc := strings.NewReplacer("|", `\|`)
	for _, v := range DescribeForwarder() {
		d := v.Default
		if d != "" {
			d = "`" + d + "`"
		}
		fmt.Fprintf(&table, "| `%s` | %s | %s |\n", v.Name, esc.Replace(d), esc.Replace(v.Help))
	}
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok1 := strings.Cut(string(doc), begin)
	_, after, ok2 := strings.Cut(rest, end)
	if !ok1 || !ok2 {
		t.Fatalf("%s lacks the markers %q and %q", path, begin, end)
	}
	want := before + begin + table.String() + end + after
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if string(doc) != want {
		t.Fatal("docs/webhooks.md's variable table is out of date: go test ./internal/config -run TestForwarderDoc -update")
	}
}

// Bad values are refused naming the variable; secrets come from the file,
// one per line.
func TestLoadForwarder(t *testing.T) {
	file := t.TempDir() + "/s"
	if err := os.WriteFile(file, []byte("# rotation\nwhsec_b25lCg==\n\nwhsec_dHdvCg==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := LoadForwarder([]string{"FORWARDER_SECRET_FILE=" + file, "FORWARDER_PROVIDER_URLS=segmind=https://a.example/h https://b.example/h,camb=https://c.example"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(f.Secrets, " ") != "whsec_b25lCg== whsec_dHdvCg==" || f.ProviderURLs["segmind"] != "https://a.example/h https://b.example/h" ||
		f.ProviderURLs["camb"] != "https://c.example" || f.RetryBudget.Hours() != 24 || f.Durable != "forwarder" {
		t.Errorf("loaded %+v", f)
	}
	for env, want := range map[string]string{
		"FORWARDER_CONCURRENCY=0":      "FORWARDER_CONCURRENCY: must be at least 1",
		"FORWARDER_DELIVER=old":        `FORWARDER_DELIVER: must be new or all, got "old"`,
		"FORWARDER_DURABLE=a.b":        `FORWARDER_DURABLE: "a.b" is not a consumer name`,
		"FORWARDER_RETRY_BASE=2h":      "FORWARDER_RETRY_BASE: 2h is longer than FORWARDER_RETRY_MAX (1h)",
		"FORWARDER_STREAM_REPLICAS=7":  "FORWARDER_STREAM_REPLICAS: must be 1 to 5",
		"FORWARDER_BATCH_URLS=nightly": "FORWARDER_BATCH_URLS: invalid entry",
		"FORWARDER_SECRET=whsec_eA==":  "FORWARDER_SECRET, FORWARDER_SECRET_FILE: set only one",
	} {
		_, err := LoadForwarder([]string{"FORWARDER_SECRET_FILE=" + file, env})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", env, err, want)
		}
	}
}
