#!/usr/bin/env bash
# Fetches, on a Debian machine with network, the packages that an offline GPU machine may lack
# for building loom's tests (GoogleTest, OpenBLAS, nlohmann-json, zlib headers and the runtime
# libraries they need) and unpacks them into a prefix that scripts/gpu_check.sh uses:
#
#   third_party/debs/pkgs/*.deb   the packages (about 15 MB; carry these to the GPU machine)
#   third_party/debs/root/usr/... the unpacked prefix (made again from pkgs/ by gpu_check.sh
#                                 when it is missing, so it need not travel)
#
# Nothing is installed on this machine. third_party/debs/ is ignored by git.
# Usage: scripts/fetch_gpu_debs.sh [--force]     download (again with --force) and unpack
#        scripts/fetch_gpu_debs.sh --unpack-only [ROOT]
#                                  only unpack third_party/debs/pkgs (into ROOT; needs dpkg)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  libgtest-dev libgmock-dev       # GoogleTest static libraries, headers and CMake config
  nlohmann-json3-dev              # header-only JSON
  libcli11-dev                    # header-only command-line parser (the loom command)
  zlib1g-dev zlib1g               # zlib headers, libz.so and the runtime library it points to
  libopenblas-dev libopenblas-pthread-dev libopenblas0 libopenblas0-pthread  # cblas.h, libopenblas
  libgfortran5 libquadmath0       # what libopenblas.so.0 needs at run time
)
DEST=third_party/debs
root="$DEST/root"
force=0 unpack_only=0
case "${1:-}" in
  --force) force=1 ;;
  --unpack-only) unpack_only=1; root="${2:-$root}" ;;
  "") ;;
  *) echo "usage: $0 [--force | --unpack-only [ROOT]]" >&2; exit 2 ;;
esac

mkdir -p "$DEST/pkgs"
if [[ $force == 1 ]]; then rm -f "$DEST"/pkgs/*.deb; fi
missing=()
for p in "${PACKAGES[@]}"; do
  compgen -G "$DEST/pkgs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if ((${#missing[@]})) && [[ $unpack_only == 1 ]]; then
  echo "fetch_gpu_debs: $DEST/pkgs lacks ${missing[*]}: run scripts/fetch_gpu_debs.sh on a" \
       "machine with network first" >&2
  exit 1
fi
if ((${#missing[@]})); then
  echo "fetch_gpu_debs: downloading ${missing[*]}"
  # apt-get download needs package lists; refresh them once if a package is unknown.
  if ! (cd "$DEST/pkgs" && apt-get download "${missing[@]}" 2>/dev/null); then
    apt-get update -qq
    (cd "$DEST/pkgs" && apt-get download "${missing[@]}")
  fi
fi

rm -rf "$root"
mkdir -p "$root"
for deb in "$DEST"/pkgs/*.deb; do
  if command -v dpkg >/dev/null; then
    dpkg -x "$deb" "$root"
  else  # a .deb is an ar archive holding data.tar.*; tar picks the decompressor from the name
    data=$(ar t "$deb" | grep '^data\.tar')
    tmp=$(mktemp -d)
    (cd "$tmp" && ar x "$(realpath "$OLDPWD/$deb")" "$data")
    tar -xf "$tmp/$data" -C "$root"
    rm -rf "$tmp"
  fi
done
# Debian points some links outside the package (libz.so -> /lib/x86_64-linux-gnu/libz.so.1.2.13)
# or through update-alternatives (libopenblas.so, cblas.h) set up at install time: make them
# relative links inside the prefix so it works wherever it is unpacked.
while IFS= read -r -d '' link; do
  target=$(readlink "$link")
  if [[ "$target" == /* ]]; then
    inside="$root$target"
    [[ -e "$inside" ]] || inside="$root/usr$target"  # merged /usr
    if [[ -e "$inside" ]]; then
      ln -sfn "$(realpath --relative-to="$(dirname "$link")" "$inside")" "$link"
    else
      echo "fetch_gpu_debs: warning: $link -> $target points outside the prefix" >&2
    fi
  fi
done < <(find "$root" -type l -print0)
arch_lib="$root/usr/lib/x86_64-linux-gnu"
for lib in libopenblas.so libopenblas.so.0 libblas.so.3 liblapack.so.3; do
  [[ -e "$arch_lib/openblas-pthread/$lib" && ! -e "$arch_lib/$lib" ]] &&
    ln -s "openblas-pthread/$lib" "$arch_lib/$lib"
done
# Merged /usr: zlib1g puts libz.so.1 under /lib; link it where libz.so is.
for lib in "$root"/lib/x86_64-linux-gnu/*; do
  [[ -e "$lib" && ! -e "$arch_lib/$(basename "$lib")" ]] &&
    ln -s "../../../lib/x86_64-linux-gnu/$(basename "$lib")" "$arch_lib/$(basename "$lib")"
done
[[ -e "$root/usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h" ]] &&
  ln -sfn openblas-pthread/cblas.h "$root/usr/include/x86_64-linux-gnu/cblas.h"
# What a build does not need: documentation and OpenBLAS's 58 MB static archive.
rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian"
find "$root" -name 'libopenblas*.a' -delete
find "$root" -xtype l -delete  # links left dangling by the deletions above

{
  echo "# unpacked by scripts/fetch_gpu_debs.sh on $(date -u +%F) from:"
  for deb in "$DEST"/pkgs/*.deb; do basename "$deb"; done
} >"$root/MANIFEST"
echo "fetch_gpu_debs: $(ls "$DEST"/pkgs/*.deb | wc -l) packages ($(du -sh "$DEST/pkgs" | cut -f1)) in $DEST/pkgs,"\
     "unpacked ($(du -sh "$root" | cut -f1)) into $root"
((unpack_only)) ||
  echo "fetch_gpu_debs: on the GPU machine, scripts/gpu_check.sh finds them there (carry $DEST/pkgs)."
