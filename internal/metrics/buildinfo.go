package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/reelq/reelq/internal/buildinfo"
)

// RegisterBuildInfo registers reelq_build_info: a gauge of 1 labelled with
// the binary's version, VCS revision and Go release, so a dashboard can
// show which versions a fleet runs (count by (version) (reelq_build_info)).
func RegisterBuildInfo(reg prometheus.Registerer, in buildinfo.Info) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reelq_build_info", Help: "1, labelled with the version, VCS revision and Go release that built this binary.",
	}, []string{"version", "revision", "go_version"})
	g.WithLabelValues(in.Version, in.Revision, in.GoVersion).Set(1)
	reg.MustRegister(g)
}
