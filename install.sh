#!/bin/sh
# Installs skiff on this machine and starts it as a service, with no internet:
#
#   sudo ./install.sh                       # a server, from dist/ or this checkout
#   sudo ./install.sh --tls-san edge.example --disable ingress
#   sudo SKIFF_URL=https://server:6443 SKIFF_TOKEN=T ./install.sh    # an agent
#   cat install.sh | sudo INSTALL_SKIFF_BINARY=/tmp/skiff-arm64 sh -s - --node-name pi1
#
# Arguments become the service's settings in /etc/skiff/config.yaml (skiff
# checks them first). Running it again with the same input changes nothing;
# with a new binary or new arguments it updates skiff and restarts it, and
# running pods keep running. It installs skiff-killall.sh and
# skiff-uninstall.sh beside the binary.
#
# Environment:
#   INSTALL_SKIFF_BINARY      the skiff binary to install. Default: dist/skiff-<arch>
#                             (or skiff-<arch>) beside this script, else `make build`
#                             when run from a source checkout. A sha256sum.txt beside
#                             the binary that names it is checked. A release binary
#                             (a launcher and the compressed program) is unpacked
#                             into the bin dir: the program is what gets installed.
#   INSTALL_SKIFF_BIN_DIR     where to install it (default /usr/local/bin, or /opt/bin
#                             when that is read-only)
#   INSTALL_SKIFF_SYMLINK     kubectl, ctr and crictl symlinks: created unless such a
#                             command exists (default), `skip`, or `force`
#   INSTALL_SKIFF_EXEC        the command and settings, before the arguments:
#                             "server --disable ingress", "--node-name a"
#   INSTALL_SKIFF_NAME        the service's name (default skiff, or skiff-agent)
#   INSTALL_SKIFF_INIT        systemd, openrc or none (default: what runs this machine;
#                             none: a supervised background process)
#   INSTALL_SKIFF_SYSTEMD_DIR where the systemd unit goes (default /etc/systemd/system)
#   INSTALL_SKIFF_OPENRC_DIR  where the openrc script goes (default /etc/init.d)
#   INSTALL_SKIFF_SKIP_ENABLE true: do not enable the service at boot
#   INSTALL_SKIFF_SKIP_START  true: install only, do not start or restart
#   INSTALL_SKIFF_FORCE_RESTART true: restart even when nothing changed
#   INSTALL_SKIFF_READY_TIMEOUT seconds to wait for the node to be Ready (default 300)
#   SKIFF_CONFIG_FILE         the config file (default /etc/skiff/config.yaml)
#   SKIFF_URL, SKIFF_TOKEN    join a server as an agent
#   SKIFF_*                   kept for the service in its environment file (mode 0600)
set -eu
set -f # no globbing: arguments and INSTALL_SKIFF_EXEC are split on blanks only

KNOWN_VARS="BINARY BIN_DIR SYMLINK EXEC NAME INIT SYSTEMD_DIR OPENRC_DIR SKIP_ENABLE SKIP_START FORCE_RESTART READY_TIMEOUT"
DEFAULT_CONFIG_FILE=/etc/skiff/config.yaml
CONFIG_MARK="# Written by install.sh"

info() { echo "[INFO]  $*"; }
warn() { echo "[WARN]  $*" >&2; }
# fatal prints one line saying what to do and stops; nothing on the host has
# changed unless the line says so.
fatal() {
	echo "[ERROR] $*" >&2
	exit 1
}

is_bool() { [ "$1" = "" ] || [ "$1" = true ] || [ "$1" = false ]; }

# --- check the input before touching anything ---------------------------------

