// kubernetes-sd: Prometheus' own Kubernetes service discovery, for a Prometheus built without it.
//
// Debian's prometheus package (2.42) leaves out kubernetes_sd_configs (it is built without client-go). This program
// runs the upstream code instead, github.com/prometheus/prometheus/discovery/kubernetes (the SD behind
// kubernetes_sd_configs), and writes every target it discovers as file_sd JSON: one target group per target, with
// the group's and the target's labels merged (as Prometheus merges them before relabelling), so the
// __meta_kubernetes_* labels reach relabel_configs unchanged. (Prometheus' example custom-SD adapter keeps only
// the group's labels, which loses the per-target ones this SD relies on, such as the EndpointSlice port name.)
//
// Its config maps an output file name to one kubernetes_sd_config, in Prometheus' own YAML:
//
//	endpointslice: {role: endpointslice, kubeconfig_file: /path/kubeconfig, namespaces: {names: [default]}}
//	node: {role: node, kubeconfig_file: /path/kubeconfig}
//
// It writes <output dir>/<name>.json for each, and serves /metrics (the SD's own) and /healthz on --listen.
// Built by labkit (labkit/addons/kubernetes_sd.py); part of labkit, not of Prometheus.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.yaml.in/yaml/v2"
)

type fileSDGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// write turns the current target groups (by source) into file_sd JSON and replaces output atomically.
func write(output string, groups map[string]*targetgroup.Group) error {
	sources := make([]string, 0, len(groups))
	for source := range groups {
		sources = append(sources, source)
	}
	sort.Strings(sources)
	out := []fileSDGroup{}
	for _, source := range sources {
		group := groups[source]
		for _, target := range group.Targets {
			labels := map[string]string{}
			for name, value := range group.Labels {
				labels[string(name)] = string(value)
			}
			for name, value := range target {
				labels[string(name)] = string(value)
			}
			address := labels[model.AddressLabel]
			delete(labels, model.AddressLabel)
			out = append(out, fileSDGroup{Targets: []string{address}, Labels: labels})
		}
	}
	data, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(output), "."+filepath.Base(output))
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	tmp.Close()
	return os.Rename(tmp.Name(), output)
}

func run(ctx context.Context, logger *slog.Logger, disc discovery.Discoverer, output string) {
	updates := make(chan []*targetgroup.Group)
	go disc.Run(ctx, updates)
	groups := map[string]*targetgroup.Group{}
	if err := write(output, groups); err != nil {
		logger.Error("cannot write", "file", output, "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case update := <-updates:
			for _, group := range update {
				if group == nil {
					continue
				}
				if len(group.Targets) == 0 {
					delete(groups, group.Source)
				} else {
					groups[group.Source] = group
				}
			}
			if err := write(output, groups); err != nil {
				logger.Error("cannot write", "file", output, "err", err)
			}
		}
	}
}

func main() {
	configFile := flag.String("config.file", "", "YAML: output name -> kubernetes_sd_config")
	outputDir := flag.String("output.dir", "", "folder for the file_sd files")
	listen := flag.String("listen", "127.0.0.1:0", "address for /metrics and /healthz")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	data, err := os.ReadFile(*configFile)
	if err != nil {
		logger.Error("cannot read the config", "err", err)
		os.Exit(1)
	}
	configs := map[string]*kubernetes.SDConfig{}
	if err := yaml.UnmarshalStrict(data, &configs); err != nil {
		logger.Error("cannot parse the config", "err", err)
		os.Exit(1)
	}

	reg := prometheus.NewRegistry()
	refreshMetrics := discovery.NewRefreshMetrics(reg)
	mechanismMetrics, err := discovery.RegisterSDMetrics(reg, refreshMetrics)
	if err != nil {
		logger.Error("cannot register the SD metrics", "err", err)
		os.Exit(1)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	for name, conf := range configs {
		conf.SetDirectory(filepath.Dir(*configFile))
		metrics := mechanismMetrics[conf.Name()]
		disc, err := conf.NewDiscoverer(discovery.DiscovererOptions{Logger: logger.With("sd", name), Metrics: metrics,
			SetName: name})
		if err != nil {
			logger.Error("cannot create the discoverer", "sd", name, "err", err)
			os.Exit(1)
		}
		go run(ctx, logger.With("sd", name), disc, filepath.Join(*outputDir, name+".json"))
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	server := &http.Server{Addr: *listen, Handler: mux}
	go func() {
		<-ctx.Done()
		_ = server.Close()
	}()
	if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		logger.Error("cannot serve", "err", err)
		os.Exit(1)
	}
}
