package metrics_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/reelq/reelq/internal/buildinfo"
	"github.com/reelq/reelq/internal/metrics"
)

// recorder is a prometheus.Registerer that keeps what is registered.
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error   { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }
func (r *recorder) Unregister(prometheus.Collector) bool    { return false }

var fqName = regexp.MustCompile(`fqName: "([a-zA-Z_:][a-zA-Z0-9_:]*)"`)

// exported are the names of every metric a worker or forwarder registers
// (as cmd/worker and cmd/forwarder do), with each histogram's series.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	r := &recorder{}
	metrics.New(r)
	metrics.RegisterBuildInfo(r, buildinfo.Get())
	r.MustRegister(metrics.NewQueueCollector(nil, nil), metrics.NewHeldCollector(func(context.Context) (map[string]int, error) { return nil, nil }),
		metrics.NewResultsLagCollector(nil, "forwarder"),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	names := map[string]bool{}
	ch := make(chan *prometheus.Desc, 1000)
	for _, c := range r.cs {
		c.Describe(ch)
	}
	close(ch)
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			names[m[1]+suffix] = true
		}
	}
	if !names["reelq_jobs_total"] || !names["reelq_jobs_held"] || !names["reelq_results_lag"] {
		t.Fatalf("the worker's metrics are not all found: %v", names)
	}
	return names
}

var reelqMetric = regexp.MustCompile(`\breelq_[a-z0-9_]+\b`)

// queries is the PromQL of a dashboard or rule file: the values of its
// "expr" and "series" keys (JSON, or YAML with block scalars), not the
// prose around them (which names buckets like reelq_ratelimit).
func queries(file string) string {
	var b strings.Builder
	indent := -1 // of the key whose block scalar is being read
	for line := range strings.Lines(file) {
		trimmed := strings.TrimLeft(line, " ")
		depth := len(line) - len(trimmed)
		if indent >= 0 && depth > indent && strings.TrimSpace(line) != "" {
			b.WriteString(line)
			continue
		}
		indent = -1
		for _, key := range []string{`"expr":`, "expr:", "series:"} {
			if strings.HasPrefix(trimmed, key) || strings.HasPrefix(trimmed, "- "+key) {
				b.WriteString(line)
				indent = depth
			}
		}
	}
	return b.String()
}

// Every reelq metric the Grafana dashboard, the alert rules and their
// tests name is one the code exports (a renamed or misspelt metric would
// leave a panel empty and an alert silent), and each panel queries the
// dashboard's data source variable.
func TestDeployFilesUseExportedMetrics(t *testing.T) {
	names := exported(t)
	for _, f := range []string{"../../deploy/grafana/reelq.json", "../../deploy/prometheus/alerts.yaml", "../../deploy/prometheus/alerts_test.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		used := reelqMetric.FindAllString(queries(string(b)), -1)
		if len(used) == 0 {
			t.Errorf("%s names no reelq metric", f)
		}
		for _, n := range used {
			if !names[n] {
				t.Errorf("%s: %s is not a metric reelq exports", f, n)
			}
		}
	}

	b, err := os.ReadFile("../../deploy/grafana/reelq.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct{ Name, Type string } `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *struct{ Type, UID string }
			Targets    []struct{ Expr string }
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("reelq.json: %v", err)
	}
	if dash.UID == "" || !slices.ContainsFunc(dash.Templating.List, func(v struct{ Name, Type string }) bool { return v.Name == "datasource" && v.Type == "datasource" }) {
		t.Errorf("reelq.json: no uid or no datasource variable")
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: data source %+v, %d queries: want ${datasource} and a query", p.Title, p.Datasource, len(p.Targets))
		}
		for _, tg := range p.Targets {
			if strings.Contains(tg.Expr, "reelq_budget_") && !strings.Contains(tg.Expr, `scope="provider"`) {
				t.Errorf("panel %q: budgets are per provider only (batches: reelq_batch_budgets)", p.Title)
			}
		}
	}
}