check_environment() {
	for var in $(env | sed -n 's/^\(INSTALL_SKIFF_[A-Za-z0-9_]*\)=.*/\1/p'); do
		case " $KNOWN_VARS " in
		*" ${var#INSTALL_SKIFF_} "*) ;;
		*) fatal "unknown variable $var (install.sh knows INSTALL_SKIFF_ and then one of: $KNOWN_VARS)" ;;
		esac
	done
	case ${INSTALL_SKIFF_SYMLINK:-} in
	"" | skip | force) ;;
	*) fatal "INSTALL_SKIFF_SYMLINK=$INSTALL_SKIFF_SYMLINK: must be skip or force (or unset)" ;;
	esac
	case ${INSTALL_SKIFF_INIT:-} in
	"" | systemd | openrc | none) ;;
	*) fatal "INSTALL_SKIFF_INIT=$INSTALL_SKIFF_INIT: must be systemd, openrc or none (or unset to detect)" ;;
	esac
	for var in SKIP_ENABLE SKIP_START FORCE_RESTART; do
		eval "value=\${INSTALL_SKIFF_$var:-}"
		# shellcheck disable=SC2154 # set by the eval above
		is_bool "$value" || fatal "INSTALL_SKIFF_$var=$value: must be true or false"
	done
	case ${INSTALL_SKIFF_READY_TIMEOUT:-300} in
	"" | *[!0-9]*) fatal "INSTALL_SKIFF_READY_TIMEOUT=${INSTALL_SKIFF_READY_TIMEOUT}: must be a number of seconds" ;;
	esac
	case ${INSTALL_SKIFF_NAME:-skiff} in
	skiff | skiff-[a-z0-9]*) ;;
	*) fatal "INSTALL_SKIFF_NAME=$INSTALL_SKIFF_NAME: must be skiff or skiff-<lowercase letters, digits, dashes>" ;;
	esac
	case ${INSTALL_SKIFF_NAME:-skiff} in
	*[!a-z0-9-]*) fatal "INSTALL_SKIFF_NAME=$INSTALL_SKIFF_NAME: only lowercase letters, digits and dashes" ;;
	esac
	if [ -n "${SKIFF_URL:-}" ] && [ -z "${SKIFF_TOKEN:-}" ] && [ -z "${SKIFF_TOKEN_FILE:-}" ]; then
		fatal "SKIFF_URL is set but SKIFF_TOKEN is not: an agent needs the server's agent token (sudo cat /var/lib/skiff/server/agent-token on the server)"
	fi
	# The service's environment file quotes each value in single quotes.
	if env | grep -E '^(SKIFF_[A-Z0-9_]*|HTTPS?_PROXY|NO_PROXY)=' | grep -q "'"; then
		fatal "a SKIFF_* or proxy variable holds a single quote, which the service's environment file cannot keep; set that value as an argument instead"
	fi
	for var in INSTALL_SKIFF_BIN_DIR INSTALL_SKIFF_SYSTEMD_DIR INSTALL_SKIFF_OPENRC_DIR SKIFF_CONFIG_FILE; do
		eval "value=\${$var:-/}"
		case $value in
		/*) ;;
		*) fatal "$var=$value: must be an absolute path" ;;
		esac
	done
	[ "$(id -u)" -eq 0 ] || fatal "install.sh must run as root: sudo $0"
}

# machine_arch is this machine's architecture in Go's names.
machine_arch() {
	case $(uname -m) in
	x86_64 | amd64) echo amd64 ;;
	aarch64 | arm64) echo arm64 ;;
	armv7* | armv8l | armhf) echo arm ;;
	*) fatal "this machine's architecture $(uname -m) has no skiff build (amd64, arm64, arm)" ;;
	esac
}

# elf_arch FILE prints the architecture a Linux ELF binary was built for,
# from its header (not by running it: an emulator would hide a mismatch).
elf_arch() {
	# shellcheck disable=SC2046 # one argument per byte
	set -- $(od -An -tx1 -N20 "$1" 2>/dev/null)
	[ "${1:-}${2:-}${3:-}${4:-}" = 7f454c46 ] || { echo none; return; }
	case ${19:-}${20:-} in
	3e00) echo amd64 ;;
	b700) echo arm64 ;;
	2800) echo arm ;;
	*) echo "unknown (e_machine ${19:-}${20:-})" ;;
	esac
}

# The directory of this script, when it was run from a file (not piped).
script_dir() {
	case $0 in
	*install.sh) (cd "$(dirname "$0")" && pwd) ;;
	esac
}

# find_binary sets BINARY_SRC, building it from this checkout when there is
# neither INSTALL_SKIFF_BINARY nor a release beside the script.
find_binary() {
	if [ -n "${INSTALL_SKIFF_BINARY:-}" ]; then
		[ -f "$INSTALL_SKIFF_BINARY" ] || fatal "INSTALL_SKIFF_BINARY=$INSTALL_SKIFF_BINARY: no such file"
		BINARY_SRC=$INSTALL_SKIFF_BINARY
		return
	fi
	for candidate in "$HERE/dist/skiff-$ARCH" "$HERE/skiff-$ARCH"; do
		if [ -n "$HERE" ] && [ -f "$candidate" ]; then
			BINARY_SRC=$candidate
			return
		fi
	done
	if [ -n "$HERE" ] && [ -f "$HERE/Makefile" ] && [ -d "$HERE/cmd/skiff" ]; then
		build_from_source
		BINARY_SRC=$HERE/bin/skiff
		return
	fi
	fatal "no skiff binary for $ARCH: set INSTALL_SKIFF_BINARY=/path/to/skiff, or run install.sh from a release directory (skiff-$ARCH beside it) or a source checkout"
}

build_from_source() {
	PATH=$PATH:/usr/local/go/bin
	command -v go >/dev/null 2>&1 || fatal "building skiff from this checkout needs Go (https://go.dev/dl, in /usr/local/go); or set INSTALL_SKIFF_BINARY"
	info "Building skiff from $HERE (make build; a first build takes about half an hour)"
	"$HERE/scripts/install-deps.sh" build
	make -C "$HERE" build >&2 || fatal "make build failed in $HERE (its output is above)"
}

# check_binary refuses a binary that does not match its checksum file or this
# machine's architecture, or that does not run.
check_binary() {
	sums=$(dirname "$BINARY_SRC")/sha256sum.txt
	base=$(basename "$BINARY_SRC")
	if [ -f "$sums" ] && want=$(awk -v f="$base" '$2 == f || $2 == "*" f { print $1; exit }' "$sums") && [ -n "$want" ]; then
		got=$(sha256sum "$BINARY_SRC" | awk '{ print $1 }')
		[ "$got" = "$want" ] || fatal "$BINARY_SRC does not match $sums (sha256 $got, want $want): the file is damaged or not the released one"
		info "Verified $base against $sums"
	fi
	binary_arch=$(elf_arch "$BINARY_SRC")
	[ "$binary_arch" = none ] && fatal "$BINARY_SRC is not a Linux program (no ELF header)"
	[ "$binary_arch" = "$ARCH" ] || fatal "$BINARY_SRC is built for $binary_arch, but this machine is $ARCH ($(uname -m)): use skiff-$ARCH"
}

# unpack_release unpacks a release binary (a launcher followed by the
# compressed program, see pkg/selfextract) into BIN_DIR, so that what is
# installed is the program itself: it starts without unpacking, and nothing
# is cached elsewhere. A plain program is installed as it is.
unpack_release() {
	[ "$(tail -c 16 "$BINARY_SRC")" = SKIFF-SFX-V1-END ] || return 0
	mkdir -p "$BIN_DIR"
	unpacked=$(mktemp "$BIN_DIR/.skiff-unpacked.XXXXXX")
	TEMP_FILES="$TEMP_FILES $unpacked"
	out=$("$BINARY_SRC" unpack "$unpacked" 2>&1) || fatal "unpacking $BINARY_SRC into $BIN_DIR: $(echo "$out" | head -n 1)"
	info "Unpacked the skiff program from $BINARY_SRC"
	BINARY_SRC=$unpacked
}

# check_runs sets VERSION from the program, which must run here.
check_runs() {
	out=$("$BINARY_SRC" --version 2>&1) || fatal "$SOURCE does not run: $(echo "$out" | head -n 1)"
	VERSION=$(echo "$out" | head -n 1)
}

# setup_command sets CMD (server or agent) and ARGS, from INSTALL_SKIFF_EXEC,
# the arguments and SKIFF_URL, as k3s's installer does.
setup_command() {
	# shellcheck disable=SC2086 # split INSTALL_SKIFF_EXEC on blanks, as k3s does
	set -- ${INSTALL_SKIFF_EXEC:-} "$@"
	case ${1:-} in
	server | agent)
		CMD=$1
		shift
		;;
	-* | "")
		CMD=server
		[ -n "${SKIFF_URL:-}" ] && CMD=agent
		;;
	*) fatal "unknown command \"$1\" in INSTALL_SKIFF_EXEC or the arguments: skiff installs as server or agent" ;;
	esac
	CONFIG_ARGS_FILE=$(mktemp)
	TEMP_FILES="$TEMP_FILES $CONFIG_ARGS_FILE"
	for a in "$@"; do printf '%s\n' "$a"; done >"$CONFIG_ARGS_FILE"
}

# render_config checks the settings with the binary itself and sets NEW_CONFIG
# to the config file they make.
render_config() {
	NEW_CONFIG=$(mktemp)
	TEMP_FILES="$TEMP_FILES $NEW_CONFIG $NEW_CONFIG.body"
	KEEP_CONFIG=
	set --
	while IFS= read -r a; do set -- "$@" "$a"; done <"$CONFIG_ARGS_FILE"
	if ! out=$("$BINARY_SRC" config "$CMD" "$@" 2>&1 >"$NEW_CONFIG.body"); then
		fatal "invalid settings for skiff $CMD: $(echo "$out" | sed 's/^skiff: //' | tr '\n' ' ')"
	fi
	{
		echo "$CONFIG_MARK from its arguments and INSTALL_SKIFF_EXEC; it rewrites this file on every run."
		echo "# To keep a hand-written file instead, delete these two lines: install.sh then leaves it alone."
		cat "$NEW_CONFIG.body"
	} >"$NEW_CONFIG"
	rm -f "$NEW_CONFIG.body"
	if [ -f "$CONFIG_FILE" ] && ! head -n 1 "$CONFIG_FILE" | grep -q "^$CONFIG_MARK"; then
		if [ -s "$CONFIG_ARGS_FILE" ]; then
			fatal "$CONFIG_FILE was not written by install.sh; it is kept: move these settings into it and run install.sh without arguments, or remove it"
		fi
		info "Keeping the hand-written $CONFIG_FILE"
		cp "$CONFIG_FILE" "$NEW_CONFIG"
		KEEP_CONFIG=1
	fi
}

# config_value KEY prints KEY's value from the new config file (a plain,
# single- or double-quoted scalar), or nothing.
config_value() {
	sed -n "s/^$1:[[:space:]]*//p" "$NEW_CONFIG" | sed 's/[[:space:]]*#.*$//; s/^"\(.*\)"$/\1/; s/^'"'"'\(.*\)'"'"'$/\1/' | tail -n 1
}

