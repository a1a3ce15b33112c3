#!/usr/bin/env bash
# Installs kiln's build and test dependencies from Debian's packages (Debian 12 / bookworm).
# Runs apt-get as root, or through sudo.
set -euo pipefail
PACKAGES=(
  build-essential cmake pkg-config python3 python3-pip
  libeigen3-dev libxsimd-dev doctest-dev libbenchmark-dev nlohmann-json3-dev libpcre2-dev libcpp-httplib-dev
  clang libclang-rt-14-dev
  libvulkan-dev glslc mesa-vulkan-drivers vulkan-tools
  qemu-user
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}" >&2
$SUDO apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
