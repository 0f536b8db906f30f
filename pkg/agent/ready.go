package agent

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/kubeclient"
	"github.com/skiff-dev/skiff/internal/lifecycle"
	"github.com/skiff-dev/skiff/internal/sdnotify"
	"github.com/skiff-dev/skiff/pkg/config"
)

// Ready is the node's last part: once its Node is Ready it says so in the
// log ("This node is Ready", what install.sh waits for) and to the service
// manager on notifySocket (READY=1 for a systemd Type=notify unit).
func Ready(cfg *config.Agent, notifySocket string) lifecycle.Component {
	start := time.Now()
	return lifecycle.Step("readiness", func(ctx context.Context) error {
		client, err := kubeclient.New(cfg.KubeletKubeconfig(), "skiff-agent")
		if err != nil {
			return err
		}
		// No deadline of its own: a service manager or install.sh decides
		// how long is too long; a slow node is still starting, not broken.
		err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			n, err := client.CoreV1().Nodes().Get(ctx, cfg.NodeName, metav1.GetOptions{})
			if err != nil {
				return false, nil // not registered yet, or a transient error
			}
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady {
					return c.Status == corev1.ConditionTrue, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return err
		}
		klog.InfoS("This node is Ready", "node", cfg.NodeName, "after", time.Since(start).Round(time.Millisecond))
		sdnotify.Ready(notifySocket)
		return nil
	})
}