setup_paths() {
	NAME=${INSTALL_SKIFF_NAME:-}
	if [ -z "$NAME" ]; then
		NAME=skiff
		[ "$CMD" = agent ] && NAME=skiff-agent
	fi
	if [ -n "${INSTALL_SKIFF_BIN_DIR:-}" ]; then
		BIN_DIR=$INSTALL_SKIFF_BIN_DIR
	else
		BIN_DIR=/usr/local/bin
		if ! mkdir -p "$BIN_DIR" 2>/dev/null || ! touch "$BIN_DIR/.skiff-ro-test" 2>/dev/null; then
			info "$BIN_DIR is read-only; installing to /opt/bin"
			BIN_DIR=/opt/bin
		fi
		rm -f "$BIN_DIR/.skiff-ro-test"
	fi
	CONFIG_FILE=${SKIFF_CONFIG_FILE:-$DEFAULT_CONFIG_FILE}
	ETC_DIR=$(dirname "$CONFIG_FILE")
	ENV_FILE=$ETC_DIR/$NAME.env
	LOG_FILE=/var/log/skiff/$NAME.log
	PID_FILE=/run/$NAME.pid
	SYSTEMD_UNIT=${INSTALL_SKIFF_SYSTEMD_DIR:-/etc/systemd/system}/$NAME.service
	OPENRC_SCRIPT=${INSTALL_SKIFF_OPENRC_DIR:-/etc/init.d}/$NAME
	SERVICE_SCRIPT=$BIN_DIR/$NAME-service.sh
	KILLALL=$BIN_DIR/skiff-killall.sh
	UNINSTALL=$BIN_DIR/$NAME-uninstall.sh
	INIT=${INSTALL_SKIFF_INIT:-}
	if [ -z "$INIT" ]; then
		if [ -d /run/systemd/system ]; then
			INIT=systemd
		elif [ -x /sbin/openrc-run ]; then
			INIT=openrc
		else
			INIT=none
		fi
	fi
	KILLALL_SRC=
	for candidate in "$HERE/scripts/skiff-killall.sh" "$HERE/skiff-killall.sh"; do
		if [ -n "$HERE" ] && [ -f "$candidate" ]; then
			KILLALL_SRC=$candidate
			break
		fi
	done
	[ -n "$KILLALL_SRC" ] || fatal "skiff-killall.sh is not beside install.sh (scripts/ in a checkout, or the release directory): run install.sh from there"
}

