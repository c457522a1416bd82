#!/usr/bin/env bash
# Installs the host tools imgmount's tests, demo and FUSE drivers use (and runc, which the
# README's container-runtime example runs), only if missing.
# Idempotent; needs root (or sudo) on Debian/Ubuntu. Node.js and npm must already be there,
# and in a clone python3, make and g++ (node-gyp builds the addon with them).
#   --sanitizers   also gcc's AddressSanitizer and UBSan runtimes and patchelf (scripts/test-asan.sh)
set -euo pipefail
sanitizers=0
[ "${1:-}" = "--sanitizers" ] && sanitizers=1

# command -> Debian package
declare -A want=(
  [mksquashfs]=squashfs-tools
  [unsquashfs]=squashfs-tools
  [mke2fs]=e2fsprogs
  [fuse2fs]=fuse2fs
  [mkfs.vfat]=dosfstools
  [squashfuse]=squashfuse
  [squashfuse_ll]=squashfuse
  [fusermount3]=fuse3
  [fuse-overlayfs]=fuse-overlayfs
  [gocryptfs]=gocryptfs
  [unshare]=util-linux
  [losetup]=mount
  [runc]=runc
)

missing=()
for cmd in "${!want[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ] && ! [ -x "/sbin/$cmd" ]; then
    missing+=("${want[$cmd]}")
  fi
done
# A clone builds the addon (node-gyp); the installed package ships it prebuilt.
required=(node npm)
[ -e "$(dirname "$0")/../.git" ] && required+=(python3 make g++)
for tool in "${required[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup-host: $tool is required but not installed" >&2; exit 1; }
done
if [ "$sanitizers" -eq 1 ]; then
  # gcc prints the bare name when it has no such library: the runtimes come with libgcc-N-dev.
  for lib in libasan.so libubsan.so; do
    case "$(gcc -print-file-name=$lib)" in
      /*) ;;
      *) missing+=("libgcc-$(gcc -dumpversion | cut -d. -f1)-dev") ;;
    esac
  done
  command -v nm >/dev/null 2>&1 || missing+=(binutils)
  command -v patchelf >/dev/null 2>&1 || missing+=(patchelf)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "setup-host: installing ${packages[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup-host: run as root (or install sudo) to install ${packages[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
