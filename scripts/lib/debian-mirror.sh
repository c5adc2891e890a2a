# shellcheck shell=bash
# Sourced by the scripts that fetch from Debian (lib/private-apt.sh, make-image.sh): the machine's
# own Debian mirror, so that nothing names a mirror host. After `. scripts/lib/debian-mirror.sh`:
#   codename      this machine's release (e.g. bookworm), from /etc/os-release
#   find_mirror   prints "URI [SIGNED-BY]" for every "deb" source that carries $codename with
#                 component main, from one-line sources.list / *.list files or deb822 *.sources
#                 files; the first line is the one to use
. /etc/os-release
codename=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
find_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk -v want="$codename" '
      $1 == "deb" {
        signed = ""; i = 2
        if ($2 ~ /^\[/) {                       # deb [ opt=val ... ] URI SUITE COMPONENTS
          for (; i <= NF; i++) {
            if ($i ~ /^\[?signed-by=/) { signed = $i; sub(/^\[?signed-by=/, "", signed); sub(/\]$/, "", signed) }
            if ($i ~ /\]$/) { i++; break }
          }
        }
        if ($(i + 1) != want) next
        for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i, signed; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # deb822: stanzas separated by blank lines, "Field: value" lines, "#" comments.
    awk -v want="$codename" '
      function flush() {
        if ((" " types " ") ~ / deb / && (" " suites " ") ~ (" " want " ") && (" " comps " ") ~ / main /) {
          split(uris, u, " "); print u[1], signed; found = 1
        }
        types = uris = suites = comps = signed = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); if (found) exit; next }
      {
        key = tolower($1); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
        if (key == "types:") types = val; else if (key == "uris:") uris = val
        else if (key == "suites:") suites = val; else if (key == "components:") comps = val
        else if (key == "signed-by:") signed = val
      }
      END { if (!found) flush() }' "$f"
  done
}
