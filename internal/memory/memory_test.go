package memory

import (
	"os"
	"testing"
)

func TestParseSmaps(t *testing.T) {
	data := []byte(`00400000-00401000 r--p 00000000 fe:00 10118435   /usr/bin/skiff
Rss:                   4 kB
Anonymous:             0 kB
12f4b000-12f51000 r--p 12b4a000 fe:00 10118435   /usr/bin/skiff
Rss:                  24 kB
Private_Dirty:        24 kB
Anonymous:            24 kB
7f6250193000-7f625019b000 rw-s 00000000 fe:00 10299570   /var/lib/skiff/server/db/state.db-shm
Rss:                  32 kB
`)
	got := parseSmaps(data)
	if len(got) != 3 {
		t.Fatalf("got %d mappings, want 3: %+v", len(got), got)
	}
	if m := got[0]; m.start != 0x400000 || m.end != 0x401000 || m.perms != "r--p" || m.path != "/usr/bin/skiff" || m.rss != 4096 || m.anonymous != 0 {
		t.Errorf("first mapping: %+v", m)
	}
	if m := got[1]; m.anonymous != 24<<10 {
		t.Errorf("relocated mapping: %+v", m)
	}
}

// The test binary drops its own code's pages and keeps running: what it
// runs next faults back in.
func TestDropStartupPages(t *testing.T) {
	resident := func() int64 {
		exe, err := os.Readlink("/proc/self/exe")
		if err != nil {
			t.Fatal(err)
		}
		smaps, err := os.ReadFile("/proc/self/smaps")
		if err != nil {
			t.Fatal(err)
		}
		var rss int64
		for _, m := range parseSmaps(smaps) {
			if m.path == exe && m.perms[1] != 'w' && m.anonymous == 0 {
				rss += m.rss
			}
		}
		return rss
	}
	before := resident()
	dropped, err := DropStartupPages()
	if err != nil {
		t.Fatal(err)
	}
	after := resident()
	if dropped == 0 || after >= before {
		t.Fatalf("dropped %d bytes; the binary's clean pages went from %d to %d bytes resident", dropped, before, after)
	}
	t.Logf("dropped %d KiB; resident %d KiB before, %d KiB after", dropped>>10, before>>10, after>>10)
}
