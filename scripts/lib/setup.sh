# Shared setup for scripts/start and scripts/test: everything a fresh Debian machine needs,
# installed by the scripts themselves (CI runs on a fresh clone). Source it; it defines functions.

PNPM_VERSION="10.34.9" # keep equal to "packageManager" in package.json (corepack cannot fetch it here)
NODE_MIN_MAJOR=20
NODE_MIN_MINOR=19

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
step() { printf '\n==> %s\n' "$*"; }

require_node() {
  command -v node >/dev/null || { echo "Node.js ${NODE_MIN_MAJOR}.${NODE_MIN_MINOR}+ is required" >&2; exit 1; }
  local v; v="$(node -p 'process.versions.node')"
  local major="${v%%.*}" rest="${v#*.}"; local minor="${rest%%.*}"
  if (( major < NODE_MIN_MAJOR || (major == NODE_MIN_MAJOR && minor < NODE_MIN_MINOR) )); then
    echo "Node.js ${NODE_MIN_MAJOR}.${NODE_MIN_MINOR}+ is required, found $v" >&2; exit 1
  fi
}

ensure_pnpm() {
  if [[ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]]; then
    step "installing pnpm $PNPM_VERSION"
    npm install -g --no-fund --no-audit "pnpm@$PNPM_VERSION" >/dev/null
  fi
}

# Debian packages the tools and tests use (loop devices, filesystems, Postgres client). Lists live
# beside the code that needs them: scripts/debian-packages.txt and any REQUIRED_DEBIAN_PACKAGES.
ensure_debian_packages() {
  command -v dpkg-query >/dev/null || { echo "not a Debian system: install the packages in scripts/debian-packages.txt by hand" >&2; return 0; }
  local wanted missing=()
  wanted="$(cat "$repo_root/scripts/debian-packages.txt" $(find "$repo_root/apps" "$repo_root/packages" "$repo_root/test" -name REQUIRED_DEBIAN_PACKAGES -not -path '*/node_modules/*' 2>/dev/null) \
    | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)"
  for pkg in $wanted; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ "$(id -u)" != 0 ]]; then
    echo "missing Debian packages (run as root, or: sudo apt-get install ${missing[*]})" >&2; exit 1
  fi
  step "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_workspace() {
  step "installing workspace dependencies"
  (cd "$repo_root" && pnpm install --frozen-lockfile)
}

start_services() {
  step "making Postgres and Redis available"
  bash "$repo_root/scripts/services"
}

migrate_catalog() {
  step "migrating the catalog"
  (cd "$repo_root" && pnpm db:migrate)
}

build_workspace() {
  step "building"
  (cd "$repo_root" && pnpm build)
}
