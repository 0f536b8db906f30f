package memory

import (
	"os"
	"runtime/debug"
	"strconv"
)

// StartGCPercent is the garbage collector's target while a process starts,
// unless $GOGC sets another: the heap may grow by half of what is live
// before a collection, not by all of it. Measured with `make
// bench-footprint`: the server's anonymous memory went from 273 to 218 MiB
// for 0.7% more of one core idle.
//
// SettledGCPercent is the target once start-up is over (settle). 25 from
// the start cost node Ready 0.6 s on 2 cores (5.0 to 5.6 s, make
// bench-footprint) for what start-up allocates. Once settled it keeps the
// server's anonymous memory 26 MiB lower (239 to 213 MiB) for one or two
// percent more of one core idle (5.7% to 6.4-7.7%, noisy).
const (
	StartGCPercent   = 50
	SettledGCPercent = 25
)

// gcChosenEnv marks the $GOGC that SetGCPercent puts in the environment
// (for containerd to inherit) as skiff's choice, not the user's, so that
// the process still lowers it once settled.
const gcChosenEnv = "SKIFF_GOGC_CHOSEN"

// SetGCPercent applies StartGCPercent unless the user's $GOGC (or
// $GOMEMLIMIT, a limit they chose instead) says otherwise; children
// started later inherit it through $GOGC (containerd, which keeps it).
func SetGCPercent() {
	if userChoseGC() {
		return
	}
	debug.SetGCPercent(StartGCPercent)
	os.Setenv("GOGC", strconv.Itoa(StartGCPercent))
	os.Setenv(gcChosenEnv, "1")
}

// lowerGCPercent sets SettledGCPercent, unless the user chose the
// collector's settings, and returns the heap start-up left free to the
// system at once: the runtime would give it back only as its scavenger
// paces it.
func lowerGCPercent() (int, bool) {
	if userChoseGC() {
		return 0, false
	}
	debug.SetGCPercent(SettledGCPercent)
	debug.FreeOSMemory()
	return SettledGCPercent, true
}

// userChoseGC says whether $GOGC or $GOMEMLIMIT is the user's, not one
// that skiff set for the process that started this one.
func userChoseGC() bool {
	if os.Getenv(gcChosenEnv) == "1" {
		return false
	}
	return os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != ""
}
