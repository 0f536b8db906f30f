package main

import (
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/logs"
	"sigs.k8s.io/metrics-server/cmd/metrics-server/app"
)

// runMetricsServer is upstream metrics-server's main (cmd/metrics-server),
// which reads its own flags through cobra, less one line: upstream sets
// GOMAXPROCS to the host's CPU count, and this leaves Go's default, which
// also honours a CPU limit set on the pod.
func runMetricsServer() {
	logs.InitLogs()
	defer logs.FlushLogs()
	cmd := app.NewMetricsServerCommand(genericapiserver.SetupSignalHandler())
	if err := cmd.Execute(); err != nil {
		panic(err)
	}
}