# --- write the files, each only when its content changes ----------------------

CHANGED=

# put SRC DEST MODE installs SRC at DEST unless DEST has the same bytes and
# mode already; it records that something changed.
put() {
	if [ -f "$2" ] && cmp -s "$1" "$2" && [ "$(stat -c %a "$2")" = "$3" ]; then
		return 0
	fi
	mkdir -p "$(dirname "$2")"
	cp "$1" "$2.skiff-new"
	chmod "$3" "$2.skiff-new"
	mv -f "$2.skiff-new" "$2" # a running binary keeps its old file
	info "Wrote $2"
	CHANGED="$CHANGED $2"
}

# put_text DEST MODE writes stdin to DEST the same way.
put_text() {
	tmp=$(mktemp)
	cat >"$tmp"
	put "$tmp" "$1" "$2"
	rm -f "$tmp"
}

install_binary() {
	put "$BINARY_SRC" "$BIN_DIR/skiff" 755
	for cmd in kubectl ctr crictl; do
		link=$BIN_DIR/$cmd
		if [ -L "$link" ] && [ "$(readlink "$link")" = "$BIN_DIR/skiff" ]; then
			continue # ours already
		fi
		case ${INSTALL_SKIFF_SYMLINK:-} in
		skip) continue ;;
		force) ;;
		*)
			if [ -e "$link" ] || [ -L "$link" ]; then
				info "Not linking $link to skiff: it exists (INSTALL_SKIFF_SYMLINK=force to replace it)"
				continue
			fi
			if found=$(command -v "$cmd"); then
				info "Not linking $link to skiff: $cmd is already $found (INSTALL_SKIFF_SYMLINK=force to link anyway)"
				continue
			fi
			;;
		esac
		ln -sf "$BIN_DIR/skiff" "$link"
		info "Linked $link to skiff"
		CHANGED="$CHANGED $link"
	done
	put "$KILLALL_SRC" "$KILLALL" 755
}

