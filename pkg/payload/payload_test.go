package payload

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestUnpackRepairsDamage(t *testing.T) {
	dataDir := t.TempDir()
	bin, err := Unpack(dataDir)
	if errors.Is(err, ErrMissing) {
		t.Skip("built without the payload; `make test` builds it")
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"runc", "containerd-shim-runc-v2", "bridge", "host-local", "loopback", "portmap"} {
		if info, err := os.Stat(filepath.Join(bin, name)); err != nil || info.Mode()&0o111 == 0 {
			t.Errorf("%s: %v %v", name, info, err)
		}
	}
	runc := filepath.Join(bin, "runc")
	if err := os.WriteFile(runc, []byte("damaged"), 0o755); err != nil {
		t.Fatal(err)
	}
	again, err := Unpack(dataDir)
	if err != nil || again != bin {
		t.Fatalf("second unpack: %s %v", again, err)
	}
	if info, _ := os.Stat(runc); info.Size() < 1<<20 {
		t.Errorf("damaged runc not replaced: %d bytes", info.Size())
	}
	images, err := Images()
	if err != nil || images["pause.tar"].Open == nil {
		t.Fatalf("embedded images: %v %v", len(images), err)
	}
	// Each recorded digest is that of the bytes Open reads.
	for name, a := range images {
		r, err := a.Open()
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, r)
		r.Close()
		if err != nil || n == 0 {
			t.Errorf("reading %s: %d bytes, %v", name, n, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != a.Digest {
			t.Errorf("%s: read sha256 %s, recorded %s", name, got, a.Digest)
		}
	}
}

func TestParseSums(t *testing.T) {
	sum := "0123456789012345678901234567890123456789012345678901234567890123"
	got, err := parseSums([]byte(sum + "  runc\n" + sum + "  bridge\n"))
	if err != nil || len(got) != 2 || got["runc"] != sum {
		t.Errorf("%v %v", got, err)
	}
	for _, bad := range []string{"", "abc  runc\n", sum + "  ../escape\n", sum + " runc\n"} {
		if _, err := parseSums([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
