package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/events"
	"github.com/skiff-dev/skiff/internal/lifecycle"
	"github.com/skiff-dev/skiff/pkg/pki"
)

// ensureCertificates issues the server's certificates that are missing,
// lack a name, or expire within pki.RenewBefore (the etcd member's too),
// writes the components' kubeconfigs, and returns what it issued. It runs
// at start and, to renew, while the server runs: every process reloads the
// files it changes (see renewCertificates).
func (s *Server) ensureCertificates() ([]pki.Issued, error) {
	names, err := s.servingNames()
	if err != nil {
		return nil, err
	}
	issued, err := pki.Ensure(s.tls, names)
	if err != nil {
		return issued, fmt.Errorf("certificates in %s: %w", s.tls, err)
	}
	if s.etcd != nil {
		more, err := pki.EnsureEtcd(s.tls, []net.IP{s.advertise})
		issued = append(issued, more...)
		if err != nil {
			return issued, fmt.Errorf("certificates in %s: %w", s.tls.EtcdDir(), err)
		}
	}
	if err := os.MkdirAll(s.cfg.CredDir(), 0o700); err != nil {
		return issued, fmt.Errorf("creating %s: %w", s.cfg.CredDir(), err)
	}
	for name, cert := range map[string]string{
		"admin.kubeconfig":      pki.ClientAdmin,
		"controller.kubeconfig": pki.ClientController,
		"scheduler.kubeconfig":  pki.ClientScheduler,
	} {
		// The files, not their contents: client-go reloads a client
		// certificate given as a file when it changes.
		kc := pki.Kubeconfig{Server: s.LocalURL(), CA: s.tls.Cert(pki.ServerCA), Cert: s.tls.Cert(cert), Key: s.tls.Key(cert)}
		if err := kc.Write(filepath.Join(s.cfg.CredDir(), name), 0o600); err != nil {
			return issued, fmt.Errorf("writing kubeconfig: %w", err)
		}
	}
	return issued, nil
}

// servingNames are the names and addresses the apiserver's certificate
// carries.
func (s *Server) servingNames() (certutil.AltNames, error) {
	serviceIP, err := s.cfg.APIServerServiceIP()
	if err != nil {
		return certutil.AltNames{}, err
	}
	return pki.ServingNames(s.cfg.ClusterDomain, serviceIP, []net.IP{s.advertise}, s.cfg.TLSSANs), nil
}

// writeAdminKubeconfig writes the user's admin kubeconfig
// (--write-kubeconfig), with the certificate in it.
func (s *Server) writeAdminKubeconfig() error {
	kc := pki.Kubeconfig{Server: s.LocalURL(), CA: s.tls.Cert(pki.ServerCA), Cert: s.tls.Cert(pki.ClientAdmin), Key: s.tls.Key(pki.ClientAdmin), Embed: true}
	if err := kc.Write(s.cfg.WriteKubeconfig, s.cfg.WriteKubeconfigMode); err != nil {
		return fmt.Errorf("writing the admin kubeconfig %s: %w; choose another path with --write-kubeconfig", s.cfg.WriteKubeconfig, err)
	}
	return nil
}

// renewCertificates is the server's part that checks its certificates
// every --certificate-check-interval and renews those due without a
// restart: a renewed certificate keeps its key and its file is replaced at
// once, and the apiserver (serving, kubelet-client and front-proxy
// certificates), the in-process components' client-go clients and etcd
// all read the files again. Each renewal is logged and recorded as an
// event in kube-system.
func (s *Server) renewCertificates() lifecycle.Component {
	return lifecycle.Every("certificate renewal", s.cfg.Node.CertificateCheckInterval, s.renewDueCertificates)
}

// renewDueCertificates is one check of renewCertificates.
func (s *Server) renewDueCertificates(ctx context.Context) {
	issued, err := s.ensureCertificates()
	if slices.ContainsFunc(issued, func(i pki.Issued) bool { return i.Name == pki.ClientAdmin }) {
		if werr := s.writeAdminKubeconfig(); werr != nil {
			klog.ErrorS(werr, "Writing the renewed admin certificate")
		}
	}
	host, _ := os.Hostname()
	if len(issued) > 0 {
		var what []string
		for _, i := range issued {
			what = append(what, fmt.Sprintf("%s (%s; now until %s)", i.Name, i.Reason, i.NotAfter.UTC().Format(time.DateOnly)))
		}
		events.Record(ctx, s.admin, "skiff-certificates", events.SystemNamespace(), corev1.EventTypeNormal, "CertificateRenewed",
			fmt.Sprintf("server %s renewed %s", host, strings.Join(what, ", ")))
	}
	if err != nil {
		klog.ErrorS(err, "Renewing certificates failed; retrying at the next check")
		events.Record(ctx, s.admin, "skiff-certificates", events.SystemNamespace(), corev1.EventTypeWarning, "CertificateRenewalFailed",
			fmt.Sprintf("server %s: %v", host, err))
	}
}
