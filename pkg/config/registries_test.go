package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadRegistries(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(text string) string {
		path := filepath.Join(dir, "registries.yaml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	// k3s's own example, unchanged.
	r, err := LoadRegistries(write(`mirrors:
  docker.io:
    endpoint:
      - "https://mirror.example.com:5000"
  "*":
    endpoint: ["mirror.example.com:5000"]
configs:
  "mirror.example.com:5000":
    auth:
      username: xxxxxx
      password: xxxxxx
    tls:
      ca_file: ` + ca + `
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Mirrors["docker.io"].Endpoints; len(got) != 1 || got[0] != "https://mirror.example.com:5000" {
		t.Errorf("docker.io mirror: %v", got)
	}
	if c := r.Configs["mirror.example.com:5000"]; c.Auth.Username != "xxxxxx" || c.TLS.CAFile != ca {
		t.Errorf("config: %+v", c)
	}

	// The default path may be absent; a path the user names may not.
	if _, err := os.Stat(DefaultPrivateRegistry); os.IsNotExist(err) {
		if r, err := LoadRegistries(DefaultPrivateRegistry); r != nil || err != nil {
			t.Errorf("absent default path: %v, %v", r, err)
		}
	}
	if _, err := LoadRegistries(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file the user named was accepted")
	}

	for text, want := range map[string]string{
		"mirrors: [1": "--private-registry",
		"mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]\n":           "not a URL",
		"mirrors:\n  docker.io:\n    rewrite: {\"^a\": \"b\"}\n":          "unknown field",
		"mirrors:\n  \"bad host/x\":\n    endpoint: [\"https://m\"]\n":    "not a registry's host",
		"configs:\n  m:\n    tls:\n      cert_file: " + ca + "\n":         "both cert_file and key_file",
		"configs:\n  m:\n    tls:\n      ca_file: " + dir + "/nope.crt\n": "nope.crt",
		"configs:\n  m:\n    auth:\n      username: a\n    token: x\n":    "unknown field",
	} {
		if _, err := LoadRegistries(write(text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one with %q", text, err, want)
		}
	}
}
