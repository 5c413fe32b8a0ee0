#!/usr/bin/env bash
# HAProxy (Debian's haproxy), only to check compose's proxy config (`haproxy -c`): install.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

install() {
  command -v haproxy >/dev/null && return 0
  log "installing haproxy from Debian packages (the compose proxy's config check)"
  apt_install haproxy
}

case "${1:-install}" in
  install) install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
