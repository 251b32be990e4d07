#!/bin/bash
# t_pickup_dirs.sh - directories that a member of the submit group drops
# into new/ (as nobody with the group, against spoold started as root):
#   - an empty one is removed at pickup, with one log line;
#   - another user's non-empty one, which spoold can neither take nor move
#     to failed/ (that needs write access to the directory itself), is
#     left in place with one log line that says how to remove it, and is
#     not retried or logged again by the rescans that follow;
#   - meanwhile root's message is delivered once and PING answers.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root to act as nobody"
as_nobody() {
	runuser -u nobody -G "$SUBMIT_GROUP" -- "$@"
}

start_sink
write_conf "$SINK_PORT"
# rescans every 300 ms: several of them within the test
export SPOOLD_TEST_RESCAN_MS=300
start_spoold

# made in tmp/ and renamed in, as a file is, so that spoold sees each
# whole
as_nobody mkdir "$SPOOL/tmp/empty-dir"
as_nobody mkdir -m 700 "$SPOOL/tmp/full-dir"
as_nobody touch "$SPOOL/tmp/full-dir/x"
# rename(2) alone: mv looks at what it moved, which spoold may have
# removed by then
as_nobody python3 -c 'import os, sys
for name in sys.argv[2:]:
    os.rename(os.path.join(sys.argv[1], "tmp", name),
              os.path.join(sys.argv[1], "new", name))' "$SPOOL" empty-dir full-dir
printf 'Subject: root during dirs\n\nx\n' | spoolctl submit a@example.net \
	>/dev/null || fail "root's submit"
wait_for_count 1 20

# ten rescans later
sleep 3
log_lines() { cat "$T"/spoold.*.log; }
removed=$(log_lines | grep -c 'removed: not a regular file') || true
[ "$removed" = 1 ] || fail "want one 'removed' line, got $removed: $(log_lines)"
left=$(log_lines | grep -c 'left in place: not a regular file') || true
[ "$left" = 1 ] || fail "want one 'left in place' line, got $left: $(log_lines)"
grep -q "remove it as root: rm -r " <<<"$(log_lines | grep "left in place")" ||
	fail "the line does not say what to do: $(log_lines | grep 'left in place')"
n=$(log_lines | grep -c 'cannot move to failed') || true
[ "$n" = 0 ] || fail "$n 'cannot move to failed/' lines: retried"
id=$(log_lines | sed -n 's/.*id=\([0-9a-f]*\) uid=[0-9]* new\/[0-9a-f]* left in place.*/\1/p')
[ -d "$SPOOL/new/$id" ] && [ -e "$SPOOL/new/$id/x" ] ||
	fail "the non-empty directory is not where the line says: new/$id"
[ ! -e "$SPOOL/new/empty-dir" ] && [ "$(find "$SPOOL/new" -mindepth 1 -maxdepth 1 | wc -l)" = 1 ] ||
	fail "new/ holds: $(ls -la "$SPOOL/new")"
spoolctl status >/dev/null || fail "status after the directories"
[ "$(sink_count)" = 1 ] || fail "root's message arrived $(sink_count) times"
# what the line says works
rm -r "${SPOOL:?}/new/$id"
log "an empty directory removed, a full one left with one line; root's mail delivered once"
