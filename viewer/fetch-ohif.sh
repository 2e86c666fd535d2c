#!/usr/bin/env bash
# Fetch OHIF's prebuilt viewer (npm @ohif/app, pinned) into viewer/dist, once.
# Only the package's own tarball is needed (its dist/ is self-contained), so `npm pack`
# fetches it without installing OHIF's build dependencies.
set -euo pipefail
OHIF_VERSION="${OHIF_VERSION:-3.13.2}"
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/dist"
if [ -f "$dest/.version" ] && [ "$(cat "$dest/.version")" = "$OHIF_VERSION" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm is needed to fetch OHIF (apt-get install npm)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null && tar xzf ohif-app-*.tgz)
rm -rf "$dest"
mv "$tmp/package/dist" "$dest"
cp "$here/app-config.js" "$dest/app-config.js"
echo "$OHIF_VERSION" > "$dest/.version"
echo "OHIF $OHIF_VERSION in $dest"