write_env_file() {
	{
		echo "# The environment of the $NAME service, written by install.sh from its own."
		env | grep -E '^(SKIFF_[A-Z0-9_]*|HTTPS?_PROXY|NO_PROXY)=' | sort | sed "s/=\(.*\)/='\1'/"
	} | put_text "$ENV_FILE" 600
}

write_systemd_unit() {
	put_text "$SYSTEMD_UNIT" 644 <<EOF
[Unit]
Description=skiff $CMD: a small Kubernetes distribution in one binary
Documentation=https://github.com/skiff-dev/skiff
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
# skiff says READY=1 once its node is Ready.
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-$ENV_FILE
# Stopping skiff leaves the pods' runc shims and containers running, so a
# restart or an upgrade does not restart pods.
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=on-failure
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart="$BIN_DIR/skiff" $CMD --config "$CONFIG_FILE"
EOF
}

write_openrc_script() {
	put_text "$OPENRC_SCRIPT" 755 <<EOF
#!/sbin/openrc-run
# skiff $CMD, written by install.sh.
description="skiff $CMD: a small Kubernetes distribution in one binary"

depend() {
	after network-online
	want cgroups
}

supervisor=supervise-daemon
name=$NAME
command="$BIN_DIR/skiff"
command_args="$CMD --config $CONFIG_FILE"
output_log="$LOG_FILE"
error_log="$LOG_FILE"
pidfile="$PID_FILE"
respawn_delay=5
respawn_max=0

start_pre() {
	mkdir -p "$(dirname "$LOG_FILE")"
	modprobe -q br_netfilter 2>/dev/null || true
	modprobe -q overlay 2>/dev/null || true
}

set -o allexport
# shellcheck source=/dev/null
if [ -f "$ENV_FILE" ]; then . "$ENV_FILE"; fi
set +o allexport
EOF
}

