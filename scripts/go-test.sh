#!/bin/sh
# Runs a `go test` command line and, when it fails, repeats at the end
# what each failing test said: its own messages (file.go:line: ...), not the
# server and database logs its cleanups print. Those logs come after the
# failure message in the output, so whoever reads only the end of a long
# run (a CI summary) would otherwise see logs and no reason.
#
#   scripts/go-test.sh go test -v ./tests/e2e/...
set -u

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The output goes on to the terminal as it comes; the command's status
# comes out of the pipe through a file.
{
	"$@" 2>&1
	echo $? >"$tmp/status"
} | tee "$tmp/log"
status=$(cat "$tmp/status" 2>/dev/null || echo 1)
if [ "$status" -ne 0 ]; then
	# With -v a test's messages come between its "=== RUN" (or "=== CONT")
	# and its "--- FAIL"; a message's first line is indented and starts
	# with the file and line that logged it. The last 40 per test are kept.
	awk '
		/^=== (RUN|CONT|NAME) / { split($3, name, "/"); test = name[1]; next }
		/^ +[A-Za-z0-9_.-]+\.go:[0-9]+: / {
			n = ++count[test]; said[test, n] = $0
			next
		}
		# Without -v the messages of a failing test follow its "--- FAIL".
		/^--- FAIL: / { failed[++nfailed] = $3; test = $3 }
		END {
			if (nfailed == 0) exit
			print ""
			print "==> what the failing tests said (log dumps left out):"
			for (i = 1; i <= nfailed; i++) {
				t = failed[i]
				print "--- FAIL: " t
				first = count[t] > 40 ? count[t] - 39 : 1
				for (n = first; n <= count[t]; n++) print said[t, n]
			}
		}
	' "$tmp/log"
fi
exit "$status"
