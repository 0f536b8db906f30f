package helmchart

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"helm.sh/helm/v4/pkg/chart"
	"helm.sh/helm/v4/pkg/chart/loader"
)

// staticChartsURL is how k3s's manifests name a chart archive the server
// itself holds; skiff reads NAME.tgz from its static charts directory.
const staticChartsURL = "https://%{KUBERNETES_API}%/static/charts/"

// Dirs are where spec.chart may point.
type Dirs struct {
	Manifests    string // <data-dir>/server/manifests
	StaticCharts string // <data-dir>/server/static/charts
}

// loadedChart is a chart and the digest of its bytes, which decides
// whether a release is up to date.
type loadedChart struct {
	chart  chart.Charter
	digest string
}

// loadChart reads the chart a HelmChart names.
func (d Dirs) loadChart(spec ChartSpec) (loadedChart, error) {
	if spec.ChartContent != "" {
		data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(spec.ChartContent))
		if err != nil {
			return loadedChart{}, fmt.Errorf("spec.chartContent is not base64: %w", err)
		}
		ch, err := loader.LoadArchive(bytes.NewReader(data))
		if err != nil {
			return loadedChart{}, fmt.Errorf("spec.chartContent is not a chart archive: %w", err)
		}
		return loadedChart{chart: ch, digest: digestBytes(data)}, nil
	}
	path, err := d.chartPath(spec)
	if err != nil {
		return loadedChart{}, err
	}
	digest, err := digestPath(path)
	if err != nil {
		return loadedChart{}, fmt.Errorf("chart %s: %w", spec.Chart, err)
	}
	ch, err := loader.Load(path)
	if err != nil {
		return loadedChart{}, fmt.Errorf("chart %s: %w", spec.Chart, err)
	}
	return loadedChart{chart: ch, digest: digest}, nil
}

// chartPath resolves spec.chart to a file or directory inside the
// manifests or static charts directory; it cannot name anything outside
// them.
func (d Dirs) chartPath(spec ChartSpec) (string, error) {
	name := spec.Chart
	if spec.Repo != "" || (strings.Contains(name, "://") && !strings.HasPrefix(name, staticChartsURL)) {
		return "", fmt.Errorf("chart %q comes from a repository, which skiff's Helm controller does not reach: put the chart archive in spec.chartContent, or the chart in %s and name it relative to that directory", name, d.Manifests)
	}
	if name == "" {
		return "", errors.New("the HelmChart names no chart: set spec.chart or spec.chartContent")
	}
	dir := d.Manifests
	if rest, ok := strings.CutPrefix(name, staticChartsURL); ok {
		dir, name = d.StaticCharts, rest
	}
	// Cleaned as an absolute path first, so that no ".." leaves dir.
	return filepath.Join(dir, filepath.Clean("/"+name)), nil
}

func digestBytes(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// digestPath hashes a chart archive, or every file of a chart directory
// with its relative name.
func digestPath(path string) (string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if !info.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		if _, err := io.Copy(h, f); err != nil {
			return "", err
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	err = filepath.WalkDir(path, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(path, p)
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(data))
		h.Write(data)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}