# write_service_script writes the service for a machine without an init
# system (a container, CI): a supervisor that restarts skiff when it fails.
write_service_script() {
	put_text "$SERVICE_SCRIPT" 755 <<EOF
#!/bin/sh
# Usage: $SERVICE_SCRIPT start|stop|restart|status
#
# skiff $CMD as a service on a machine without an init system, written by
# install.sh: a supervisor in the background restarts skiff when it fails
# (after 5 s) and logs to $LOG_FILE. $PID_FILE holds the supervisor's pid,
# $PID_FILE.skiff skiff's. Stopping stops skiff only: the pods' runc shims and
# containers keep running, as with systemd's KillMode=process.
set -u
bin="$BIN_DIR/skiff"
env_file="$ENV_FILE"
log="$LOG_FILE"
pidfile="$PID_FILE"

running() { [ -f "\$pidfile" ] && kill -0 "\$(cat "\$pidfile")" 2>/dev/null; }

supervise() {
	echo \$\$ >"\$pidfile"
	stopping=
	child=
	trap 'stopping=1; [ -n "\$child" ] && kill -TERM "\$child" 2>/dev/null' TERM INT
	while :; do
		(
			set -a
			# shellcheck source=/dev/null
			[ -f "\$env_file" ] && . "\$env_file"
			set +a
			exec "\$bin" $CMD --config "$CONFIG_FILE"
		) >>"\$log" 2>&1 </dev/null &
		child=\$!
		echo "\$child" >"\$pidfile.skiff"
		status=0
		wait "\$child" || status=\$?
		# wait returns early when a signal is trapped; wait for the exit.
		while kill -0 "\$child" 2>/dev/null; do wait "\$child" || status=\$?; done
		[ -n "\$stopping" ] && break
		[ "\$status" -eq 0 ] && break # stopped on purpose by someone else
		echo "$NAME-service: skiff exited with status \$status; starting it again in 5 s" >>"\$log"
		sleep 5 &
		wait \$! || true
		[ -n "\$stopping" ] && break
	done
	rm -f "\$pidfile" "\$pidfile.skiff"
}

case \${1:-} in
start)
	running && exit 0
	mkdir -p "\$(dirname "\$log")"
	setsid "\$0" supervise </dev/null >/dev/null 2>&1 &
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		[ -f "\$pidfile.skiff" ] && exit 0
		sleep 0.2
	done
	echo "$NAME-service: the supervisor did not start; see \$log" >&2
	exit 1
	;;
supervise) supervise ;;
stop)
	running || exit 0
	kill -TERM "\$(cat "\$pidfile")"
	i=0
	while [ "\$i" -lt 300 ]; do
		running || exit 0
		sleep 0.1
		i=\$((i + 1))
	done
	echo "$NAME-service: skiff did not stop within 30 s; see \$log" >&2
	exit 1
	;;
restart)
	"\$0" stop && "\$0" start
	;;
status)
	if running; then
		echo "$NAME is running (supervisor \$(cat "\$pidfile"), skiff \$(cat "\$pidfile.skiff" 2>/dev/null))"
	else
		echo "$NAME is not running"
		exit 3
	fi
	;;
*)
	echo "usage: \$0 start|stop|restart|status" >&2
	exit 2
	;;
esac
EOF
}

# uninstall_stop prints the uninstall script's lines that stop and remove
# the service, for this init system.
uninstall_stop() {
	case $INIT in
	systemd)
		cat <<EOF
if [ -d /run/systemd/system ]; then
	systemctl disable --now "$NAME" 2>/dev/null || true
fi
rm -f "$SYSTEMD_UNIT"
if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
EOF
		;;
	openrc)
		cat <<EOF
rc-service "$NAME" stop 2>/dev/null || true
rc-update delete "$NAME" default 2>/dev/null || true
rm -f "$OPENRC_SCRIPT"
EOF
		;;
	none)
		cat <<EOF
"$SERVICE_SCRIPT" stop
rm -f "$SERVICE_SCRIPT"
EOF
		;;
	esac
}

write_uninstall_script() {
	remove_etc="rmdir \"$ETC_DIR\" 2>/dev/null"
	[ "$ETC_DIR" = /etc/skiff ] && remove_etc="rm -rf /etc/skiff"
	put_text "$UNINSTALL" 755 <<EOF
#!/bin/sh
# Removes skiff as install.sh installed it: stops the $NAME service ($INIT)
# and every pod, then removes the binary and its symlinks, the service, the
# config and environment files, the data dir $DATA_DIR, /run/skiff, the
# program a release binary run as root unpacked (/var/cache/skiff), and every
# mount, network namespace, interface and netfilter rule skiff made
# (skiff-killall.sh).
set -u
[ "\$(id -u)" -eq 0 ] || { echo "$NAME-uninstall: run as root" >&2; exit 1; }

$(uninstall_stop)

SKIFF_DATA_DIR="$DATA_DIR" "$KILLALL"

for cmd in kubectl ctr crictl; do
	[ "\$(readlink "$BIN_DIR/\$cmd" 2>/dev/null)" = "$BIN_DIR/skiff" ] && rm -f "$BIN_DIR/\$cmd"
done
rm -rf "$DATA_DIR" /run/skiff /var/cache/skiff /var/lib/kubelet /var/log/pods /var/log/containers /var/lib/cni
rm -f "$LOG_FILE" "$PID_FILE" "$PID_FILE.skiff" "$CONFIG_FILE" "$ENV_FILE" "$KUBECONFIG_FILE"
rmdir /var/log/skiff 2>/dev/null
$remove_etc
rm -f "$BIN_DIR/skiff" "$UNINSTALL"
# The killall script stays while another skiff service installed beside
# this one still needs it.
ls "$BIN_DIR"/skiff*-uninstall.sh >/dev/null 2>&1 || rm -f "$KILLALL"
echo "$NAME-uninstall: skiff is removed"
EOF
}

