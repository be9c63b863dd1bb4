# Shared by scripts/serve and scripts/test: make a local venv with keyturn installed.
# Usage: [KEYTURN_INSTALL_EXTRA=dev] . scripts/_env.sh   ("dev" installs the test and lint tools
# too). Not a positional argument: a sourced script sees its caller's arguments as its own.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    # Install Debian packages that are missing (apt-get update once, only when needed).
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "keyturn: installing ${missing[*]}" >&2
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    apt_install python3 python3-venv
    python=python3
fi
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv 2>/dev/null || { apt_install python3-venv; "$python" -m venv .venv; }
fi
extra=${KEYTURN_INSTALL_EXTRA:-}
spec="."
[ -n "$extra" ] && spec=".[$extra]"
stamp=".venv/.keyturn-installed-$extra"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e "$spec"
    touch "$stamp"
fi
