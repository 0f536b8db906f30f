package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/events"
	"github.com/skiff-dev/skiff/internal/kubeclient"
	"github.com/skiff-dev/skiff/internal/lifecycle"
	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/pki"
	"github.com/skiff-dev/skiff/pkg/supervisor"
)

// renewCertificates is the node's part that checks its certificates every
// --certificate-check-interval and, when one is within pki.RenewBefore of
// its expiry, joins again for new ones: the server signs certificates for
// the keys the node already has, and the files are replaced at once. The
// kubelet reloads its serving certificate, and every client of the node
// (kubelet, kube-proxy, flannel, the local-path provisioner) its client
// certificate, without a restart. The renewal is recorded as an event on
// the node.
func renewCertificates(cfg *config.Agent) lifecycle.Component {
	return lifecycle.Every("certificate renewal", cfg.Node.CertificateCheckInterval, func(ctx context.Context) {
		renewDueCertificates(ctx, cfg)
	})
}

// renewDueCertificates is one check of renewCertificates.
func renewDueCertificates(ctx context.Context, cfg *config.Agent) {
	due, err := dueCertificates(cfg.TLSDir(), time.Now())
	if err != nil {
		klog.ErrorS(err, "Checking the node's certificates; checking again later")
	}
	if len(due) == 0 {
		return
	}
	eventType, reason, message := corev1.EventTypeNormal, "CertificateRenewed", "renewed "+strings.Join(due, ", ")
	opts, err := joinOptions(cfg)
	if err == nil {
		_, err = supervisor.Join(ctx, opts)
	}
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		klog.ErrorS(err, "Renewing the node's certificates failed; retrying at the next check", "due", due)
		eventType, reason, message = corev1.EventTypeWarning, "CertificateRenewalFailed", fmt.Sprintf("renewing %s: %v", strings.Join(due, ", "), err)
	} else {
		klog.InfoS("Renewed the node's certificates", "renewed", due)
	}
	if client, cerr := kubeclient.New(cfg.KubeletKubeconfig(), "skiff-agent"); cerr == nil {
		events.Record(ctx, client, "skiff-agent", events.Node(cfg.NodeName), eventType, reason, message)
	}
}

// dueCertificates names the files of the node's certificates (not the CAs) that expire
// within pki.RenewBefore of now.
func dueCertificates(tlsDir string, now time.Time) ([]string, error) {
	certs, err := pki.Inventory(tlsDir)
	if err != nil {
		return nil, err
	}
	var due []string
	for _, c := range certs {
		if !c.IsCA && c.Status(now) != "OK" {
			due = append(due, filepath.Base(c.Path))
		}
	}
	return due, nil
}