# --- start it and wait for it -------------------------------------------------

# start_service starts skiff, or restarts it when anything changed (or
# INSTALL_SKIFF_FORCE_RESTART); it sets STARTED when it did either. It
# returns non-zero when skiff is not to be started here.
start_service() {
	restart=
	[ -n "$CHANGED" ] && restart=1
	[ "${INSTALL_SKIFF_FORCE_RESTART:-}" = true ] && restart=1
	STARTED=
	LOG_OFFSET=0
	[ -f "$LOG_FILE" ] && LOG_OFFSET=$(wc -c <"$LOG_FILE")
	case $INIT in
	systemd)
		if [ ! -d /run/systemd/system ]; then
			info "systemd is not running here: $SYSTEMD_UNIT is written, not started"
			return 1
		fi
		systemctl daemon-reload
		[ "${INSTALL_SKIFF_SKIP_ENABLE:-}" = true ] || systemctl enable "$NAME" >/dev/null 2>&1
		[ "${INSTALL_SKIFF_SKIP_START:-}" = true ] && return 1
		RESTARTS_BEFORE=$(systemctl show -p NRestarts --value "$NAME" 2>/dev/null || echo 0)
		if systemctl is-active --quiet "$NAME"; then
			[ -n "$restart" ] || return 0
			info "systemd: restarting $NAME"
			systemctl restart --no-block "$NAME"
		else
			info "systemd: starting $NAME"
			systemctl start --no-block "$NAME"
		fi
		;;
	openrc)
		[ "${INSTALL_SKIFF_SKIP_ENABLE:-}" = true ] || rc-update add "$NAME" default >/dev/null
		[ "${INSTALL_SKIFF_SKIP_START:-}" = true ] && return 1
		if rc-service "$NAME" status >/dev/null 2>&1; then
			[ -n "$restart" ] || return 0
			info "openrc: restarting $NAME"
			rc-service "$NAME" restart
		else
			info "openrc: starting $NAME"
			rc-service "$NAME" start
		fi
		;;
	none)
		[ "${INSTALL_SKIFF_SKIP_START:-}" = true ] && return 1
		if "$SERVICE_SCRIPT" status >/dev/null 2>&1; then
			[ -n "$restart" ] || return 0
			info "Restarting $NAME (no init system: $SERVICE_SCRIPT, log $LOG_FILE)"
			"$SERVICE_SCRIPT" restart
		else
			info "Starting $NAME (no init system: $SERVICE_SCRIPT, log $LOG_FILE)"
			"$SERVICE_SCRIPT" start
		fi
		;;
	esac
	STARTED=1
	return 0
}

show_log() {
	echo "[ERROR] the last lines of skiff's log:" >&2
	case $INIT in
	systemd) journalctl -u "$NAME" -n 30 --no-pager >&2 || true ;;
	*) tail -n 30 "$LOG_FILE" >&2 || true ;;
	esac
}

# failed_since_start reports whether skiff exited since it was (re)started.
failed_since_start() {
	case $INIT in
	systemd)
		[ "$(systemctl show -p NRestarts --value "$NAME")" != "$RESTARTS_BEFORE" ] || systemctl is-failed --quiet "$NAME"
		;;
	none)
		[ -f "$PID_FILE.skiff" ] && [ "$(cat "$PID_FILE.skiff")" != "$SKIFF_PID" ]
		;;
	*) return 1 ;;
	esac
}

kubectl_() { "$BIN_DIR/skiff" kubectl --kubeconfig "$KUBECONFIG_FILE" --request-timeout=5s "$@"; }

# said_ready reports whether the skiff started by start_service said it is
# ready: READY=1 to systemd (the unit is active), or the same moment's log
# line in its log file.
said_ready() {
	case $INIT in
	systemd) [ "$(systemctl is-active "$NAME")" = active ] ;;
	*) tail -c +$((LOG_OFFSET + 1)) "$LOG_FILE" 2>/dev/null | grep -q "\"$READY_LINE\"" ;;
	esac
}

# service_running reports whether the service runs (an agent has no admin
# credentials to ask the API with).
service_running() {
	case $INIT in
	systemd) systemctl is-active --quiet "$NAME" ;;
	openrc) rc-service "$NAME" status >/dev/null 2>&1 ;;
	none) "$SERVICE_SCRIPT" status >/dev/null 2>&1 ;;
	esac
}

