package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/pkg/image"
	"github.com/skiff-dev/skiff/tests/harness"
)

// The [Conformance] specs of Kubernetes' own e2e suite (e2e.test, built at
// skiff's Kubernetes version by `make conformance-bin`), run against a fresh
// single node that imported the suite's images from archives built here.

// conformanceSkips are the specs skiff's conformance node cannot host, each
// with why. They are listed in the report's summary, not dropped silently.
var conformanceSkips = []conformanceSkip{
	{twoNodeSpecs[0], twoNodeReason},
	{twoNodeSpecs[1], twoNodeReason},
	// The spec pulls the kitten image through the node's registry mirror,
	// mounts it as a volume and reads its data (which passes), then
	// expects its /etc/os-release to name Alpine Linux: upstream builds
	// kitten on agnhost, on alpine:3.21. Alpine's packages are out of
	// reach here, so the suite's images are built on BusyBox and
	// Debian's packages, and say so.
	{`ImageVolume .*should succeed with pod and pull policy of Always`, "expects the kitten image to be Alpine Linux (upstream's base); built here on BusyBox and Debian packages"},
}

type conformanceSkip struct{ pattern, reason string }

// twoNodeSpecs are the [Conformance] specs that need two schedulable
// nodes; TestMultiNode runs them on its three.
var twoNodeSpecs = []string{
	`should have at least two untainted nodes`,
	`Daemon set .*should rollback without unnecessary restarts`,
}

const twoNodeReason = "needs two schedulable nodes: TestMultiNode runs it (make test)"

// conformanceSelection is a part of the suite: the specs that carry labels
// (a ginkgo label filter), which are those whose names match names, and
// of those the ones focus (a regular expression, when set) matches.
type conformanceSelection struct{ labels, names, focus string }

var (
	// everyConformanceSpec is what `make conformance` runs.
	everyConformanceSpec = conformanceSelection{labels: "Conformance", names: `\[Conformance\]`}
	// apiMachinerySubset is the part `make test` runs.
	apiMachinerySubset = conformanceSelection{labels: "Conformance && sig-api-machinery", names: `\[sig-api-machinery\].*\[Conformance\]`}
)

// TestConformanceAPI runs the sig-api-machinery [Conformance] specs: the
// API server's behaviour (CRUD, watch, CRDs, webhooks, quota, garbage
// collection, aggregation) with real pods for the webhooks and the
// aggregated server. The chunking spec waits until the datastore compacts
// the revision it listed at, about 10 minutes here: kine keeps the newest
// 1000 revisions, so a shorter compaction interval does not shorten it (a
// run with --datastore-compact-interval 30s took as long).
func TestConformanceAPI(t *testing.T) {
	runConformance(t, apiMachinerySubset, os.Getenv("SKIFF_CONFORMANCE_REPORT"))
}

// TestConformance runs every [Conformance] spec: `make conformance`, or
// those SKIFF_CONFORMANCE_FOCUS matches (`make conformance FOCUS=regexp`).
func TestConformance(t *testing.T) {
	if os.Getenv("SKIFF_CONFORMANCE") != "all" {
		t.Skip("the whole suite takes about an hour: `make conformance` runs it")
	}
	selection := everyConformanceSpec
	selection.focus = os.Getenv("SKIFF_CONFORMANCE_FOCUS")
	runConformance(t, selection, os.Getenv("SKIFF_CONFORMANCE_REPORT"))
}

// runConformance runs the selected specs against a new node (a server with
// its agent) and writes their reports and summary to reportDir.
func runConformance(t *testing.T, selection conformanceSelection, reportDir string) {
	if os.Geteuid() != 0 {
		t.Skip("the node agent needs root")
	}
	bin, err := conformanceBin()
	if err != nil {
		t.Fatal(err)
	}
	if reportDir == "" {
		reportDir = t.TempDir()
	}
	if err := os.MkdirAll(reportDir, 0o755); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	archives, err := linkImages(bin, filepath.Join(dataDir, "agent", "images"))
	if err != nil {
		t.Fatal(err)
	}
	// Specs whose pods pull (imagePullPolicy Always) get the same images
	// from a registry the node mirrors the suite's registries to.
	registries := mirrorImages(t, archives)
	s := newServer(t, dataDir, "--private-registry", registries)
	s.Agent = true
	t.Cleanup(func() { killall(t, s) })
	mustStart(t, s)
	ctx := context.Background()
	c := kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	waitNodeReady(t, ctx, c, time.Time{})
	waitDeploymentAvailable(t, ctx, c, "kube-system", "coredns")
	waitImagesImported(t, s.LogPath, archives)

	kubectl := kubectlLink(t, s)
	skip := make([]string, len(conformanceSkips))
	for i, rule := range conformanceSkips {
		skip[i] = rule.pattern
	}
	suite := conformanceRun{bin: bin, kubeconfig: s.Kubeconfig(), kubectl: kubectl, reportDir: reportDir,
		focus: selection.focus, skip: strings.Join(skip, "|")}
	// [Serial] specs must not share the cluster with any other spec (the
	// suite labels them, ginkgo does not know): a parallel pass for the
	// rest, then a serial pass for them.
	parallelErr := suite.run(t, "parallel", 4, selection.labels+" && !Serial")
	serialErr := suite.run(t, "serial", 1, selection.labels+" && Serial")

	summary, err := summarize(reportDir, selection.names)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(reportDir, "summary.txt")
	if err := os.WriteFile(path, []byte(summary.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s:\n%s", path, summary.Brief())
	if len(summary.Failed) > 0 || parallelErr != nil || serialErr != nil {
		t.Errorf("%d of %d specs failed (ginkgo: parallel pass %v, serial pass %v)", len(summary.Failed), summary.Ran(), parallelErr, serialErr)
	}
	if summary.Ran() == 0 {
		t.Errorf("no spec ran for %q", selection.labels)
	}
}

// kubectlLink is a kubectl for e2e.test, which runs kubectl by path: skiff
// is kubectl when named so.
func kubectlLink(t *testing.T, s *harness.Server) string {
	t.Helper()
	kubectl := filepath.Join(t.TempDir(), "kubectl")
	if err := os.Symlink(s.Bin, kubectl); err != nil {
		t.Fatal(err)
	}
	return kubectl
}

// conformanceBin is where `make conformance-bin` put e2e.test, ginkgo and
// the image archives.
func conformanceBin() (string, error) {
	root, err := harness.RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "bin", "conformance")
	for _, f := range []string{"e2e.test", "ginkgo", "images"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return "", fmt.Errorf("the conformance suite is not built (%w): run make conformance-bin", err)
		}
	}
	return dir, nil
}

