#!/bin/bash
# t_install.sh - what `cmake --install` puts in place: spoold in sbin/,
# spoolctl in bin/ with the sendmail and mailq links (LMDB and inih linked
# into spoolctl when SPOOLCTL_STATIC_DEPS is on), the systemd unit
# naming the installed spoold, and the man pages, which render without a
# single groff warning and document every spoolctl and spoold-setup
# command and option and every configuration key that the code accepts.
. "$(dirname "$0")/lib.sh"

command -v groff >/dev/null || skip "groff missing (tools/install-deps)"
command -v cmake >/dev/null || skip "cmake missing"

BUILD=$(cd "$(dirname "$SPOOLD")/.." && pwd)
CACHE="$BUILD/CMakeCache.txt"
[ -f "$CACHE" ] || fail "no CMakeCache.txt in $BUILD"
ROOT="$T/root"
MAN_SRC="$SPOOL_SRC/man"
CONF_C="$SPOOL_SRC/common/conf.c"

# cache_var NAME: a variable's value from the build's cache.
cache_var() {
	sed -n "s/^$1:[A-Z]*=//p" "$CACHE" | head -n 1
}

# install_dir NAME DEFAULT: an install directory as an absolute path, the
# way GNUInstallDirs resolves it (relative ones are under the prefix).
install_dir() {
	local v
	v=$(cache_var "$1")
	[ -n "$v" ] || v=$2
	case $v in
	/*) echo "$v" ;;
	*) echo "$PREFIX/$v" ;;
	esac
}

# resolve_in_root PATH: follows symlinks as they will resolve once the
# tree is installed at /, i.e. absolute targets taken inside $ROOT. Prints
# the final path inside $ROOT.
resolve_in_root() {
	local p=$1 target
	for _ in $(seq 1 20); do
		[ -L "$p" ] || {
			echo "$p"
			return 0
		}
		target=$(readlink "$p")
		case $target in
		/*) p="$ROOT$target" ;;
		*) p="$(dirname "$p")/$target" ;;
		esac
	done
	fail "symlink loop at $1"
}

PREFIX=$(cache_var CMAKE_INSTALL_PREFIX)
[ -n "$PREFIX" ] || fail "CMAKE_INSTALL_PREFIX not in $CACHE"
BINDIR=$(install_dir CMAKE_INSTALL_BINDIR bin)
SBINDIR=$(install_dir CMAKE_INSTALL_SBINDIR sbin)
DATAROOTDIR=$(install_dir CMAKE_INSTALL_DATAROOTDIR share)
MANDIR=$(install_dir CMAKE_INSTALL_MANDIR "$DATAROOTDIR/man")
UNITDIR=$(install_dir SPOOL_SYSTEMD_UNITDIR lib/systemd/system)

# ---- the install itself ---------------------------------------------------

log "installing $BUILD into $ROOT (prefix $PREFIX)"
if ! DESTDIR="$ROOT" cmake --install "$BUILD" >"$T/install.log" 2>&1; then
	fail "cmake --install failed: $(tail -n 20 "$T/install.log")"
fi

spoold_bin="$ROOT$SBINDIR/spoold"
spoolctl_bin="$ROOT$BINDIR/spoolctl"
# is_program PATH: an executable regular file, not a link
is_program() {
	[ -f "$1" ] && [ ! -L "$1" ] && [ -x "$1" ]
}
is_program "$spoold_bin" || fail "spoold is not an executable file in $SBINDIR"
is_program "$spoolctl_bin" ||
	fail "spoolctl is not an executable file in $BINDIR"
"$spoold_bin" --help | grep -q "usage: spoold" ||
	fail "the installed spoold does not run"

for link in "$SBINDIR/sendmail" "$BINDIR/mailq"; do
	[ -L "$ROOT$link" ] || fail "$link is not a symlink"
	res=$(resolve_in_root "$ROOT$link")
	[ "$res" -ef "$spoolctl_bin" ] ||
		fail "$link -> $(readlink "$ROOT$link") does not resolve to" \
			"$BINDIR/spoolctl"
done
log "binaries: $SBINDIR/spoold, $BINDIR/spoolctl, sendmail and mailq links"

# spoolctl starts for every submission: with SPOOLCTL_STATIC_DEPS (the
# default) LMDB and inih are linked in and no shared copy is loaded. Built
# without it, it must load both, or this check could not see them.
command -v ldd >/dev/null || fail "ldd missing (libc-bin)"
static_deps=$(cache_var SPOOLCTL_STATIC_DEPS)
[ -n "$static_deps" ] || fail "SPOOLCTL_STATIC_DEPS not in $CACHE"
ldd "$spoolctl_bin" >"$T/spoolctl.ldd" 2>&1 ||
	fail "ldd $BINDIR/spoolctl failed: $(cat "$T/spoolctl.ldd")"
grep -q '^[[:space:]]*libc\.so' "$T/spoolctl.ldd" ||
	fail "ldd lists no libc for spoolctl: $(cat "$T/spoolctl.ldd")"
shared_deps=$(awk '$1 ~ /^lib(lmdb|inih)\.so/ { print $1 }' "$T/spoolctl.ldd" |
	sort | paste -sd' ')
# CMake's true constants, in any case
case $(echo "$static_deps" | tr '[:lower:]' '[:upper:]') in
ON | TRUE | YES | Y | 1)
	[ -z "$shared_deps" ] ||
		fail "spoolctl loads $shared_deps although it was built with" \
			"SPOOLCTL_STATIC_DEPS=$static_deps"
	log "spoolctl: LMDB and inih linked in (SPOOLCTL_STATIC_DEPS=$static_deps)"
	;;
*)
	[ "$(echo "$shared_deps" | wc -w)" = 2 ] ||
		fail "spoolctl built with SPOOLCTL_STATIC_DEPS=$static_deps" \
			"loads '$shared_deps', want liblmdb and libinih"
	log "spoolctl: loads $shared_deps (SPOOLCTL_STATIC_DEPS=$static_deps)"
	;;
esac

# the modules, and the installed spoold finds them (a push transport and
# implicit TLS load them when the configuration is checked)
LIBDIR=$(install_dir CMAKE_INSTALL_LIBDIR lib)
for m in spoold-curl.so spoold-push.so; do
	[ -f "$ROOT$LIBDIR/spoold/$m" ] || fail "no module $LIBDIR/spoold/$m"
done
cat >"$T/modules.conf" <<EOF
[spool]
dir = $T/spool

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
"$spoold_bin" -c "$T/modules.conf" --check-config >"$T/check.out" 2>&1 ||
	fail "the installed spoold does not load its modules: $(cat "$T/check.out")"
mv "$ROOT$LIBDIR/spoold/spoold-push.so" "$T/"
if "$spoold_bin" -c "$T/modules.conf" --check-config >"$T/check.out" 2>&1; then
	fail "a configuration that needs a missing module passed the check"
fi
grep -q "cannot load .*spoold-push.so.*reinstall spoold" "$T/check.out" ||
	fail "a missing module is not said so: $(cat "$T/check.out")"
mv "$T/spoold-push.so" "$ROOT$LIBDIR/spoold/"
log "modules: $LIBDIR/spoold/spoold-{curl,push}.so, loaded by the installed spoold"

unit="$ROOT$UNITDIR/spoold.service"
[ -f "$unit" ] || fail "no systemd unit at $UNITDIR/spoold.service"
exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit" | head -n 1)
[ -n "$exec_start" ] || fail "the unit has no ExecStart="
case $exec_start in
/*) ;;
*) fail "ExecStart=$exec_start is not an absolute path" ;;
esac
[ -x "$ROOT$exec_start" ] ||
	fail "ExecStart=$exec_start does not exist in the installed tree"
[ "$ROOT$exec_start" -ef "$spoold_bin" ] ||
	fail "ExecStart=$exec_start is not the installed spoold"
log "unit: $UNITDIR/spoold.service runs $exec_start"

# spoold-setup (what cmake --install cannot do) names the installed
# spoolctl; tmpfiles.d and sysusers.d lines for the unit's host
setup="$ROOT$SBINDIR/spoold-setup"
is_program "$setup" || fail "spoold-setup is not an executable file in $SBINDIR"
grep -qxF "spoolctl=$BINDIR/spoolctl" "$setup" ||
	fail "spoold-setup does not name $BINDIR/spoolctl"
sh -n "$setup" || fail "spoold-setup is not a valid shell script"
# a mistake in its options: one line that names it, and EX_USAGE (64),
# before anything is changed (the checks come before the root check)
for bad in --user --group --spoolctl "--user=" --bogus; do
	rc=0
	runuser -u nobody -- sh -s -- $bad <"$setup" >"$T/setup.out" 2>"$T/setup.err" || rc=$?
	[ "$rc" = 64 ] || fail "spoold-setup $bad exited $rc, want 64: $(cat "$T/setup.err")"
	[ "$(wc -l <"$T/setup.err")" = 1 ] && grep -q -- "spoold-setup: .*${bad%=}.*--help" "$T/setup.err" ||
		fail "spoold-setup $bad said: $(cat "$T/setup.out" "$T/setup.err")"
done
for f in tmpfiles.d sysusers.d; do
	cmp -s "$ROOT$PREFIX/lib/$f/spoold.conf" \
		"$SPOOL_SRC/dist/spoold.${f%.d}" ||
		fail "$PREFIX/lib/$f/spoold.conf is not dist/spoold.${f%.d}"
done
log "spoold-setup, tmpfiles.d and sysusers.d installed"

# ---- the man pages --------------------------------------------------------

pages=("man1/spoolctl.1" "man5/spoold.conf.5" "man8/spoold.8"
	"man8/spoold-setup.8")
for page in "${pages[@]}"; do
	f="$ROOT$MANDIR/$page"
	[ -f "$f" ] || fail "$MANDIR/$page is not installed"
	cmp -s "$f" "$MAN_SRC/$(basename "$page")" ||
		fail "$MANDIR/$page differs from man/$(basename "$page")"
done

# render PAGE [DEVICE]: groff with every warning on; any output on stderr
# (or a failure) is a fault of the page.
render() {
	local page=$1 dev=${2:-} rc=0
	local args=(-man -ww -z -t)
	[ -z "$dev" ] || args+=("-T$dev")
	groff "${args[@]}" "$page" >/dev/null 2>"$T/groff.err" || rc=$?
	[ "$rc" = 0 ] && [ ! -s "$T/groff.err" ]
}

# The check must be able to fail: an unknown macro is reported.
{
	cat "$MAN_SRC/spoold.8"
	echo ".XQ not a macro"
} >"$T/broken.8"
render "$T/broken.8" &&
	fail "groff -ww did not report an unknown macro; the check is blind"

for page in "${pages[@]}"; do
	f="$ROOT$MANDIR/$page"
	for dev in "" utf8; do
		render "$f" "$dev" ||
			fail "$page renders with warnings${dev:+ (-T$dev)}:" \
				"$(head -n 20 "$T/groff.err")"
	done
	# the .TH line names the page and its section
	name=$(basename "$page")
	th=$(grep -m1 '^\.TH ' "$f" | awk '{print $2 " " $3}')
	want="$(echo "${name%.*}" | tr '[:lower:]' '[:upper:]') ${name##*.}"
	[ "$th" = "$want" ] || fail "$page: .TH says '$th', want '$want'"
	grep -q '^\.Dd\|^\.Dt\|^\.Sh ' "$f" && fail "$page uses mdoc macros"
done
log "man pages installed in $MANDIR and render without warnings"

# ---- spoolctl(1) documents every command and option ----------------------

spoolctl_1="$MAN_SRC/spoolctl.1"
# roff writes a minus as \-: compare against the page with plain hyphens
sed 's/\\-/-/g' "$spoolctl_1" >"$T/spoolctl.1.txt"
"$SPOOLCTL" --help >"$T/help.out" || fail "spoolctl --help failed"
commands=$(sed -n '2,$p' "$T/help.out" | awk '{print $1}' | sort -u)
[ "$(echo "$commands" | wc -w)" -ge 10 ] ||
	fail "could not read the commands from spoolctl --help: $commands"
synopsis=$(sed -n '/^\.SH SYNOPSIS/,/^\.SH DESCRIPTION/p' "$spoolctl_1")
for cmd in $commands; do
	grep -qE "^\.SS (.*[ ,])?$cmd(,| |$)" "$spoolctl_1" ||
		fail "spoolctl.1 has no .SS section for the command '$cmd'"
	echo "$synopsis" | grep -qw -- "$cmd" ||
		fail "spoolctl.1's SYNOPSIS does not show the command '$cmd'"
done
grep -oE -- '--[a-z][a-z-]*' "$T/help.out" | sort -u >"$T/options"
while read -r opt; do
	grep -qF -- "$opt" "$T/spoolctl.1.txt" ||
		fail "spoolctl.1 does not document the option $opt"
done <"$T/options"
log "spoolctl.1 documents: $(echo "$commands" | paste -sd' ')"

# ---- spoold-setup(8) documents every option, and no other ----------------

# the options are the patterns of the script's case over "$1"
setup_in="$SPOOL_SRC/dist/spoold-setup.in"
sed -n '/^while \[ \$# -gt 0 \]/,/^done/p' "$setup_in" |
	grep -oE -- '^[[:space:]]*-[-a-z |]*\)' | tr -d ' \t)' | tr '|' '\n' |
	sort -u >"$T/setup-options"
grep -qx -- --accounts-only "$T/setup-options" ||
	fail "could not read the options of spoold-setup: $(cat "$T/setup-options")"
setup_8="$MAN_SRC/spoold-setup.8"
# an option's item is a .TP tag: ".B --opt", ".BI --opt ARG", ".BR -h , --help"
awk 'prev == ".TP" && $1 ~ /^\.B[IR]?$/ { print } { prev = $0 }' "$setup_8" |
	sed 's/\\-/-/g' | grep -oE -- '(^| |")-[-a-z]+' | tr -d ' "' |
	sort -u >"$T/setup-documented"
[ -s "$T/setup-documented" ] || fail "no option items in spoold-setup.8"
setup_synopsis=$(sed -n '/^\.SH SYNOPSIS/,/^\.SH DESCRIPTION/p' "$setup_8" |
	sed 's/\\-/-/g')
while read -r opt; do
	grep -qxF -- "$opt" "$T/setup-documented" ||
		fail "spoold-setup.8 does not document the option $opt"
	echo "$setup_synopsis" | grep -qF -- "$opt" ||
		fail "spoold-setup.8's SYNOPSIS does not show the option $opt"
done <"$T/setup-options"
extra=$(comm -13 "$T/setup-options" "$T/setup-documented" | paste -sd' ')
[ -z "$extra" ] ||
	fail "spoold-setup.8 documents option(s) spoold-setup does not take: $extra"
log "spoold-setup.8 documents: $(paste -sd' ' "$T/setup-options")"

# ---- spoold.conf(5) documents every key of common/conf.c ------------------

# Keys: every name the parser compares a key with, plus the tables of
# transport keys (the environment splitter's list and the string keys).
{
	grep -oE 'strcmp\(key, "[a-z_]+"\)' "$CONF_C" |
		sed -E 's/.*"([a-z_]+)".*/\1/'
	sed -n '/conf_transport_keys\[\] = {/,/^};/p' "$CONF_C" |
		grep -oE '"[a-z_]+"' | tr -d '"'
	sed -n '/conf_transport_strings\[\] = {/,/^};/p' "$CONF_C" |
		grep -oE '\{"[a-z_]+"' | tr -d '{"'
} | sort -u >"$T/keys"
for k in dir max_size route concurrency retry max_age host port tls \
	password_file probe_url path; do
	grep -qx "$k" "$T/keys" ||
		fail "key list from conf.c lacks '$k': the extraction is broken"
