#!/usr/bin/env bash
# make image: build the action's image from the Dockerfile with buildah, with no Docker engine and
# no image registry, then prove it (scripts/image-check.py runs the entrypoint inside the image).
#
#   1. installs buildah and debootstrap (and the check's gnupg, skopeo, docker-registry, plus cosign
#      from trixie into .cache/trixie) when missing; no package's service starts
#   2. a Debian trixie root filesystem from the machine's own Debian mirror (debootstrap minbase
#      with python3, python3-venv, ca-certificates), cached as .cache/image/base/rootfs.tar
#   3. the base image localhost/container-sign-action-base:trixie from it (FROM scratch + ADD)
#   4. the Dockerfile built on that base (--build-arg BASE_IMAGE): pip inside the build gets the
#      host's CA bundle and the host's pip index settings (a pip.conf mounted at /mnt)
#   5. scripts/image-check.py: --help, a msg signing run and a cosign run inside the image
#
# Everything buildah keeps is in .cache/image/storage (vfs driver, chroot isolation: no daemon, no
# overlay mounts, no user namespaces). Steps are cached (--layers), images left by earlier builds
# are removed, and when the context, Dockerfile and base are unchanged nothing is built at all.
# `rm -rf .cache/image` starts from scratch; `rm -rf .cache/image/base` makes a new base.
# Environment:
#   IMAGE            the tag to build (default localhost/container-sign-action:latest)
#   PYTHON           the Python that runs the check (default .venv/bin/python)
#   SKIP_CHECK=1     build only;  FORCE=1  run `buildah bud` even when nothing changed
#   STORAGE_DRIVER   vfs (default: works anywhere); overlay where the kernel allows it (root on a
#                    VM): a fully cached build in about 1.5 s instead of 40 s, a fifth of the disk
#   IMAGE_SOURCE, IMAGE_LICENSES   passed on as the OCI label build args when set
# Needs root (or sudo) only to install missing packages; debootstrap and buildah run as root here.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$here/.cache/image"
driver=${STORAGE_DRIVER:-vfs}
storage="$cache/storage"  # one storage per driver
[ "$driver" = vfs ] || storage="$cache/storage-$driver"
base_dir="$cache/base"
image=${IMAGE:-localhost/container-sign-action:latest}
base_image=localhost/container-sign-action-base:trixie
python=${PYTHON:-$here/.venv/bin/python}
suite=trixie
include=python3,python3-venv,ca-certificates
log() { echo "make-image: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
started=$(now)

# -- 1. tools -------------------------------------------------------------------------------
# shellcheck source=lib/apt-install.sh
. "$here/scripts/lib/apt-install.sh"
install_missing make-image buildah debootstrap gnupg skopeo docker-registry
"$here/scripts/fetch-trixie-tools.sh"  # the check verifies with trixie's cosign, outside the image
[ "$(id -u)" -eq 0 ] || { log "debootstrap and buildah (vfs, chroot isolation) need root"; exit 1; }

# One build at a time per checkout: they share the storage.
mkdir -p "$cache" "$base_dir"
exec 9>"$cache.lock"
flock 9
runroot=$(mktemp -d "${TMPDIR:-/tmp}/make-image.XXXXXX")  # buildah's transient state
trap 'rm -rf "$runroot"' EXIT
buildah=(buildah --root "$storage" --runroot "$runroot" --storage-driver "$driver")

# -- 2. a Debian trixie root filesystem from the machine's mirror ---------------------------
. "$here/scripts/lib/debian-mirror.sh"
read -r mirror signed_by < <(find_mirror | head -n 1) || true
[ -n "${mirror:-}" ] || { log "no Debian source for '$codename' with 'main' in the apt sources"; exit 1; }
signed_by=${signed_by:-/usr/share/keyrings/debian-archive-keyring.gpg}
rootfs_tar="$base_dir/rootfs.tar"
recipe="debootstrap --variant=minbase --include=$include $suite $mirror; slim"
t=$(now)
if [ -s "$rootfs_tar" ] && [ "$(cat "$base_dir/recipe" 2>/dev/null)" = "$recipe" ]; then
  log "base root filesystem: cached ($rootfs_tar)"
else
  log "base root filesystem: $recipe (keyring $signed_by)"
  work=$(mktemp -d "$cache/rootfs.XXXXXX")
  if ! debootstrap --variant=minbase --include="$include" --keyring="$signed_by" \
       "$suite" "$work/rootfs" "$mirror" >"$base_dir/debootstrap.log" 2>&1; then
    tail -n 20 "$base_dir/debootstrap.log" >&2
    rm -rf "$work"
    log "debootstrap failed; its log: $base_dir/debootstrap.log"
    exit 1
  fi
  # apt inside the build uses the same mirror with suite trixie (debootstrap wrote that line);
  # downloaded .debs and package lists are not part of an image.
  echo "deb $mirror $suite main" >"$work/rootfs/etc/apt/sources.list"
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/cache/apt/"*.bin \
         "$work/rootfs/var/lib/apt/lists/"*
  # Slim, as Debian's own -slim images (which the official python images build on): no
  # documentation but the copyright files, no manuals, no translations; dpkg keeps them out of
  # what the build installs too.
  cat >"$work/rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
SLIM
  (cd "$work/rootfs/usr/share" &&
   find doc -mindepth 2 \( -type f -o -type l \) ! -name copyright -delete &&
   find doc -mindepth 2 -type d -empty -delete &&
   rm -rf groff/* info/* linda/* lintian/overrides/* locale/* man/*)
  tar --numeric-owner --xattrs -C "$work/rootfs" -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"
  echo "$recipe" >"$base_dir/recipe"
  rm -rf "$work"
  log "base root filesystem: $(du -h "$rootfs_tar" | cut -f1) in $(since "$t")"
fi

# -- 3. the base image ----------------------------------------------------------------------
t=$(now)
rootfs_id=$(stat -c '%Y-%s' "$rootfs_tar")
have=$("${buildah[@]}" inspect --type image \
         --format '{{index .OCIv1.Config.Labels "container-sign-action.rootfs"}}' \
         "$base_image" 2>/dev/null || true)
if [ "$have" = "$rootfs_id" ]; then
  log "base image $base_image: up to date"
else
  printf 'FROM scratch\nADD rootfs.tar /\nCMD ["/bin/bash"]\n' >"$base_dir/Containerfile"
  printf '*\n!rootfs.tar\n' >"$base_dir/.dockerignore"
  "${buildah[@]}" bud --quiet --isolation chroot --label "container-sign-action.rootfs=$rootfs_id" \
    -f "$base_dir/Containerfile" -t "$base_image" "$base_dir" >/dev/null
  log "base image $base_image: built in $(since "$t")"
fi

# -- 4. the image ---------------------------------------------------------------------------
# pip inside the build: the host's CA bundle and index settings, in a folder mounted at /mnt (a
# folder every Debian image has: no mount point is left behind in a layer). Only http(s) indexes
# are carried over: file:// ones are folders of this host.
host_pip() {  # the host pip's value of option $1: environment first, then its config files
  "$python" -m pip config list 2>/dev/null |
    sed -n "s/^\(:env:\|global\|install\|download\|wheel\)\.$1='\(.*\)'\$/\2/p" | head -n 1
}
mnt="$runroot/mnt"
mkdir -p "$mnt"
ca=$(host_pip cert)
for f in "$ca" "${REQUESTS_CA_BUNDLE:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
  [ -n "$f" ] && [ -r "$f" ] && { ca=$f; break; }
done
cp -L "$ca" "$mnt/ca-certificates.crt"
{
  echo "[global]"
  echo "cert = /mnt/ca-certificates.crt"
  index=$(host_pip index-url)
  case "$index" in http://*|https://*) echo "index-url = $index" ;; esac
  extra=""
  for u in $(host_pip extra-index-url); do
    case "$u" in http://*|https://*) extra="$extra $u" ;; *) log "pip: not used in the build (a host folder): $u" ;; esac
  done
  [ -z "$extra" ] || echo "extra-index-url =$extra"
  trusted=$(host_pip trusted-host)
  [ -z "$trusted" ] || echo "trusted-host = $trusted"
  timeout=$(host_pip timeout)
  [ -n "$timeout" ] || timeout=$(host_pip default-timeout)
  [ -z "$timeout" ] || echo "timeout = $timeout"
} >"$mnt/pip.conf"
log "pip in the build: $(grep -v '^\[' "$mnt/pip.conf" | paste -sd';' -)"

# The build context: what .dockerignore lets in (its "!" lines), copied to a folder of its own.
# buildah walks the whole context folder to apply .dockerignore, and this checkout holds the image
# storage (.cache/image, hundreds of thousands of files).
context="$runroot/context"
mkdir -p "$context"
mapfile -t allowed < <(sed -n 's|^!\(.*[^/]\)/*$|\1|p' "$here/.dockerignore")
tar -C "$here" --exclude=__pycache__ --exclude='*.pyc' -cf - .dockerignore "${allowed[@]}" |
  tar -C "$context" -xf -

label_args=()
for a in IMAGE_SOURCE IMAGE_LICENSES; do
  [ -z "${!a:-}" ] || label_args+=(--build-arg "$a=${!a}")
done
# What the build depends on: the context (names, modes, contents), the base image, the label
# arguments. Unchanged since the image was built: no build at all. Even with every step cached,
# `buildah bud` on vfs takes about 40 s: it makes a full copy of the file system for each step.
fingerprint=$({
  tar -C "$context" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - .
  "${buildah[@]}" inspect --type image --format '{{.FromImageID}}' "$base_image"
  printf '%s\n' "${label_args[@]}"
} | sha256sum | cut -d' ' -f1)
built=$("${buildah[@]}" inspect --type image \
          --format '{{index .OCIv1.Config.Labels "container-sign-action.build-input"}}' \
          "$image" 2>/dev/null || true)
size() { "${buildah[@]}" images --noheading --format '{{.Size}}' "$image"; }
if [ "$built" = "$fingerprint" ] && [ "${FORCE:-}" != 1 ]; then
  log "image $image: up to date, $(size) (same context, Dockerfile and base; FORCE=1 rebuilds)"
else
  t=$(now)
  build_log="$cache/build-$driver.log"
  log "building $image on $base_image (buildah bud, $driver, chroot isolation, layers cached)"
  "${buildah[@]}" bud --isolation chroot --layers \
    --build-arg "BASE_IMAGE=$base_image" --build-arg PIP_CONFIG_FILE=/mnt/pip.conf \
    "${label_args[@]}" --label "container-sign-action.build-input=$fingerprint" \
    --volume "$mnt:/mnt:ro" \
    -f "$context/Dockerfile" -t "$image" "$context" >"$build_log" 2>&1 || {
      tail -n 40 "$build_log" >&2
      log "the build failed; its log: $build_log"
      exit 1
    }
  log "image $image: built in $(since "$t"), $(size) (log: $build_log)"

  # Untagged images this build did not use (earlier versions of the image and their cached steps)
  # go: with vfs every layer is a full copy of the file system. This build's steps (named in its
  # log, "--> ID") stay: they are the cache of the next build.
  mapfile -t used < <(sed -n 's/^--> \(Using cache \)\{0,1\}\([0-9a-f]\{11,64\}\)$/\2/p' "$build_log")
  images() { "${buildah[@]}" images --all --noheading --no-trunc --format '{{.ID}} {{.Name}}'; }
  before=$(images | wc -l)
  while read -r id name; do
    [ "$name" = "<none>" ] || continue
    id=${id#sha256:}
    for u in "${used[@]}"; do
      case "$id" in "$u"*) continue 2 ;; esac
    done
    # Removing an image removes its untagged parents too: some are gone when their turn comes.
    "${buildah[@]}" rmi "$id" >/dev/null 2>&1 || true
  done < <(images)
  pruned=$((before - $(images | wc -l)))
  [ "$pruned" -eq 0 ] || log "removed $pruned image(s) left by earlier builds"
fi

# -- 5. the proof ---------------------------------------------------------------------------
if [ "${SKIP_CHECK:-}" = 1 ]; then
  log "SKIP_CHECK=1: not checked"
else
  # the test bed (testbed/) and the tests' helpers (tests/infra) are no part of the package
  PYTHONPATH="$here:$here/tests${PYTHONPATH:+:$PYTHONPATH}" \
    "$python" "$here/scripts/image-check.py" --root "$storage" --runroot "$runroot" \
    --storage-driver "$driver" --image "$image"
fi
log "done in $(since "$started")"
