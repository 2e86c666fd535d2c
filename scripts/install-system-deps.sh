#!/usr/bin/env bash
# Install the real DICOM peers the tests and `make orthanc` use (Debian/Ubuntu packages):
# dcmtk (storescu/storescp/echoscu/dsrdump), dicom3tools (dciodvfy), Orthanc with DICOMweb + GDCM,
# Chromium for the OHIF browser test, npm to fetch OHIF's prebuilt viewer.
# Only what is missing is installed; needs root (or sudo) when something is missing.
set -euo pipefail

declare -A need=(
  [storescu]=dcmtk
  [dciodvfy]=dicom3tools
  [Orthanc]=orthanc
  [chromium]=chromium
  [npm]=npm
)
pkgs=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || pkgs+=("${need[$cmd]}")
done
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || pkgs+=(orthanc-dicomweb)
[ -e /usr/share/orthanc/plugins/libOrthancGdcm.so ] || pkgs+=(orthanc-gdcm)
for extra in "$@"; do
  command -v "$extra" >/dev/null 2>&1 || pkgs+=("$extra")
done

if [ ${#pkgs[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "missing system packages: ${pkgs[*]} (run as root: apt-get install ${pkgs[*]})" >&2
    exit 1
  fi
fi
echo "installing system packages: ${pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Debian's orthanc package tries to start its service; a policy keeps it from binding 4242/8042.
$sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
