#!/usr/bin/env bash
# t_package_systemd.sh - the Debian package, built from this checkout, on a
# freshly booted Debian 12 with systemd as PID 1.
#
# A minimal bookworm root (mmdebstrap, cached under /var/cache keyed by its
# package list) boots systemd in its own PID, mount, UTS, IPC and network
# namespaces: the only network is the namespace's own loopback, so every
# package the test installs is downloaded into the root beforehand, and
# every server binds that loopback. Inside, the test installs the package
# with cron, bsd-mailx and monitoring-plugins-standard, and checks what a
# host replacing its MTA relies on: mail to root reaches the admin address,
# cron's mail and an OnFailure= alarm arrive, check_mailq reads the queue,
# a bad reload keeps the old configuration, a restart and an upgrade keep
# queued mail, remove keeps it too, purge leaves nothing behind.
#
# Needs root, mmdebstrap, debhelper, lintian (tools/install-deps) and the
# machine's apt sources; about 5 minutes with a warm cache. Every check is
# made even after one fails; the test fails if any did.
#
#   SPOOL_SYSTEST_CACHE  where the root is cached (/var/cache/spoold-systest)
#   SPOOL_SYSTEST_KEEP=1 keep the work directory (its path is printed)
#   SPOOL_SYSTEST_DEBS   a directory with the two packages of an earlier
#                        run (WORK/debs): skips both builds
set -uo pipefail

