package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // the server's datastore, read directly
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/pkg/encryption"
	"github.com/skiff-dev/skiff/tests/harness"
)

// TestSecretsEncryption: a cluster started without encryption keeps a
// Secret in plaintext; started again with the default, it rewrites that
// Secret encrypted, a new Secret never reaches the datastore in
// plaintext, and `skiff secrets-encrypt status` says so; `rotate-keys`
// then rewrites both with a new key.
func TestSecretsEncryption(t *testing.T) {
	s := startServer(t, "--secrets-encryption=false")
	ctx := context.Background()
	createSecret(t, ctx, s, "old", "old-plaintext-4f7a")
	mustStop(t, s)
	if v := latestValue(t, s, "/registry/secrets/default/old"); !bytes.Contains(v, []byte("old-plaintext-4f7a")) {
		t.Fatalf("without encryption the Secret is not in plaintext in state.db (the check would prove nothing): %.60q", v)
	}

	s.Args = nil // the default: encrypted
	mustStart(t, s)
	configFile := filepath.Join(s.DataDir, "server", "cred", "encryption-config.json")
	key, err := encryption.CurrentKey(configFile)
	if err != nil {
		t.Fatal(err)
	}
	c := kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		cm, err := c.CoreV1().ConfigMaps("kube-system").Get(ctx, encryption.StateName, metav1.GetOptions{})
		return err == nil && cm.Data["key"] == key, nil
	})
	if err != nil {
		t.Fatalf("the Secrets were not rewritten with key %s: %v", key, err)
	}
	createSecret(t, ctx, s, "new", "new-plaintext-9c2e")
	status := skiffCommand(t, s, true, "secrets-encrypt", "status", "--kubeconfig", s.Kubeconfig())
	if !strings.Contains(status, "Encryption: enabled") || !strings.Contains(status, key) || !strings.Contains(status, "rewritten with this key") {
		t.Errorf("secrets-encrypt status:\n%s", status)
	}
	t.Logf("skiff secrets-encrypt status:\n%s", status)

	// rotate-keys: a new key, every Secret rewritten with it, the old key
	// dropped from the configuration.
	start := time.Now()
	rotated := skiffCommand(t, s, true, "secrets-encrypt", "rotate-keys", "--kubeconfig", s.Kubeconfig())
	t.Logf("skiff secrets-encrypt rotate-keys (%s):\n%s", time.Since(start).Round(time.Millisecond), rotated)
	oldKey := key
	if key, err = encryption.CurrentKey(configFile); err != nil || key == oldKey {
		t.Fatalf("after rotate-keys the key is %s (%v), was %s", key, err, oldKey)
	}
	if !strings.Contains(rotated, "rewritten ") || !strings.Contains(rotated, "every Secret") {
		t.Errorf("rotate-keys printed no progress or end:\n%s", rotated)
	}
	if data, err := os.ReadFile(configFile); err != nil || bytes.Contains(data, []byte(oldKey)) {
		t.Errorf("the old key %s is still in %s (%v)", oldKey, configFile, err)
	}
	if status := skiffCommand(t, s, true, "secrets-encrypt", "status", "--kubeconfig", s.Kubeconfig()); !strings.Contains(status, key) || !strings.Contains(status, "rewritten with this key") {
		t.Errorf("secrets-encrypt status after rotate-keys:\n%s", status)
	}
	mustStop(t, s)

	prefix := []byte("k8s:enc:secretbox:v1:" + key + ":")
	for _, name := range []string{"old", "new"} {
		if v := latestValue(t, s, "/registry/secrets/default/"+name); !bytes.HasPrefix(v, prefix) || bytes.Contains(v, []byte("plaintext")) {
			t.Errorf("Secret %s as stored: %.60q, want it encrypted with %s", name, v, key)
		}
	}
	for _, file := range []string{"state.db", "state.db-wal"} {
		data, err := os.ReadFile(filepath.Join(s.DataDir, "server", "db", file))
		if err == nil && bytes.Contains(data, []byte("new-plaintext-9c2e")) {
			t.Errorf("%s holds the new Secret's value in plaintext", file)
		}
	}
}

func createSecret(t *testing.T, ctx context.Context, s *harness.Server, name, value string) {
	t.Helper()
	c := kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"password": value}}
	if _, err := c.CoreV1().Secrets("default").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// latestValue reads a key's newest value from the stopped server's SQLite
// datastore (kine's table).
func latestValue(t *testing.T, s *harness.Server, key string) []byte {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(s.DataDir, "server", "db", "state.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var value []byte
	if err := db.QueryRow("SELECT value FROM kine WHERE name = ? ORDER BY id DESC LIMIT 1", key).Scan(&value); err != nil {
		t.Fatalf("reading %s from state.db: %v", key, err)
	}
	return value
}
