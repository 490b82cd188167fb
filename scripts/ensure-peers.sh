#!/usr/bin/env bash
# Installs the real peers the test suite talks to, when missing: Debian's mosquitto,
# libcoap3-bin (coap-client/-server with OpenSSL), paho-mqtt and cryptography for
# /usr/bin/python3, openssl, protobuf-compiler (protoc, the independent KuraPayload codec of
# test/unit/kura), chromium (test/browser drives it with playwright-core) and postgresql
# (the server of the PostgreSQL store tests, test/support/postgres.ts; Debian keeps its
# binaries in /usr/lib/postgresql/<major>/bin, off PATH) and haproxy (the TCP load balancer
# of the PROXY protocol tests and of the fleet test, test/support/haproxy.ts and fleet.ts).
# Needs root (or sudo) only when something is missing.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v coap-client-openssl >/dev/null 2>&1 || need+=(libcoap3-bin)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
/usr/bin/python3 -c 'import paho.mqtt' >/dev/null 2>&1 || need+=(python3-paho-mqtt)
/usr/bin/python3 -c 'import cryptography' >/dev/null 2>&1 || need+=(python3-cryptography)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing test peers: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "missing ${need[*]}: run as root, or install them: apt-get install ${need[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