done
conf_5="$MAN_SRC/spoold.conf.5"
# a documented key is the tag of a .TP item: ".TP" then ".B key"
awk 'prev == ".TP" && $1 ~ /^\.B[IR]?$/ { print $2 } { prev = $0 }' \
	"$conf_5" | sort -u >"$T/documented"
missing=$(comm -23 "$T/keys" "$T/documented" | paste -sd' ')
[ -z "$missing" ] ||
	fail "spoold.conf.5 does not document the key(s): $missing"
for sec in $(grep -oE 'strcmp\(section, "[a-z]+"\)' "$CONF_C" |
	sed -E 's/.*"([a-z]+)".*/\1/' | sort -u) transport; do
	grep -qE "^\.SH SECTION \[$sec( |\])" "$conf_5" ||
		fail "spoold.conf.5 has no SECTION [$sec]"
done
log "spoold.conf.5 documents $(wc -l <"$T/keys") keys"

# ---- the page's examples load --------------------------------------------

# ex_block FILE SECTION N: the Nth .EX block of a section, as plain text.
ex_block() {
	awk -v sec="$2" -v n="$3" '
		/^\.SH / { insec = (substr($0, 5) == sec) }
		insec && /^\.EX/ { k++; inex = (k == n); next }
		/^\.EE/ { inex = 0 }
		inex { print }' "$1" | sed 's/\\-/-/g; s/\\e/\\/g'
}
envs=(PATH="$PATH")
[ -z "${ASAN_OPTIONS:-}" ] || envs+=(ASAN_OPTIONS="$ASAN_OPTIONS")
[ -z "${UBSAN_OPTIONS:-}" ] || envs+=(UBSAN_OPTIONS="$UBSAN_OPTIONS")
ex_block "$conf_5" EXAMPLES 1 >"$T/example.conf"
ex_block "$conf_5" "EMBEDDED DEFAULT" 1 >"$T/default.conf"
for c in example default; do
	[ -s "$T/$c.conf" ] || fail "no $c configuration block in spoold.conf.5"
	# status reads an existing spool: a missing one is an error
	env -i "${envs[@]}" SPOOLD_SPOOL_DIR="$T/spool-$c" \
		"$SPOOLCTL" -c "$T/$c.conf" init >"$T/$c.out" 2>&1 &&
		env -i "${envs[@]}" SPOOLD_SPOOL_DIR="$T/spool-$c" \
			"$SPOOLCTL" -c "$T/$c.conf" status >"$T/$c.out" 2>&1 ||
		fail "the $c configuration of spoold.conf.5 does not load:" \
			"$(cat "$T/$c.out")"
done
route=$(sed -n 's/^transport \([^:]*\):.*/\1/p' "$T/example.out" | paste -sd,)
[ "$route" = mailu,local ] ||
	fail "the example's route is '$route', want mailu,local"
mapfile -t ex_env < <(ex_block "$conf_5" EXAMPLES 2)
[ "${#ex_env[@]}" -gt 0 ] || fail "no environment example in spoold.conf.5"
env -i "${envs[@]}" SPOOLD_SPOOL_DIR="$T/spool-env" "${ex_env[@]}" \
	"$SPOOLCTL" init >"$T/env.out" 2>&1 &&
	env -i "${envs[@]}" SPOOLD_SPOOL_DIR="$T/spool-env" "${ex_env[@]}" \
		"$SPOOLCTL" status >"$T/env.out" 2>&1 ||
	fail "the environment example does not load: $(cat "$T/env.out")"
route=$(sed -n 's/^transport \([^:]*\):.*/\1/p' "$T/env.out" | paste -sd,)
[ "$route" = mailu ] ||
	fail "the environment example's route is '$route', want mailu alone"
log "the configuration examples of spoold.conf.5 load"