src=${SPOOL_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
cache=${SPOOL_SYSTEST_CACHE:-/var/cache/spoold-systest}
# set again once the packages are built: the time inside the root
deadline=$((SECONDS + 3600))
failures=0
sdpid=""
unshare_pid=""

log() { printf 't_package_systemd [%3ds]: %s\n' "$SECONDS" "$*" >&2; }
die() {
	log "FATAL: $*"
	exit 1
}
check_fail() {
	log "FAIL: $*"
	failures=$((failures + 1))
}
ok() { log "ok: $*"; }

[ "$(id -u)" -eq 0 ] || die "needs root (unshare, chroot, mmdebstrap)"
for tool in mmdebstrap dpkg-buildpackage unshare nsenter; do
	command -v "$tool" >/dev/null ||
		die "$tool missing: run tools/install-deps"
done

work=$(mktemp -d /var/tmp/spoold-systest.XXXXXX)
root=$work/root

cleanup() {
	# systemd as PID 1 ignores SIGTERM; SIGKILL of a namespace's PID 1
	# kills every process in it, and its mounts go with its mount
	# namespace (private propagation: none ever reached the host).
	if [ -n "$sdpid" ]; then
		kill -KILL "$sdpid" 2>/dev/null
	fi
	if [ -n "$unshare_pid" ]; then
		kill -KILL "$unshare_pid" 2>/dev/null
		wait "$unshare_pid" 2>/dev/null
	fi
	# nothing may be mounted below the root before it is removed
	if grep -q " $root" /proc/self/mounts; then
		log "mounts left under $root; not removing $work"
		return
	fi
	if [ "${SPOOL_SYSTEST_KEEP:-0}" = 1 ]; then
		log "kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- the packages: this tree, and a newer build for the upgrade ----

if [ -n "${SPOOL_SYSTEST_DEBS:-}" ]; then
	# packages built before by this test (kept with SPOOL_SYSTEST_KEEP=1)
	deb=$(ls "$SPOOL_SYSTEST_DEBS"/spoold_*.deb | grep -v +systest1 | head -1)
	deb2=$(ls "$SPOOL_SYSTEST_DEBS"/spoold_*+systest1_*.deb)
	version=$(dpkg-deb -f "$deb" Version)
else
	log "building the package"
	deb=$("$src/tools/build-deb" "$work/debs") || die "tools/build-deb failed"
	version=$(dpkg-deb -f "$deb" Version)
	# The same tree under a higher version: what an upgrade installs.
	deb2=$(DEB_VERSION="$version+systest1" BUILD_DEB_LINTIAN=0 \
		"$src/tools/build-deb" "$work/debs") ||
		die "the second build failed"
fi
log "built $(basename "$deb") and $(basename "$deb2")"

# ---- the root ----

# What the root has installed, and what it only holds in apt's cache for
# the test to install without a network: the package's dependencies (from
# the .deb itself, so a new library needs no edit here) and the callers.
base=systemd,systemd-sysv,dbus,python3,iproute2
callers="cron bsd-mailx monitoring-plugins-standard"
deps=$(dpkg-deb -f "$deb" Depends | tr ',|' '\n\n' |
	sed -e 's/(.*)//' -e 's/[[:space:]]//g' -e '/^$/d' | sort -u | tr '\n' ' ')
key=$(printf 'bookworm minbase %s | %s %s | v1\n' "$base" "$callers" "$deps" |
	sha256sum | cut -c1-16)
tarball=$cache/root-$key.tar
if [ ! -f "$tarball" ]; then
	log "making the root (cache key $key): $base; downloading $callers $deps"
	mkdir -p "$cache"
	# keep apt's lists and downloaded packages: the boot has no network
	mmdebstrap --quiet --variant=minbase --include="$base" \
		--skip=cleanup/apt \
		--customize-hook="chroot \"\$1\" apt-get install -qq --download-only -y $callers $deps" \
		bookworm "$cache/partial-$key.tar" ||
		die "mmdebstrap failed"
	mv "$cache/partial-$key.tar" "$tarball"
	# older roots of other package lists are of no further use
	find "$cache" -maxdepth 1 -name '*.tar' ! -name "root-$key.tar" -delete
fi
mkdir "$root"
tar -C "$root" -xf "$tarball" || die "cannot unpack $tarball"
mkdir -p "$root/srv/systest/mail"
cp "$deb" "$deb2" "$src/tests/integration/capture_sink.py" "$root/srv/systest/"
echo systest >"$root/etc/hostname"
# The root is thrown away after the test: dpkg need not sync each file.
echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/systest-unsafe-io"

# ---- boot ----

# The checks inside the root, install to purge, take 4 minutes on a
# loaded 2-core machine; 7 mean something hangs.
deadline=$((SECONDS + 420))

log "booting systemd"
unshare --fork --pid --mount --uts --ipc --net --propagation private \
	sh -c 'root=$1
		mount --bind "$root" "$root"
		mount -t proc proc "$root/proc"
		mount --rbind /sys "$root/sys"
		mount --rbind /dev "$root/dev"
		mount -t tmpfs tmpfs "$root/run"
		hostname systest
		# container mode: no getty, udev or devices to wait for
		exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			container=spoold-systest \
			chroot "$root" /lib/systemd/systemd --system' \
	sh "$root" </dev/null >"$work/boot.log" 2>&1 &
unshare_pid=$!
for _ in $(seq 100); do
	sdpid=$(cat "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null |
		awk '{print $1}')
	[ -n "$sdpid" ] && [ "$(readlink "/proc/$sdpid/exe" 2>/dev/null)" != \
		"$(readlink /proc/$unshare_pid/exe)" ] && break
	sleep 0.1
done
[ -n "$sdpid" ] || die "systemd did not start: $(tail -5 "$work/boot.log")"

# Runs a command inside, in a clean environment.
in_root() {
	nsenter -t "$sdpid" -m -u -i -n -p -r -w env -i \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
# Waits until cmd succeeds inside, for at most secs seconds.
wait_in() {
	local end=$((SECONDS + $1))
	shift
	until in_root "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || die "over 7 minutes inside the root"
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
}

state=""
for _ in $(seq 300); do
	kill -0 "$unshare_pid" 2>/dev/null || break
	state=$(in_root systemctl is-system-running 2>/dev/null)
	case $state in running | degraded) break ;; esac
	sleep 0.2
done
case $state in
running | degraded) log "systemd is $state" ;;
*) die "systemd did not finish booting ($state): $(tail -5 "$work/boot.log")" ;;
esac
in_root ip link set lo up || die "cannot bring up lo"

