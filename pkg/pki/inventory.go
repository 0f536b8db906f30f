package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	certutil "k8s.io/client-go/util/cert"
)

// CertInfo is one certificate file's first certificate, for
// `skiff certificate check`.
type CertInfo struct {
	Path     string
	Subject  string
	NotAfter time.Time
	IsCA     bool
}

// DaysLeft is how many whole days remain until it expires (negative once
// it has).
func (c CertInfo) DaysLeft(now time.Time) int { return int(c.NotAfter.Sub(now).Hours() / 24) }

// Status is OK, RENEW (a leaf within RenewBefore: the next start
// re-issues it), EXPIRING (a CA within RenewBefore, which nothing renews)
// or EXPIRED.
func (c CertInfo) Status(now time.Time) string {
	switch {
	case !now.Before(c.NotAfter):
		return "EXPIRED"
	case c.NotAfter.Sub(now) < RenewBefore && c.IsCA:
		return "EXPIRING"
	case c.NotAfter.Sub(now) < RenewBefore:
		return "RENEW"
	}
	return "OK"
}

// Inventory reads every certificate (*.crt) under the given directories,
// which need not exist, in path order. Earlier rotations' backups are
// skipped.
func Inventory(dirs ...string) ([]CertInfo, error) {
	var certs []CertInfo
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			switch {
			case errors.Is(err, fs.ErrNotExist) && path == dir:
				return fs.SkipDir
			case err != nil:
				return err
			case d.IsDir() && strings.HasPrefix(d.Name(), rotatedPrefix):
				return fs.SkipDir
			case d.IsDir() || filepath.Ext(path) != ".crt":
				return nil
			}
			parsed, err := certutil.CertsFromFile(path)
			if err != nil {
				return fmt.Errorf("reading %s: %w", path, err)
			}
			c := parsed[0]
			certs = append(certs, CertInfo{Path: path, Subject: c.Subject.CommonName, NotAfter: c.NotAfter, IsCA: c.IsCA})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(certs, func(a, b CertInfo) int { return strings.Compare(a.Path, b.Path) })
	return certs, nil
}

// Services are the names `skiff certificate rotate --service` takes, by
// the leaf certificates of the server's TLS directory each one names.
// CAs are not among them: everything they issued depends on them.
func Services() map[string][]string {
	return map[string][]string{
		"admin":              {ClientAdmin},
		"api-server":         {ServingAPIServer, ServingAPIServerChain, ClientAPIServer},
		"auth-proxy":         {ClientAuthProxy},
		"controller-manager": {ClientController},
		"scheduler":          {ClientScheduler},
		"etcd":               {"etcd/" + EtcdServing, "etcd/" + EtcdPeer, "etcd/" + EtcdClient},
	}
}

// rotatedPrefix starts the directory a rotation moves certificates to.
const rotatedPrefix = "rotated-"

// Rotate moves the leaf certificates and keys of the named services (all
// when none are named) out of dir into a dated directory beside them, so
// that the server's next start issues new ones from the same CAs; nothing
// is deleted. It returns that directory and the files it moved.
func Rotate(dir Dir, services []string, now time.Time) (string, []string, error) {
	all := Services()
	if len(services) == 0 {
		for name := range all {
			services = append(services, name)
		}
		slices.Sort(services)
	}
	var names []string
	for _, s := range services {
		leaves, ok := all[s]
		if !ok {
			known := make([]string, 0, len(all))
			for name := range all {
				known = append(known, name)
			}
			slices.Sort(known)
			return "", nil, fmt.Errorf("unknown service %q; known: %s", s, strings.Join(known, ", "))
		}
		names = append(names, leaves...)
	}
	backup := filepath.Join(string(dir), rotatedPrefix+now.UTC().Format("20060102T150405Z"))
	var moved []string
	for _, name := range names {
		for _, file := range []string{dir.Cert(name), dir.Key(name)} {
			if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
				continue // a chain has no key; no etcd without --cluster-init
			}
			rel, _ := filepath.Rel(string(dir), file)
			to := filepath.Join(backup, rel)
			if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
				return backup, moved, err
			}
			if err := os.Rename(file, to); err != nil {
				return backup, moved, fmt.Errorf("moving %s aside: %w", file, err)
			}
			moved = append(moved, rel)
		}
	}
	return backup, moved, nil
}
