package config

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md from Describe")

// configurationDoc renders docs/configuration.md from Describe.
func configurationDoc() []byte {
	var b bytes.Buffer
	b.WriteString("# Worker configuration\n\n")
	b.WriteString("Every variable the worker reads (`bin/worker --help` prints the same list).\n")
	b.WriteString("This file is generated from the configuration's struct tags by\n")
	b.WriteString("`go test ./internal/config -run TestConfigurationDoc -update`; a test fails\n")
	b.WriteString("when it is out of date.\n\n")
	fmt.Fprintf(&b, "`P_` stands for each provider's prefix: %s.\n\n", strings.Join(ProviderPrefixes(), ", "))
	b.WriteString("| Variable | Default | Meaning |\n|---|---|---|\n")
	esc := strings.NewReplacer("|", `\|`)
	for _, v := range Describe() {
		d := v.Default
		if d != "" {
			d = "`" + d + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, esc.Replace(d), esc.Replace(v.Help))
	}
	return b.Bytes()
}

// docs/configuration.md lists exactly what Describe (and --help) does.
func TestConfigurationDoc(t *testing.T) {
	const path = "../../docs/configuration.md"
	want := configurationDoc()
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("docs/configuration.md is out of date: go test ./internal/config -run TestConfigurationDoc -update")
	}
}
