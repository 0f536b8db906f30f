package memory

import "testing"

// A $GOGC or $GOMEMLIMIT is the user's unless skiff's own parent set it;
// then the process lowers it when it settles.
func TestUserChoseGC(t *testing.T) {
	for _, c := range []struct {
		gogc, limit, chosen string
		want                bool
	}{
		{want: false},
		{gogc: "100", want: true},
		{limit: "512MiB", want: true},
		{gogc: "50", chosen: "1", want: false},
		{gogc: "50", chosen: "yes", want: true},
	} {
		t.Setenv("GOGC", c.gogc)
		t.Setenv("GOMEMLIMIT", c.limit)
		t.Setenv(gcChosenEnv, c.chosen)
		if got := userChoseGC(); got != c.want {
			t.Errorf("GOGC=%q GOMEMLIMIT=%q %s=%q: userChoseGC %v, want %v", c.gogc, c.limit, gcChosenEnv, c.chosen, got, c.want)
		}
	}
}
