package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/tests/harness"
)

type installRun struct {
	toReady, upgrade   time.Duration
	apiDown, podDown   time.Duration
	podFailed, podSeen int
}

// benchInstall times install.sh on this machine (no init system, the
// supervised process): from a clean host to the node Ready, and an upgrade
// to a new binary while a pod serves HTTP, polling the API's /readyz and
// the pod every 100 ms to find the longest gap of each. Every run ends with
// the uninstall script. It prints the binaries' sizes (dist/ too, after
// `make release`).
func benchInstall(runs int, dist string) error {
	bin, root, busybox, err := nodeBenchSetup("install")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	upgraded := filepath.Join(root, "skiff-upgraded")
	if err := harness.CopyAndMark(bin, upgraded); err != nil {
		return err
	}
	var rs []installRun
	for i := range runs {
		r, err := installOnce(bin, upgraded, busybox, filepath.Join(root, fmt.Sprint(i)), i)
		if err != nil {
			return err
		}
		rs = append(rs, r)
		fmt.Printf("run %d: install to Ready %s; upgrade %s, API without /readyz %s, pod unanswered %s (%d of %d probes failed)\n",
			i+1, r.toReady.Round(time.Millisecond), r.upgrade.Round(time.Millisecond), r.apiDown, r.podDown, r.podFailed, r.podSeen)
	}
	pick := func(f func(installRun) time.Duration) []time.Duration {
		var out []time.Duration
		for _, r := range rs {
			out = append(out, f(r))
		}
		return out
	}
	fmt.Printf("\ninstall.sh, no init system, median of %d runs (min-max):\n", runs)
	fmt.Printf("  install.sh to node Ready:                 %s\n", spread(pick(func(r installRun) time.Duration { return r.toReady })))
	fmt.Printf("  upgrade (install.sh, new binary):         %s\n", spread(pick(func(r installRun) time.Duration { return r.upgrade })))
	fmt.Printf("  API downtime in the upgrade (no /readyz): %s\n", spread(pick(func(r installRun) time.Duration { return r.apiDown })))
	fmt.Printf("  pod downtime in the upgrade:              %s\n", spread(pick(func(r installRun) time.Duration { return r.podDown })))
	fmt.Println("\nbinary sizes:")
	for _, path := range append([]string{bin}, globOrNil(filepath.Join(dist, "skiff-*"))...) {
		if info, err := os.Stat(path); err == nil && filepath.Ext(path) != ".sh" {
			fmt.Printf("  %-40s %6.1f MiB\n", path, float64(info.Size())/(1<<20))
		}
	}
	return nil
}

func globOrNil(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	return m
}

func installOnce(bin, upgraded, busybox, root string, n int) (r installRun, err error) {
	in, err := harness.NewInstallation(root, n)
	if err != nil {
		return r, err
	}
	if err := copyFile(busybox, filepath.Join(in.DataDir, "agent", "images", "busybox.tar")); err != nil {
		return r, err
	}
	defer func() {
		if uerr := in.Uninstall(); uerr != nil && err == nil {
			err = uerr
		}
	}()
	start := time.Now()
	if stdout, stderr, err := in.Install(in.Args(), "INSTALL_SKIFF_BINARY="+bin); err != nil {
		return r, fmt.Errorf("install.sh: %w\n%s\n%s", err, stdout, stderr)
	}
	r.toReady = time.Since(start)

	rc, err := clientcmd.BuildConfigFromFlags("", in.Kubeconfig)
	if err != nil {
		return r, err
	}
	rc.Timeout = time.Second
	c := kubernetes.NewForConfigOrDie(rc)
	podIP, err := startHTTPPod(c)
	if err != nil {
		return r, err
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var api, pod prober
	wg.Go(func() {
		api.run(ctx, func(ctx context.Context) error {
			_, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			return err
		})
	})
	client := &http.Client{Timeout: time.Second}
	wg.Go(func() {
		pod.run(ctx, func(context.Context) error {
			resp, err := client.Get("http://" + podIP + ":8080/")
			if err == nil {
				resp.Body.Close()
			}
			return err
		})
	})
	start = time.Now()
	stdout, stderr, err := in.Install(in.Args(), "INSTALL_SKIFF_BINARY="+upgraded)
	r.upgrade = time.Since(start)
	time.Sleep(2 * time.Second) // the probes see the settled state too
	stop()
	wg.Wait()
	if err != nil {
		return r, fmt.Errorf("install.sh with a new binary: %w\n%s\n%s", err, stdout, stderr)
	}
	r.apiDown, r.podDown, r.podFailed, r.podSeen = api.longest, pod.longest, pod.failed, pod.seen
	return r, nil
}

// prober calls probe every 100 ms and keeps the longest run of failures.
type prober struct {
	longest      time.Duration
	failed, seen int
}

func (p *prober) run(ctx context.Context, probe func(context.Context) error) {
	var downSince time.Time
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := probe(ctx)
		now := time.Now()
		p.seen++
		switch {
		case err != nil && downSince.IsZero():
			downSince = now
			p.failed++
		case err != nil:
			p.failed++
		case !downSince.IsZero():
			p.longest = max(p.longest, now.Sub(downSince).Round(100*time.Millisecond))
			downSince = time.Time{}
		}
		select {
		case <-ctx.Done():
			if !downSince.IsZero() {
				p.longest = max(p.longest, now.Sub(downSince).Round(100*time.Millisecond))
			}
			return
		case <-tick.C:
		}
	}
}

// startHTTPPod runs busybox httpd in a pod and returns its IP once it
// serves.
func startHTTPPod(c kubernetes.Interface) (string, error) {
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "httpd"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "httpd", Image: harness.BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"busybox", "httpd", "-f", "-p", "8080", "-h", "/"},
			}},
		},
	}
	if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	var ip string
	client := &http.Client{Timeout: time.Second}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := c.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || p.Status.PodIP == "" {
			return false, nil
		}
		ip = p.Status.PodIP
		resp, err := client.Get("http://" + ip + ":8080/")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return true, nil
	})
	if err != nil {
		return "", errors.New("the httpd pod did not serve within 2 minutes")
	}
	return ip, nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}