// linkImages hard-links the archives (every one in bin/conformance/images
// when none is named) into to, as a user drops archives into
// <data-dir>/agent/images, and returns their new paths.
func linkImages(bin, to string, names ...string) ([]string, error) {
	archives, err := filepath.Glob(filepath.Join(bin, "images", "*.tar"))
	if err != nil || len(archives) == 0 {
		return nil, fmt.Errorf("no image archives in %s (%v): run make conformance-bin", bin, err)
	}
	if len(names) > 0 {
		archives = nil
		for _, n := range names {
			archives = append(archives, filepath.Join(bin, "images", n))
		}
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		return nil, err
	}
	var linked []string
	for _, a := range archives {
		dst := filepath.Join(to, filepath.Base(a))
		if err := os.Link(a, dst); err != nil {
			return nil, err
		}
		linked = append(linked, dst)
	}
	return linked, nil
}

// mirrorImages pushes every archive, under its own name, to a registry in
// the test's process, and writes the registries.yaml that mirrors the
// registries of those names to it.
func mirrorImages(t *testing.T, archives []string) string {
	t.Helper()
	reg, path := newRegistry(t)
	var registries []string
	for _, a := range archives {
		f, err := os.Open(a)
		if err != nil {
			t.Fatal(err)
		}
		name, err := image.ArchiveName(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if err := reg.PushArchive(a, name, nil); err != nil {
			t.Fatal(err)
		}
		if host, _, _ := strings.Cut(name, "/"); !slices.Contains(registries, host) {
			registries = append(registries, host)
		}
	}
	if err := reg.WriteMirrors(path, registries...); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d images in the mirror of %v at %s", len(archives), registries, reg.Host)
	return path
}

// waitImagesImported waits until the node whose log is logPath has
// imported every archive: a spec must not start a pod before its image is
// there, or the kubelet tries to pull it and backs off.
func waitImagesImported(t *testing.T, logPath string, archives []string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, 5*time.Minute, true, func(context.Context) (bool, error) {
		log, err := os.ReadFile(logPath)
		if err != nil {
			return false, err
		}
		for _, a := range archives {
			if !strings.Contains(string(log), `"Imported images" archive="`+a+`"`) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the node did not import the conformance images (see %s): %v", logPath, err)
	}
}

// conformanceRun is one cluster's run of e2e.test through ginkgo.
type conformanceRun struct {
	bin, kubeconfig, kubectl, reportDir string
	// focus and skip narrow the specs by name (ginkgo's regular
	// expressions) when set.
	focus, skip string
}

// run runs the specs with labels over procs processes and writes
// junit_<name>.xml.
func (r conformanceRun) run(t *testing.T, name string, procs int, labels string) error {
	args := []string{"--procs", fmt.Sprint(procs), "--label-filter", labels}
	if r.focus != "" {
		args = append(args, "--focus", r.focus)
	}
	if r.skip != "" {
		args = append(args, "--skip", r.skip)
	}
	args = append(args,
		"--timeout", "2h", "--no-color", "--silence-skips",
		"--output-dir", r.reportDir, "--junit-report", "junit_"+name+".xml",
		filepath.Join(r.bin, "e2e.test"), "--",
		"--kubeconfig", r.kubeconfig, "--provider", "skeleton", "--kubectl-path", r.kubectl,
		"--e2e-output-dir", r.reportDir,
	)
	cmd := exec.Command(filepath.Join(r.bin, "ginkgo"), args...)
	log, err := os.Create(filepath.Join(r.reportDir, "ginkgo_"+name+".log"))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	t.Logf("%s pass: %s", name, strings.Join(cmd.Args, " "))
	start := time.Now()
	err = cmd.Run()
	t.Logf("%s pass took %s: %v (log %s)", name, time.Since(start).Round(time.Second), err, log.Name())
	return err
}

// skipReason is why a conformance spec was skipped by skiff's list, or "".
func skipReason(spec string) string {
	for _, s := range conformanceSkips {
		if regexp.MustCompile(s.pattern).MatchString(spec) {
			return s.reason
		}
	}
	return ""
}
