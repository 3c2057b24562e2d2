#!/usr/bin/env bash
# The compatibility matrix: the whole test suite on each configuration, results in docs/compat.md.
#
#   bash dev.sh compat                  every configuration, one after another
#   bash dev.sh compat trixie-django6   one or a few of them (the document says which run made a row)
#   bash dev.sh compat --jobs 2         two at a time: the Debian trixie and pip-built Apache runs
#                                       in one lane, the others in a second (about 35 minutes
#                                       instead of 55 here; each suite then shares the machine)
#
# Configurations:
#   host            this machine's Python and the Django pip picks for it, in .venv (as dev.sh test)
#   trixie-django5  Debian 13 (trixie): its Python 3.13 and Apache, Django 5.2.x
#   trixie-django6  the same with Django 6.0.x
#   pip-httpd       this machine's Python with Apache built by pip (mod_wsgi-httpd), the system
#                   Apache hidden from the run (binary, modules, config and its libapr)
#   lowest          this machine's Python with wsgidev's own dependencies (hard, https, hide-env)
#                   at the lowest versions pyproject.toml declares (compat/lowest.py)
#   real-projects   real Django projects nobody here wrote (compat/realprojects.toml), each set up
#                   as its README says in its own venv, then wsgidev installed into it and served
#                   (compat/real/test_real_projects.py)
#
# What it builds is cached under .compat/ (ignored by git) and reused by the next run:
#   trixie/     a Debian trixie tree made with debootstrap from the mirror apt uses here, with
#               trixie's python3, apache2, apache2-dev and chromium. It is entered with bubblewrap
#               (a mount namespace and pivot_root), not chroot: wsgidev started as root needs a user
#               namespace, and unshare(CLONE_NEWUSER) fails with EPERM inside a plain chroot.
#   pip-httpd/  a venv with mod_wsgi-httpd (it compiles Apache: several minutes) and mod_wsgi
#               built against it.
#   lowest/     a venv with the lowest declared versions.
#   real/       each real project's checkout (src/NAME, cloned from its repository at the pinned
#               commit when missing) and venv (venv/NAME).
# Each run's log is in .compat/logs/, its facts in .compat/results/. Exits 1 if any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cache=$repo/.compat
all=(host trixie-django5 trixie-django6 pip-httpd lowest real-projects)

jobs=1
if [ "${1:-}" = --jobs ]; then
  jobs=${2:-}
  [[ $jobs =~ ^[12]$ ]] || { echo "compat: --jobs takes 1 or 2, got '${jobs}'" >&2; exit 2; }
  shift 2
fi
configs=("$@")
((${#configs[@]})) || configs=("${all[@]}")
for config in "${configs[@]}"; do
  case " ${all[*]} " in *" $config "*) ;; *)
    echo "compat: unknown configuration $config (choose from: ${all[*]})" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "compat: run as root (debootstrap, bubblewrap, mount namespaces)" >&2; exit 1; }

run_id=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$cache/logs" "$cache/results"
# Clean environment for every run: users' machines write bytecode and buffer output.
clean_env=(env -u PYTHONDONTWRITEBYTECODE -u PYTHONUNBUFFERED)

# --- what the host needs ------------------------------------------------------------------------
wants_trixie=0; wants_pip=0; wants_real=0
for config in "${configs[@]}"; do
  case $config in trixie-*) wants_trixie=1 ;; pip-httpd) wants_pip=1 ;; real-projects) wants_real=1 ;; esac
