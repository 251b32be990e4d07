#!/usr/bin/env bash
# t_arch_package.sh - dist/arch/PKGBUILD builds with Debian's makepkg
# (makepkg -d: no Arch dependencies here) and the package holds the files
# of the Debian package at Arch's paths (and only what cmake --install and
# package() put there), the setgid spoolctl left to
# spoold.install, the configuration as a backup file, and the
# provides/conflicts of Arch's MTAs. Installing it needs an Arch root,
# which this machine cannot make; the file list is what can be checked.
#
# Runs as root (makepkg then builds as nobody in a private directory).
set -euo pipefail
export LC_ALL=C
src=$(cd "$(dirname "$0")/../.." && pwd)

log() { printf 't_arch_package: %s\n' "$*" >&2; }
fail() {
	log "FAIL: $*"
	exit 1
}
command -v makepkg >/dev/null || fail "makepkg missing: run tools/install-deps"

work=$(mktemp -d "${TMPDIR:-/tmp}/spoold-arch.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$src"/dist/arch/* "$work/"
mkdir "$work/build" "$work/out"
user=root
# makepkg refuses root: build as nobody, in directories nobody owns
if [ "$(id -u)" -eq 0 ]; then
	user=nobody
	chown -R nobody "$work"
	chmod 755 "$work"
fi
log "makepkg -d in $work"
# makepkg looks for pacman even when -d skips every use of it
if ! runuser -u "$user" -- env HOME="$work" SPOOLD_SRC="$src" PACMAN=true \
	BUILDDIR="$work/build" PKGDEST="$work/out" SRCDEST="$work/build" \
	PKGEXT=.pkg.tar.zst \
	sh -c 'cd "$1" && makepkg -d --noconfirm --nocheck' sh "$work" \
	>"$work/makepkg.log" 2>&1; then
	tail -30 "$work/makepkg.log" >&2
	fail "makepkg failed"
fi
pkg=$(ls "$work"/out/spoold-*.pkg.tar.zst)
log "built $(basename "$pkg")"

# The package's files, symlinks with their targets, metadata aside.
bsdtar -tvf "$pkg" >"$work/listing"
files=$(bsdtar -tf "$pkg" | grep -v '^\.' | grep -v '/$' | sort)
# What any package of spoold must hold, at Arch's paths.
core='etc/spoold/spoold.conf
usr/bin/mailq
usr/bin/newaliases
usr/bin/sendmail
usr/bin/spoolctl
usr/bin/spoold
usr/lib/sendmail
usr/lib/spoold/spoold-curl.so
usr/lib/spoold/spoold-push.so
usr/lib/systemd/system/spoold.service
usr/lib/sysusers.d/spoold.conf
usr/lib/tmpfiles.d/spoold.conf
usr/share/doc/spoold/README.md
usr/share/doc/spoold/spoold.conf.example
usr/share/man/man1/mailq.1.gz
usr/share/man/man1/newaliases.1.gz
usr/share/man/man1/sendmail.1.gz
usr/share/man/man1/spoolctl.1.gz
usr/share/man/man5/spoold.conf.5.gz
usr/share/man/man8/spoold-setup.8.gz
usr/share/man/man8/spoold.8.gz'
missing=$(comm -23 <(echo "$core") <(echo "$files"))
[ -z "$missing" ] || fail "the package lacks: $missing"
# And nothing else than what cmake --install puts there (its manifest,
# man pages compressed by makepkg) plus what package() adds: no stray
# file, and a file the build adds is not left out.
manifest=$(find "$work/build" -name install_manifest.txt | head -n 1)
[ -n "$manifest" ] || fail "no install_manifest.txt in the build"
# (the manifest names installed paths, /usr/..., with no final line end)
want=$({
	cat "$manifest"
	echo
	echo "$core"
} | sed -e 's|^/||' -e '/^$/d' \
	-e 's|^\(usr/share/man/man[0-9]/.*\.[0-9]\)$|\1.gz|' | sort -u)
if [ "$files" != "$want" ]; then
	diff <(echo "$want") <(echo "$files") >&2 || true
	fail "the package's files differ from cmake's and package()'s (< wanted, > built)"
fi
# links: each command is spoolctl, /usr/lib/sendmail the sendmail
for l in usr/bin/sendmail usr/bin/mailq usr/bin/newaliases; do
	grep -qE " $l -> (/usr/bin/)?spoolctl$" "$work/listing" ||
		fail "$l is not a link to spoolctl"
done
grep -qE " usr/lib/sendmail -> \.\./bin/sendmail$" "$work/listing" ||
	fail "usr/lib/sendmail is not a link to ../bin/sendmail"
# the unit names spoold where the package puts it
bsdtar -xOf "$pkg" usr/lib/systemd/system/spoold.service |
	grep -q '^ExecStart=/usr/bin/spoold ' ||
	fail "the unit does not start /usr/bin/spoold"
# the same tmpfiles and sysusers files as the tree's
cmp <(bsdtar -xOf "$pkg" usr/lib/tmpfiles.d/spoold.conf) \
	"$src/dist/spoold.tmpfiles" || fail "tmpfiles.d file differs"
cmp <(bsdtar -xOf "$pkg" usr/lib/sysusers.d/spoold.conf) \
	"$src/dist/spoold.sysusers" || fail "sysusers.d file differs"

info=$(bsdtar -xOf "$pkg" .PKGINFO)
for line in 'provides = smtp-forwarder' 'conflict = smtp-forwarder' \
	'backup = etc/spoold/spoold.conf' 'pkgname = spoold'; do
	grep -qxF "$line" <<<"$info" || fail ".PKGINFO lacks '$line'"
done
bsdtar -tf "$pkg" | grep -qx .INSTALL || fail "no .INSTALL script"
bsdtar -xOf "$pkg" .INSTALL | grep -q 'chmod 2755 usr/bin/spoolctl' ||
	fail ".INSTALL does not make spoolctl setgid"
log "ok: $(echo "$files" | wc -l) files, $(grep -c '^provides\|^conflict' <<<"$info") relations"
