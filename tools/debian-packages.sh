#!/usr/bin/env bash
# Install the named Debian packages that are missing (only as root with apt-get);
# otherwise say what is missing and carry on: tests that need them skip with a reason.
set -u
missing=()
for package in "$@"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null \
    || echo "warning: could not install ${missing[*]}"
else
  echo "warning: missing Debian packages: ${missing[*]} (install them as root)"
fi
exit 0