done
missing=()
if ((wants_trixie)); then
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v bwrap >/dev/null || missing+=(bubblewrap)
fi
if ((wants_pip)); then
  # mod_wsgi-httpd runs configure and make for APR, APR-util (needs expat), PCRE2 and httpd,
  # whose mod_ssl and mod_http2 (--https, --http2) are built only where OpenSSL and nghttp2 are.
  for tool in gcc make perl; do command -v $tool >/dev/null || missing+=($tool); done
  [ -e /usr/include/expat.h ] || missing+=(libexpat1-dev)
  [ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
  [ -e /usr/include/nghttp2/nghttp2.h ] || missing+=(libnghttp2-dev)
fi
if ((wants_real)); then
  # django-oscar's sandbox builds its CSS and JS with npm, as its README says; sources by git.
  command -v git >/dev/null || missing+=(git)
  command -v npm >/dev/null || missing+=(nodejs npm)
fi
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# A user's 8000 is often taken by another dev server: the suite must not care. Another program
# listens on 127.0.0.1:8000 for the whole run: this one, whenever nothing else does (it takes
# the port as soon as it is free, and ends with the run, or when the run's shell is gone); each
# result says whether the port was busy when its suite ended.
python3 -c 'import os, socket, sys, time
parent, held = os.getppid(), None
while os.getppid() == parent:
    if held is None:
        try:
            held = socket.create_server(("127.0.0.1", 8000))
        except OSError:
            pass  # another program holds it
    time.sleep(1)' &
port_holder=$!
trap 'kill "$port_holder" 2>/dev/null || true' EXIT
port_8000_busy() {
  python3 -c 'import socket, sys
s = socket.socket()
s.settimeout(2)
sys.exit(s.connect_ex(("127.0.0.1", 8000)) != 0)' && echo yes || echo no
}

# --- the Debian trixie tree ---------------------------------------------------------------------
trixie=$cache/trixie
trixie_packages="python3 python3-venv python3-dev apache2 apache2-dev chromium gcc libc6-dev curl git procps ca-certificates bindfs fuse3 iproute2 redis-server"

# The mirror apt uses here: the first Debian URI in sources.list or a deb822 .sources file.
debian_mirror() {
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  local uri
  uri=$(cat "${files[@]}" 2>/dev/null | grep -v '^\s*#' |
    grep -oE '(https?|file)://[^ ]*/debian/?( |$)' | grep -v -- '-security' | head -1 | tr -d ' ')
  echo "${uri:-http://deb.debian.org/debian}"
}

# Run a command in the trixie tree, in folder $1: its own root (pivot_root by bwrap), /proc, /dev
# with a pty multiplexer and the host's /dev/fuse (the bindfs tests), /dev/shm, a fresh /tmp; the
# host's network; a clean environment.
in_trixie() {
  local folder=$1; shift
  env -i HOME=/root LANG=C.UTF-8 TERM=xterm PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive \
    bwrap --bind "$trixie" / --proc /proc --dev /dev --dev-bind-try /dev/fuse /dev/fuse \
      --perms 1777 --tmpfs /dev/shm \
      --perms 1777 --tmpfs /tmp --ro-bind /sys /sys --ro-bind /etc/resolv.conf /etc/resolv.conf \
      --cap-add ALL --die-with-parent --chdir "$folder" "$@"
}

build_trixie() {
  if [ -f "$trixie/.compat-ready" ] && [ "$(cat "$trixie/.compat-ready")" = "$trixie_packages" ]; then
    echo "compat: reusing $trixie"
    return
  fi
  local mirror
  mirror=$(debian_mirror)
  if [ ! -x "$trixie/usr/bin/apt-get" ]; then
    echo "compat: debootstrap trixie from $mirror into $trixie"
    rm -rf "$trixie.partial"
    debootstrap --variant=minbase --include=ca-certificates trixie "$trixie.partial" "$mirror" &&
      mv "$trixie.partial" "$trixie" || return 1
  fi
  local security=${mirror%/debian*}/debian-security
  [ "$mirror" = "http://deb.debian.org/debian" ] || [ "$mirror" = "http://deb.debian.org/debian/" ] ||
    security=http://deb.debian.org/debian-security
  rm -f "$trixie/etc/apt/sources.list"
  cat >"$trixie/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  touch "$trixie/etc/resolv.conf"
  in_trixie / sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends $trixie_packages" ||
    return 1
  echo "$trixie_packages" >"$trixie/.compat-ready"
}

# The local certificate authorities this machine trusts (a proxy's, a company's) for pip there.
trust_host_cas() {
  mkdir -p "$trixie/usr/local/share/ca-certificates"
  rm -f "$trixie"/usr/local/share/ca-certificates/*.crt
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$trixie/usr/local/share/ca-certificates/"
  fi
  in_trixie / update-ca-certificates --fresh >/dev/null
}

# The user namespace wsgidev needs as root must work in the tree before the suite runs.
check_trixie_userns() {
  if ! in_trixie / unshare --user --map-user=33 true; then
    echo "compat: unshare(CLONE_NEWUSER) fails inside the trixie tree; wsgidev as root needs it" >&2
    return 1
  fi
}

# --- the pip-built Apache -----------------------------------------------------------------------
pip_venv=$cache/pip-httpd/venv
build_pip_httpd() {
  local py=$pip_venv/bin/python
  if ! [ -x "$py" ] || ! "$py" -c 'import mod_wsgi_packages.httpd' 2>/dev/null ||
    ! ls "$pip_venv"/lib/python3*/site-packages/mod_wsgi_packages/httpd/modules/mod_http2.so >/dev/null 2>&1; then
    echo "compat: building mod_wsgi-httpd (Apache from source) in $pip_venv: several minutes"
    rm -rf "$pip_venv"
    python3 -m venv "$pip_venv" &&
      "$py" -m pip install -q --upgrade pip setuptools wheel &&
      "$py" -m pip install -q --no-cache-dir mod_wsgi-httpd || return 1
  fi
  # mod_wsgi's setup.py builds against mod_wsgi-httpd when it can import it: so without build
  # isolation, and without a cached wheel (one built against the system Apache would be reused).
  local check='try:
    from mod_wsgi.express import apxs_config as a
except ImportError:
    from mod_wsgi.server import apxs_config as a
raise SystemExit(not a.WITH_HTTPD_PACKAGE)'
  if ! "$py" -c "$check" 2>/dev/null; then
    "$py" -m pip install -q --no-cache-dir --no-build-isolation --force-reinstall --no-deps mod_wsgi ||
      return 1
  fi
  "$py" -c "$check" || {
    echo "compat: mod_wsgi in $pip_venv is not built against mod_wsgi-httpd" >&2; return 1; }
  "$py" -m pip install -q -e "$repo[test]"
}

# Paths of the system Apache the pip-httpd run hides (bound over by an empty file or folder).
system_apache_paths() {
  local path
  for path in /usr/sbin/apache2 /usr/sbin/apachectl /usr/sbin/httpd /usr/bin/apxs /usr/bin/apxs2 \
    /usr/lib/apache2 /etc/apache2 /usr/lib/*-linux-gnu/libapr-1.so.0* /usr/lib/*-linux-gnu/libaprutil-1.so.0*; do
    [ -e "$path" ] && echo "$path"
  done
  return 0
}

# --- one run ------------------------------------------------------------------------------------
# Runs pytest with the given python in the given way; writes the log and the facts file.
#   run_suite CONFIG PREFIX-COMMAND... -- PYTHON REPO-PATH
record() {
  local config=$1 status=$2
  python3 "$repo/compat/report.py" record --config "$config" --run-id "$run_id" --status "$status" \
    --log "$cache/logs/$config.log" --facts "$cache/logs/$config.facts.json" \
    --out "$cache/results/$config.json" --repo "$repo" --port-8000-busy "$(port_8000_busy)"
}

# Each run_* returns non-zero when a step or the suite fails (set -e does not apply in `f || x`).
run_host() {
  { [ -x .venv/bin/python ] || python3 -m venv .venv; } &&
    .venv/bin/python -m pip install -q --upgrade pip &&
    .venv/bin/python -m pip install -q -e '.[test]' &&
    .venv/bin/python compat/facts.py >"$cache/logs/host.facts.json" || return 1
  "${clean_env[@]}" .venv/bin/python -m pytest -p no:cacheprovider 2>&1 | tee "$cache/logs/host.log"
}

run_trixie() {
  local config=$1 django=$2
  build_trixie && trust_host_cas && check_trixie_userns || return 1
  # A fresh copy of the working tree (not its .venv or caches) at /work/wsgidev in the tree.
  rm -rf "$trixie/work/wsgidev"
  mkdir -p "$trixie/work/wsgidev"
  tar -C "$repo" --exclude=./.venv --exclude=./.compat --exclude=./.git --exclude='__pycache__' \
    --exclude=./.pytest_cache --exclude=./.mypy_cache --exclude=./.ruff_cache -cf - . |
    tar -C "$trixie/work/wsgidev" -xf - || return 1
  local venv=/opt/compat/$config
  in_trixie / sh -c "set -e; [ -x $venv/bin/python ] || python3 -m venv $venv
    $venv/bin/python -m pip install -q --upgrade pip
    $venv/bin/python -m pip install -q -e '/work/wsgidev[test]' '$django'" &&
    in_trixie /work/wsgidev $venv/bin/python compat/facts.py >"$cache/logs/$config.facts.json" ||
    return 1
  in_trixie /work/wsgidev $venv/bin/python -m pytest -p no:cacheprovider 2>&1 |
    tee "$cache/logs/$config.log"
}

run_pip_httpd() {
  build_pip_httpd || return 1
  local hide=() path
  while read -r path; do hide+=("$path"); done < <(system_apache_paths)
  # In a private mount namespace with the system Apache's files covered by empty ones: the facts
  # (which httpd wsgidev finds, how ldd resolves its libapr), then the suite.
  unshare --mount --propagation private -- bash compat/hide.sh "${hide[@]}" -- sh -c '
    "$1/bin/python" compat/facts.py --expect-pip-httpd >"$2" &&
    { "$1/bin/wsgidev" doctor | grep -E "^(ok  |FAIL) (Apache|library|MIME)" || true; } &&
    exec "$1/bin/python" -m pytest -p no:cacheprovider' sh "$pip_venv" "$cache/logs/pip-httpd.facts.json" \
    2>&1 | tee "$cache/logs/pip-httpd.log"
}

run_lowest() {
  local venv=$cache/lowest/venv
  rm -rf "$venv"
  python3 -m venv "$venv" &&
    "$venv/bin/python" -m pip install -q --upgrade pip &&
    python3 compat/lowest.py >"$cache/lowest/constraints.txt" &&
    "$venv/bin/python" -m pip install -q --no-cache-dir -c "$cache/lowest/constraints.txt" -e "$repo[test]" &&
    "$venv/bin/python" compat/facts.py >"$cache/logs/lowest.facts.json" || return 1
  "${clean_env[@]}" "$venv/bin/python" -m pytest -p no:cacheprovider 2>&1 | tee "$cache/logs/lowest.log"
}

run_real_projects() {
  { [ -x .venv/bin/python ] || python3 -m venv .venv; } &&
    .venv/bin/python -m pip install -q -e '.[test]' &&
    .venv/bin/python compat/facts.py >"$cache/logs/real-projects.facts.json" || return 1
  "${clean_env[@]}" WSGIDEV_REAL_FACTS="$cache/logs/real-projects.facts.json" \
    .venv/bin/python -m pytest -p no:cacheprovider compat/real 2>&1 | tee "$cache/logs/real-projects.log"
}

run_config() {
  local config=$1 status=0
  echo "=== compat: $config ($(date -u +%H:%M:%S) UTC)"
  rm -f "$cache/logs/$config.facts.json"
  case $config in
    host) run_host || status=$? ;;
    trixie-django5) run_trixie "$config" 'Django>=5.2,<5.3' || status=$? ;;
    trixie-django6) run_trixie "$config" 'Django>=6.0,<6.1' || status=$? ;;
    pip-httpd) run_pip_httpd || status=$? ;;
    lowest) run_lowest || status=$? ;;
    real-projects) run_real_projects || status=$? ;;
  esac
  record "$config" "$status"
  return "$status"
}

# One lane runs its configurations one after another. Two lanes never share what a run builds
# or installs: the trixie tree (both trixie runs copy the working tree into it) and the
# pip-built Apache in one, this checkout's .venv (host, real-projects) and lowest's in the other.
run_lane() {
  local failed=0 config
  for config in "$@"; do run_config "$config" || failed=1; done
  return $failed
}

failed=0
if ((jobs == 1)); then
  run_lane "${configs[@]}" || failed=1
else
  built=() others=()
  for config in "${configs[@]}"; do
    case $config in trixie-*|pip-httpd) built+=("$config") ;; *) others+=("$config") ;; esac
  done
  # Each lane's output in a file of its own (the legs' logs are in .compat/logs as always).
  lanes=()
  if ((${#built[@]})); then
    run_lane "${built[@]}" >"$cache/logs/lane-built.out" 2>&1 &
    lanes+=($!)
  fi
  if ((${#others[@]})); then
    run_lane "${others[@]}" >"$cache/logs/lane-others.out" 2>&1 &
    lanes+=($!)
  fi
  echo "compat: ${built[*]:-nothing} and ${others[*]:-nothing} in two lanes" \
    "(.compat/logs/lane-built.out, lane-others.out)"
  for lane in "${lanes[@]}"; do wait "$lane" || failed=1; done
  grep -h "^compat: " "$cache/logs/lane-built.out" "$cache/logs/lane-others.out" 2>/dev/null || true
fi

python3 compat/report.py write --results "$cache/results" --doc docs/compat.md \
  --all "${all[*]}" --run-id "$run_id" --repo "$repo"
exit $failed
