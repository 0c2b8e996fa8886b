package main

import (
	"fmt"
	"strings"

	"github.com/reelq/reelq/internal/providers/all"
)

// regionFiles are the hand-written files with provider regions, and what
// goes in each region.
func regionFiles() []regionFile {
	return []regionFile{
		{"docs/providers.md", "<!--", map[string]string{"summary": providersSummary(), "providers": providersSections()}},
		{"README.md", "<!--", map[string]string{"readme providers": readmeProviders()}},
		{"docs/client.md", "<!--", map[string]string{"typed inputs": typedInputs()}},
		{"deploy/nats/auth.conf", "#", map[string]string{"provider consumers": lines(consumerSubjects(), "        ", func(subjects []string) string {
			q := make([]string, len(subjects))
			for i, s := range subjects {
				q[i] = fmt.Sprintf("%q", s)
			}
			return strings.Join(q, ", ")
		})}},
		{"deploy/helm/nats-values.yaml", "#", map[string]string{"provider consumers": lines(consumerSubjects(), "", func(subjects []string) string {
			var b strings.Builder
			for i, s := range subjects {
				if i > 0 {
					b.WriteString("\n")
				}
				fmt.Fprintf(&b, "            - %q", s)
			}
			return b.String()
		})}},
		{"deploy/k8s/keda-scaledobject.yaml", "#", map[string]string{"provider consumers": kedaTriggers()}},
		{"deploy/k8s/configmap.yaml", "#", map[string]string{"provider limits": perProvider(func(name, p string) string {
			s, _ := all.Lookup(name)
			return fmt.Sprintf("  %sRATE: %q\n  %sMAX_INFLIGHT: \"%d\"\n", p, floor2(s.Limits.Rate), p, s.Limits.MaxInflight)
		})}},
		{"deploy/helm/reelq/values.yaml", "#", map[string]string{"chart providers": perProvider(func(name, _ string) string {
			s, _ := all.Lookup(name)
			return fmt.Sprintf("  %s:\n    existingSecret: \"\"\n    existingSecretKey: api-key\n    env:\n      RATE: %q\n      MAX_INFLIGHT: \"%d\"\n",
				name, floor2(s.Limits.Rate), s.Limits.MaxInflight)
		})}},
		{"deploy/helm/reelq/ci/all-values.yaml", "#", map[string]string{"chart test providers": perProvider(func(name, _ string) string {
			return fmt.Sprintf("  %s:\n    existingSecret: reelq-%s\n", name, name)
		})}},
		{"deploy/k8s/secret.yaml", "#", map[string]string{"provider keys": perProvider(func(name, _ string) string {
			return fmt.Sprintf("  %s-api-key: REPLACE_ME\n", name)
		})}},
		{"deploy/k8s/worker-deployment.yaml", "#", map[string]string{"provider keys": perProvider(func(name, p string) string {
			return fmt.Sprintf("            - name: %sAPI_KEY_FILE\n              value: /var/run/secrets/reelq/providers/%s-api-key\n", p, name)
		})}},
		{"deploy/compose.yaml", "#", map[string]string{
			"provider env": perProvider(func(name, p string) string {
				s, _ := all.Lookup(name)
				return fmt.Sprintf("      %sAPI_KEY_FILE: /run/secrets/%s_api_key\n      %sBASE_URL: http://providersim:8089%s\n      %sALLOW_INSECURE_HTTP: \"true\"\n",
					p, name, p, s.Sim.Base, p)
			}),
			"provider secrets": "    secrets: [" + strings.Join(mapNames(func(n string) string { return n + "_api_key" }), ", ") + "]\n",
			"provider secret files": perProvider(func(name, _ string) string {
				return fmt.Sprintf("  %s_api_key: { file: ./compose-secrets/%s_api_key }\n", name, name)
			}),
		}},
		{"deploy/validate/k8s_test.go", "//", map[string]string{"providers": "var providers = []string{" +
			strings.Join(mapNames(func(n string) string { return fmt.Sprintf("%q", n) }), ", ") + "}\n\n"}},
	}
}

// consumerSubjects lists, per JOBS consumer (provider x priority), the
// subjects a worker needs for it: create/update, info (metrics, stats),
// pause/resume, pull, ack.
func consumerSubjects() [][]string {
	var out [][]string
	for _, name := range all.Names() {
		for _, suffix := range []string{"", "-high", "-low"} {
			c := "JOBS." + name + suffix
			out = append(out, []string{"$JS.API.CONSUMER.CREATE." + c, "$JS.API.CONSUMER.CREATE." + c + ".>", "$JS.API.CONSUMER.INFO." + c,
				"$JS.API.CONSUMER.PAUSE." + c, "$JS.API.CONSUMER.MSG.NEXT." + c, "$JS.ACK." + c + ".>", "$JS.ACK.*.*." + c + ".>"})
		}
	}
	return out
}

// lines renders each group with render, one group per line, indented.
func lines(groups [][]string, indent string, render func([]string) string) string {
	var b strings.Builder
	for _, g := range groups {
		b.WriteString(indent + render(g) + "\n")
	}
	return b.String()
}

// kedaTriggers is a nats-jetstream trigger per JOBS consumer.
func kedaTriggers() string {
	var b strings.Builder
	for _, name := range all.Names() {
		for _, suffix := range []string{"", "-high", "-low"} {
			fmt.Fprintf(&b, `    - type: nats-jetstream
      metadata:
        natsServerMonitoringEndpoint: nats-headless.nats.svc.cluster.local:8222
        account: "$G"
        stream: JOBS
        consumer: %s%s
        lagThreshold: "20"
        activationLagThreshold: "0"
`, name, suffix)
		}
	}
	return b.String()
}

// perProvider joins f's text for every provider (name, env prefix).
func perProvider(f func(name, prefix string) string) string {
	var b strings.Builder
	for _, s := range all.Specs {
		b.WriteString(f(s.Name(), s.Kind.Prefix()))
	}
	return b.String()
}

func mapNames(f func(string) string) []string {
	var out []string
	for _, n := range all.Names() {
		out = append(out, f(n))
	}
	return out
}