# ready_now reports whether skiff is up: the node Ready and the API
# answering for a server; for an agent, its own word once (re)started, else
# its service running.
ready_now() {
	if [ "$CMD" = agent ]; then
		if [ -n "$STARTED" ]; then said_ready; else service_running; fi
		return
	fi
	# A skiff just (re)started must say so itself (a Node's condition can
	# still be the old process's); one that ran on must answer.
	{ [ -z "$STARTED" ] || said_ready; } && [ -f "$KUBECONFIG_FILE" ] && kubectl_ get --raw=/readyz >/dev/null 2>&1 || return 1
	[ "$what" = "the API" ] || kubectl_ wait --for=condition=Ready nodes --all --timeout=1s >/dev/null 2>&1
}

wait_ready() {
	timeout=${INSTALL_SKIFF_READY_TIMEOUT:-300}
	what="the node" READY_LINE="This node is Ready"
	if [ "$CMD" = server ] && { [ "$(config_value disable-agent)" = true ] || [ "${SKIFF_DISABLE_AGENT:-}" = true ]; }; then
		what="the API" READY_LINE="skiff server is ready"
	fi
	info "Waiting up to ${timeout}s for $what to be Ready"
	SKIFF_PID=$(cat "$PID_FILE.skiff" 2>/dev/null || true)
	start=$(date +%s)
	while :; do
		ready_now && break
		if failed_since_start; then
			show_log
			fatal "skiff $CMD exited while starting (its log is above); fix the cause and run install.sh again"
		fi
		if [ $(($(date +%s) - start)) -ge "$timeout" ]; then
			show_log
			fatal "$what was not Ready within ${timeout}s (its log is above); INSTALL_SKIFF_READY_TIMEOUT waits longer"
		fi
		sleep 0.2 2>/dev/null || sleep 1
	done
	info "skiff $CMD is Ready after $(($(date +%s) - start))s"
}

# --- main ----------------------------------------------------------------------

main() {
	TEMP_FILES=
	# shellcheck disable=SC2086 # a list of paths without blanks (mktemp's)
	trap 'rm -f $TEMP_FILES' EXIT
	check_environment
	HERE=$(script_dir)
	ARCH=$(machine_arch)
	find_binary
	SOURCE=$BINARY_SRC
	check_binary
	setup_command "$@"
	setup_paths
	unpack_release
	check_runs
	render_config
	DATA_DIR=$(config_value data-dir)
	DATA_DIR=${DATA_DIR:-${SKIFF_DATA_DIR:-/var/lib/skiff}}
	case $DATA_DIR in
	/ | /*/ | /etc | /usr | /var) fatal "data-dir $DATA_DIR: give skiff a directory of its own, such as /var/lib/skiff" ;;
	/*) ;;
	*) fatal "data-dir $DATA_DIR: must be an absolute path" ;;
	esac
	KUBECONFIG_FILE=
	if [ "$CMD" = server ]; then
		KUBECONFIG_FILE=$(config_value write-kubeconfig)
		KUBECONFIG_FILE=${KUBECONFIG_FILE:-${SKIFF_WRITE_KUBECONFIG:-/etc/skiff/skiff.yaml}}
	fi
	info "Installing $VERSION from $SOURCE to $BIN_DIR as the $INIT service $NAME"

	install_binary
	mkdir -p "$ETC_DIR"
	[ -n "$KEEP_CONFIG" ] || put "$NEW_CONFIG" "$CONFIG_FILE" 600
	write_env_file
	case $INIT in
	systemd) write_systemd_unit ;;
	openrc) write_openrc_script ;;
	none) write_service_script ;;
	esac
	write_uninstall_script

	if start_service; then
		wait_ready
		echo
		if [ "$CMD" = server ]; then
			echo "skiff is running. As root:  $BIN_DIR/skiff kubectl get nodes"
			echo "Any kubectl or client:      KUBECONFIG=$KUBECONFIG_FILE"
			echo "Join more nodes with:       SKIFF_URL=https://<this host>:6443 SKIFF_TOKEN=\$(sudo cat $DATA_DIR/server/agent-token) ./install.sh"
		else
			echo "skiff agent is running: this node joined ${SKIFF_URL:-its server}"
		fi
		echo "Remove it with:             $UNINSTALL"
	elif [ -z "$CHANGED" ]; then
		info "Nothing changed"
	fi
}

main "$@"
