#!/usr/bin/env bash
# Installs the Debian 12 packages prom needs to build, test and run its demo, when missing.
# Sourced by scripts/test and scripts/demo.
PROM_PACKAGES=(build-essential cmake pkg-config ccache
  libsdbus-c++-dev libsdbus-c++-bin libsystemd-dev libcurl4-openssl-dev libsimdjson-dev libtomlplusplus-dev
  googletest libgtest-dev libgmock-dev python3 etcd-server etcd-client
  dbus-daemon dbus-bin systemd-container util-linux
  lintian mandoc openssl nftables iproute2)

prom_install_deps() {
  local missing=()
  for p in "${PROM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "prom: installing missing Debian packages: ${missing[*]}"
  local sudo=()
  if ((EUID != 0)); then
    if ! command -v sudo >/dev/null; then
      echo "prom: these packages are missing and I am not root and have no sudo: ${missing[*]}" >&2
      echo "prom: run as root: apt-get install ${missing[*]}" >&2
      exit 1
    fi
    echo "prom: not root: using sudo for apt-get"
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -qq
  # etcd-server's maintainer script may start a system etcd on :2379 where systemd runs; the
  # tests and the demo use their own etcd on free ports and never touch it.
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
