package metrics

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// QueueCollector reports each provider consumer's backlog and in-flight
// count from the server at scrape time (cluster-wide figures).
type QueueCollector struct {
	js        jetstream.JetStream
	providers []string
	pending   *prometheus.Desc
	ackPend   *prometheus.Desc
	redeliv   *prometheus.Desc
	paused    *prometheus.Desc
}

// NewQueueCollector returns a collector for the providers' consumers on JOBS.
func NewQueueCollector(js jetstream.JetStream, providers []string) *QueueCollector {
	return &QueueCollector{
		js: js, providers: providers,
		pending: prometheus.NewDesc("reelq_queue_depth", "Jobs waiting in the queue (consumer num_pending), cluster-wide.", []string{"provider"}, nil),
		ackPend: prometheus.NewDesc("reelq_queue_in_flight", "Jobs delivered and not yet acknowledged (consumer num_ack_pending), cluster-wide.", []string{"provider"}, nil),
		redeliv: prometheus.NewDesc("reelq_queue_redelivered", "Jobs being redelivered (consumer num_redelivered).", []string{"provider"}, nil),
		paused:  prometheus.NewDesc("reelq_consumer_paused", "1 while the provider's consumer is paused on the server (by hand or by an older release: a reelq pause holds paid calls in the workers, see reelq_provider_paused).", []string{"provider"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPend
	ch <- c.redeliv
	ch <- c.paused
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, p := range c.providers {
		cons, err := c.js.Consumer(ctx, "JOBS", p)
		if err != nil {
			continue
		}
		info := cons.CachedInfo()
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), p)
		ch <- prometheus.MustNewConstMetric(c.ackPend, prometheus.GaugeValue, float64(info.NumAckPending), p)
		ch <- prometheus.MustNewConstMetric(c.redeliv, prometheus.GaugeValue, float64(info.NumRedelivered), p)
		v := 0.0
		if info.Paused {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, v, p)
	}
}