# ---- install ----

# With its recommendations, as apt installs by default, the set would
# have no MTA but spoold: cron recommends one, bsd-mailx depends on one.
# apt's plan is read from a simulation (it needs no package files); the
# install itself leaves the recommendations out (monitoring-plugins
# recommends a hundred packages the test does not need).
plan=$(in_root apt-get install -s -o APT::Install-Recommends=true \
	"/srv/systest/$(basename "$deb")" $callers 2>&1 |
	awk '$1 == "Inst" {print $2}')
[ -n "$plan" ] || die "apt-get install -s planned nothing"
others=$(in_root apt-cache show --no-all-versions $(echo "$plan" | grep -vx spoold) 2>/dev/null |
	awk '/^Package:/ {p = $2} /^Provides:.*mail-transport-agent/ {print p}')
if [ -z "$others" ]; then
	ok "with recommends, apt plans $(echo "$plan" | wc -l) packages and no MTA but spoold"
else
	check_fail "with recommends, apt would install: $others"
fi
log "installing spoold, cron, bsd-mailx, monitoring-plugins-standard"
if ! in_root apt-get install -y -qq --no-install-recommends \
	"/srv/systest/$(basename "$deb")" $callers >"$work/install.log" 2>&1; then
	die "apt-get install: $(tail -40 "$work/install.log")"
fi
# Exactly one MTA: spoold. Any other package providing
# mail-transport-agent (exim4, postfix, nullmailer, dma...) is a failure.
mtas=$(in_root dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Provides}\n' |
	awk '/^ii/ && /mail-transport-agent/ {print $2}' | tr '\n' ' ')
if [ "$mtas" = "spoold " ]; then
	ok "the only MTA installed is spoold"
else
	check_fail "installed MTAs: $mtas"
fi
in_root dpkg -l spoold cron bsd-mailx monitoring-plugins-standard |
	grep '^ii' >&2

if wait_in 10 systemctl is-active --quiet spoold; then
	ok "spoold is active after install"
else
	check_fail "spoold not active: $(in_root systemctl status spoold 2>&1 | tail -15)"
fi
perm=$(in_root stat -c '%a %U:%G' /usr/bin/spoolctl)
[ "$perm" = "2755 root:spoold-submit" ] && ok "spoolctl is $perm" ||
	check_fail "spoolctl is $perm, not 2755 root:spoold-submit"
in_root id spoold >&2 || check_fail "no user spoold"
# the modules: a push transport and implicit TLS load them at the check
cat >"$root/tmp/modules.conf" <<'EOF'
[spool]
dir = /var/spool/spoold

[delivery]
route = hook, tls

[transport hook]
type = webhook
url = http://127.0.0.1:9/hook

[transport tls]
type = smtp
host = localhost
port = 465
tls = implicit
EOF
if out=$(in_root /usr/sbin/spoold -c /tmp/modules.conf --check-config 2>&1); then
	ok "the installed spoold loads its modules"
else
	check_fail "the installed spoold does not load its modules: $out"
fi

# ---- configuration: the sink as relay, mail for local names to admin ----

