package testenv

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// Option configures an Environment.
type Option func(*settings)

type settings struct {
	binary         string
	crdDirs        []string
	crds           []*apiextensionsv1.CustomResourceDefinition
	apiserverArgs  []string
	controllerArgs []string
	schedulerArgs  []string
	featureGates   map[string]bool
	version        string
	controllers    []string
	sqlite         bool
	simulatedNodes int
	nodeShape      NodeShape
	startTimeout   time.Duration
	logs           io.Writer
	pooled         bool
}

// NodeShape is the capacity, labels and taints of each simulated node.
// Empty fields keep skiff's defaults (32 CPUs, 256Gi, 110 pods).
type NodeShape struct {
	CPU, Memory, Pods string
	Labels            map[string]string
	Taints            []string // key=value:Effect, as kubectl taint takes them
}

// WithBinary names the skiff binary to run. Without it, $SKIFF_BIN is used,
// then `skiff` on $PATH.
func WithBinary(path string) Option { return func(s *settings) { s.binary = path } }

// WithCRDDirectory installs every CustomResourceDefinition found in the YAML
// and JSON files of dirs, and waits until each is established and served.
func WithCRDDirectory(dirs ...string) Option {
	return func(s *settings) { s.crdDirs = append(s.crdDirs, dirs...) }
}

// WithCRDs installs the given CustomResourceDefinitions, as WithCRDDirectory.
func WithCRDs(crds ...*apiextensionsv1.CustomResourceDefinition) Option {
	return func(s *settings) { s.crds = append(s.crds, crds...) }
}

// WithAPIServerArgs passes extra kube-apiserver flags, as flag=value.
func WithAPIServerArgs(args ...string) Option {
	return func(s *settings) { s.apiserverArgs = append(s.apiserverArgs, args...) }
}

// WithControllerManagerArgs passes extra kube-controller-manager flags.
func WithControllerManagerArgs(args ...string) Option {
	return func(s *settings) { s.controllerArgs = append(s.controllerArgs, args...) }
}

// WithSchedulerArgs passes extra kube-scheduler flags.
func WithSchedulerArgs(args ...string) Option {
	return func(s *settings) { s.schedulerArgs = append(s.schedulerArgs, args...) }
}

// WithFeatureGates sets Kubernetes feature gates. The components share one
// process, so the gates apply to all of them.
func WithFeatureGates(gates map[string]bool) Option {
	return func(s *settings) {
		if s.featureGates == nil {
			s.featureGates = map[string]bool{}
		}
		maps.Copy(s.featureGates, gates)
	}
}

// WithKubernetesVersion makes Start fail unless the server's version starts
// with prefix (for example "v1.37"), so a test that depends on an API
// version notices a skiff binary built with another Kubernetes.
func WithKubernetesVersion(prefix string) Option { return func(s *settings) { s.version = prefix } }

// WithControllers chooses the kube-controller-manager controllers, in its
// --controllers syntax: "*" is every default one, "-name" turns one off,
// "name" turns one on.
func WithControllers(controllers ...string) Option {
	return func(s *settings) { s.controllers = append(s.controllers, controllers...) }
}

// WithSQLite keeps the data in SQLite in the environment's directory instead
// of in memory.
func WithSQLite() Option { return func(s *settings) { s.sqlite = true } }

// WithSimulatedNodes registers n simulated nodes: pods scheduled to them
// become Running with an IP, without containers.
func WithSimulatedNodes(n int) Option { return func(s *settings) { s.simulatedNodes = n } }

// WithSimulatedNodeShape sets the capacity, labels and taints of the
// simulated nodes.
func WithSimulatedNodeShape(shape NodeShape) Option { return func(s *settings) { s.nodeShape = shape } }

// WithStartTimeout bounds how long Start waits for the control plane (60s
// by default).
func WithStartTimeout(d time.Duration) Option { return func(s *settings) { s.startTimeout = d } }

// WithLogs copies the server's log to w as it is written. Without it, Start
// keeps the log and prints it to the test log only if the test fails.
func WithLogs(w io.Writer) Option { return func(s *settings) { s.logs = w } }

// serverArgs are the `skiff server` arguments for these settings in dir.
func (s *settings) serverArgs(dataDir, configFile, kubeconfig string) []string {
	args := []string{"server",
		"--disable-agent",
		// Like envtest: no cluster add-ons in the way of a test's objects.
		"--disable", "coredns,ingress,local-storage,metrics-server,servicelb",
		"--config", configFile,
		"--data-dir", dataDir,
		"--write-kubeconfig", kubeconfig,
		"--https-listen-port", "0",
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		// No serving ports but the apiserver's: environments run in
		// parallel, and tests talk to the apiserver only.
		"--kube-controller-manager-arg", "secure-port=0",
		"--kube-scheduler-arg", "secure-port=0",
		// The scheduler talks to a local apiserver: let it go as fast as
		// a test creates pods (skiff gives the controller-manager the
		// same).
		"--kube-scheduler-arg", "kube-api-qps=200",
		"--kube-scheduler-arg", "kube-api-burst=400",
	}
	if !s.sqlite {
		args = append(args, "--datastore-endpoint", "memory://")
	}
	if len(s.featureGates) > 0 {
		var gates []string
		for _, name := range slices.Sorted(maps.Keys(s.featureGates)) {
			gates = append(gates, fmt.Sprintf("%s=%t", name, s.featureGates[name]))
		}
		args = append(args, "--kube-apiserver-arg", "feature-gates="+strings.Join(gates, ","))
	}
	if len(s.controllers) > 0 {
		args = append(args, "--kube-controller-manager-arg", "controllers="+strings.Join(s.controllers, ","))
	}
	for _, a := range s.apiserverArgs {
		args = append(args, "--kube-apiserver-arg", a)
	}
	for _, a := range s.controllerArgs {
		args = append(args, "--kube-controller-manager-arg", a)
	}
	for _, a := range s.schedulerArgs {
		args = append(args, "--kube-scheduler-arg", a)
	}
	if s.simulatedNodes > 0 {
		args = append(args, "--simulated-nodes", fmt.Sprint(s.simulatedNodes))
		shape := s.nodeShape
		for _, q := range [][2]string{{"cpu", shape.CPU}, {"memory", shape.Memory}, {"pods", shape.Pods}} {
			if q[1] != "" {
				args = append(args, "--simulated-node-"+q[0], q[1])
			}
		}
		for _, k := range slices.Sorted(maps.Keys(shape.Labels)) {
			args = append(args, "--simulated-node-label", k+"="+shape.Labels[k])
		}
		for _, t := range shape.Taints {
			args = append(args, "--simulated-node-taint", t)
		}
	}
	return args
}