sink_start() {
	in_root systemd-run --quiet --unit=sink --property=Type=simple \
		python3 /srv/systest/capture_sink.py --host 127.0.0.1 \
		--port 2525 --dir /srv/systest/mail || return 1
	wait_in 10 python3 -c 'import socket; socket.create_connection(("127.0.0.1", 2525), 1)'
}
sink_stop() {
	in_root systemctl stop sink
}
# The .env file of a message that reached the sink with this text in
# its data and this recipient; waits for it for at most secs seconds.
arrived() {
	local secs=$1 text=$2 rcpt=$3
	wait_in "$secs" sh -c '
		for f in /srv/systest/mail/*.eml; do
			[ -e "$f" ] || continue
			grep -q -- "$1" "$f" || continue
			grep -q "\"$2\"" "${f%.eml}.env" && exit 0
		done
		exit 1' sh "$text" "$rcpt"
}

conf_good='[spool]
dir = /var/spool/spoold

[delivery]
route = sink
admin = admin@example.org
retry = 1h

[transport sink]
type = smtp
host = 127.0.0.1
port = 2525
tls = none'
printf '%s\n' "$conf_good" >"$root/etc/spoold/spoold.conf"
sink_start || die "the capturing sink did not start"
in_root systemctl reload spoold || check_fail "systemctl reload failed"
sleep 1

# ---- mail to root, as bsd-mailx sends it ----

in_root sh -c 'echo mail-to-root-body | mail -s t root' ||
	check_fail "mail -s t root failed"
if arrived 20 mail-to-root-body admin@example.org; then
	ok "mail to root arrived at admin@example.org"
else
	check_fail "mail to root did not reach admin@example.org: $(in_root journalctl -u spoold --no-pager | tail -5)"
fi

# ---- the fleet's OnFailure= alarm: sendmail -t, no Date or Message-ID ----

cat >"$root/usr/local/bin/unit-alarm" <<'EOF'
#!/bin/sh
/usr/sbin/sendmail -t <<MAIL
To: root
Subject: unit $1 failed on $(hostname)

$(systemctl status --no-pager "$1" 2>&1 | head -5)
unit-alarm-marker
MAIL
EOF
chmod 755 "$root/usr/local/bin/unit-alarm"
cat >"$root/etc/systemd/system/alarm@.service" <<'EOF'
[Service]
Type=oneshot
ExecStart=/usr/local/bin/unit-alarm %i
EOF
cat >"$root/etc/systemd/system/broken.service" <<'EOF'
[Unit]
OnFailure=alarm@%n.service
[Service]
Type=oneshot
ExecStart=/bin/false
EOF
in_root systemctl daemon-reload
in_root systemctl start broken.service 2>/dev/null
if arrived 30 unit-alarm-marker admin@example.org; then
	ok "the OnFailure= alarm arrived"
else
	check_fail "no OnFailure= alarm: $(in_root journalctl -u 'alarm@*' --no-pager | tail -5)"
fi

# ---- cron's mail: /usr/sbin/sendmail -i -FCronDaemon -B8BITMIME -oem root ----

echo '* * * * * root echo cron-job-marker' >"$root/etc/cron.d/systest"
log "waiting for cron (up to 75 s)"
if arrived 75 cron-job-marker admin@example.org; then
	ok "cron's mail arrived"
else
	check_fail "cron's mail did not arrive: $(in_root journalctl -u cron --no-pager | tail -5)"
fi
rm -f "$root/etc/cron.d/systest"

# ---- a bad reload keeps the configuration ----

printf '[delivery]\nroute = nosuch\n' >"$root/etc/spoold/spoold.conf"
in_root systemctl reload spoold
sleep 1
printf '%s\n' "$conf_good" >"$root/etc/spoold/spoold.conf"
in_root sh -c 'echo after-bad-reload | mail -s r root'
refused=$(in_root journalctl -u spoold --no-pager | grep 'reload refused')
if in_root systemctl is-active --quiet spoold && [ -n "$refused" ] &&
	arrived 20 after-bad-reload admin@example.org; then
	ok "a bad reload kept the old configuration: $refused"
else
	check_fail "after a bad reload: $(in_root journalctl -u spoold --no-pager | tail -5)"
fi

# ---- check_mailq, restart and upgrade with mail queued ----

check_mailq() {
	in_root /usr/lib/nagios/plugins/check_mailq -w 1 -c 10 -M postfix
}
out=$(check_mailq)
rc=$?
[ $rc -eq 0 ] && ok "check_mailq, empty queue: $out" ||
	check_fail "check_mailq on an empty queue: $rc $out"

sink_stop
in_root sh -c 'echo queued-across-restart | mail -s q1 root'
in_root sh -c 'echo queued-across-upgrade | mail -s q2 root'
sleep 2
out=$(check_mailq)
rc=$?
[ $rc -eq 1 ] && ok "check_mailq, 2 queued: $out" ||
	check_fail "check_mailq with 2 queued (-w 1): $rc $out"

pid1=$(in_root systemctl show -p MainPID --value spoold)
in_root systemctl restart spoold || check_fail "systemctl restart failed"
wait_in 10 systemctl is-active --quiet spoold
n=$(in_root mailq | grep -c '^[0-9A-F]')
[ "$n" -ge 2 ] && ok "$n messages still queued after restart" ||
	check_fail "after restart, mailq: $(in_root mailq)"

log "upgrading to $(basename "$deb2")"
if ! in_root apt-get install -y -qq \
	"/srv/systest/$(basename "$deb2")" >"$work/upgrade.log" 2>&1; then
	check_fail "upgrade: $(tail -10 "$work/upgrade.log")"
fi
pid2=$(in_root systemctl show -p MainPID --value spoold)
v=$(in_root dpkg-query -W -f '${Version}' spoold)
if [ "$v" = "$version+systest1" ] && [ "$pid2" != "$pid1" ] && [ "$pid2" != 0 ]; then
	ok "upgraded to $v, spoold restarted (pid $pid1 -> $pid2)"
else
	check_fail "upgrade: version $v, pid $pid1 -> $pid2"
fi
sink_start || check_fail "the sink did not start again"
in_root spoolctl flush >/dev/null
for m in queued-across-restart queued-across-upgrade; do
	arrived 30 "$m" admin@example.org && ok "$m delivered" ||
		check_fail "$m not delivered: $(in_root mailq)"
done

# ---- the journal, the unit's exposure ----

# read whole: grep -q would end journalctl with SIGPIPE under pipefail
journal=$(in_root journalctl -u spoold --no-pager)
if grep -q 'status=sent' <<<"$journal"; then
	ok "journalctl -u spoold has the delivery lines"
	grep 'status=sent' <<<"$journal" | tail -3 >&2
else
	check_fail "no status=sent in journalctl -u spoold"
fi
log "systemd-analyze security spoold:"
in_root systemd-analyze security --no-pager spoold >&2

# ---- remove keeps the queue and the configuration, purge does not ----

sink_stop
in_root sh -c 'echo kept-across-remove | mail -s k root'
if ! in_root apt-get remove -y -qq spoold >"$work/remove.log" 2>&1; then
	check_fail "remove: $(tail -10 "$work/remove.log")"
fi
kept=$(in_root sh -c 'grep -rl kept-across-remove /var/spool/spoold/new \
	/var/spool/spoold/cur 2>/dev/null; ls /etc/spoold/spoold.conf; id -u spoold')
[ "$(echo "$kept" | wc -l)" -eq 3 ] &&
	ok "remove kept the queued message, the configuration and the user" ||
	check_fail "after remove: $kept"
if ! in_root dpkg --purge spoold >"$work/purge.log" 2>&1; then
	check_fail "purge: $(tail -10 "$work/purge.log")"
fi
in_root systemctl daemon-reload
left=$(in_root find / -xdev \( -path /proc -o -path /sys -o -path /dev \
	-o -path /srv/systest \) -prune -o -name '*spoold*' -print 2>/dev/null)
left+=$(in_root find /run -name '*spoold*' 2>/dev/null)
[ -z "$left" ] && ok "purge left no spoold file" ||
	check_fail "purge left: $left"
in_root getent passwd spoold >/dev/null && check_fail "user spoold left"
in_root getent group spoold-submit >/dev/null &&
	check_fail "group spoold-submit left"
units=$(in_root systemctl list-unit-files --no-legend 'spoold*')
[ -z "$units" ] && ok "no spoold unit left" || check_fail "units left: $units"

if [ $failures -gt 0 ]; then
	log "$failures check(s) failed"
	exit 1
fi
log "all checks passed in ${SECONDS}s"
